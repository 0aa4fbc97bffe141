"""Open a task's environment and hand back an executor: the one place that starts things.

A browser task gets the bundled site (or the given running one) and a fresh Chromium on the start page; a
desktop task gets a private Xvfb (or the given display), its app started in a fresh working folder, and an X
executor. Everything started is stopped when the ``with`` block ends, in reverse order::

    with open_environment(task, layout_seed=3) as env:
        observation = env.executor.perceive()
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, TypedDict
from urllib.parse import urlsplit

import structlog

from agent.task import SiteTarget, Task, TaskError
from tools.errors import HarnessError
from tools.executor import Executor

log = structlog.get_logger("glassbox.environment")


class DesktopAppError(HarnessError, RuntimeError):
    """The desktop app did not start or never showed its window."""


@dataclass(frozen=True)
class Environment:
    """An open environment: the executor the loop acts through, and what checks and the record need."""

    task: Task  # the task as run: a desktop task carries its runtime values ({workdir}, {python})
    executor: Executor
    base_url: str | None = None  # the site's root, for relative http_json checks
    start_url: str | None = None
    layout_seed: int | None = None
    display: str | None = None  # the X display of a desktop task, for command and window checks

    def describe(self) -> str:
        return self.start_url or (f"desktop {self.display}" if self.display else f"a {self.executor.kind} executor")


class _ShopCredentials(TypedDict, total=False):
    username: str
    password: str


@contextmanager
def open_environment(
    task: Task,
    *,
    layout_seed: int | None = None,
    site_url: str | None = None,
    headed: bool | None = None,
) -> Iterator[Environment]:
    """Start what ``task`` runs in and yield it; stop it all on the way out, also after an error."""
    with ExitStack() as stack:
        if task.environment == "desktop":
            yield _open_desktop(task, stack)
        else:
            yield _open_browser(task, stack, layout_seed=layout_seed, site_url=site_url, headed=headed)


def _open_browser(
    task: Task,
    stack: ExitStack,
    *,
    layout_seed: int | None,
    site_url: str | None,
    headed: bool | None,
) -> Environment:
    from tools.browser import BrowserExecutor, _origin

    settings = task.browser.model_copy(update={"headed": headed} if headed is not None else {})
    base_url, start_url, seed = _start_target(task, layout_seed, site_url, stack)
    # A local (file:) start page has no origin: goto_url stays on allowed_origins, and never opens files.
    local = urlsplit(start_url).scheme.lower() == "file"
    allowed = list(task.allowed_origins) + ([] if local else [_origin(start_url)])
    browser = BrowserExecutor(
        settings,
        files=task.file_paths(),
        secrets=task.secret_values(),
        allowed_origins=allowed,
        coordinate_mode=task.policy.coordinate_mode,
        coordinate_divisor=task.policy.coordinate_divisor,
        settle=task.settle,
    )
    stack.enter_context(browser)
    browser.goto(start_url)
    return Environment(task=task, executor=browser, base_url=base_url, start_url=start_url, layout_seed=seed)


def _start_target(
    task: Task,
    layout_seed: int | None,
    site_url: str | None,
    stack: ExitStack,
) -> tuple[str | None, str, int | None]:
    target = task.target
    if isinstance(target, SiteTarget) and site_url is not None:
        site_url = site_url.rstrip("/")
        return site_url, site_url + target.path, None
    if isinstance(target, SiteTarget):
        from sites.shop import ShopServer

        seed = target.layout_seed if layout_seed is None else layout_seed
        server = ShopServer(layout_seed=seed, **_shop_credentials(task.input_values())).start()
        # Stopped after the browser closes (the stack unwinds in reverse), winding down while the caller goes on.
        stack.callback(server.stop, wait=False)
        return server.base_url, server.base_url + target.path, seed
    assert target is not None, "Task validation gives every browser task a target"
    try:
        start_url = task.start_page()  # a file: page resolved and checked against the task's folders again
    except ValueError as exc:
        raise TaskError(task.source, [f"target.start_url: {exc}"]) from None
    from tools.browser import _origin

    # A check's path (/api/...) is on the start page's site, as validation took it to be; a local page has none.
    site = _origin(start_url) if urlsplit(start_url).scheme.lower() in ("http", "https") else None
    return site, start_url, None


def _shop_credentials(values: Mapping[str, str]) -> _ShopCredentials:
    # The bundled shop accepts the task's own username/password inputs, so a task may choose them.
    creds: _ShopCredentials = {}
    if "username" in values:
        creds["username"] = values["username"]
    if "password" in values:
        creds["password"] = values["password"]
    return creds


def _open_desktop(task: Task, stack: ExitStack) -> Environment:
    """A private Xvfb (or the given display), the app started in a fresh working folder, and the executor."""
    from tools.desktop import DesktopExecutor, DesktopSettings
    from tools.xvfb import Xvfb, check_display

    spec = task.desktop
    assert spec is not None
    if spec.xvfb:
        size = spec.xvfb if not isinstance(spec.xvfb, bool) else None
        xvfb = Xvfb(size.width, size.height) if size else Xvfb()
        display = stack.enter_context(xvfb).name or ""
    else:
        display = check_display(spec.display)
    workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="glassbox-desktop-"))
    task = task.with_runtime(workdir=workdir, python=sys.executable)
    command = [task.render_secret(part) for part in spec.command]
    app_log = stack.enter_context(tempfile.TemporaryFile())  # a file, not a pipe nobody reads
    log.info("starting the task's program", command=task.programs()[0][1], workdir=workdir)  # secrets as placeholders
    try:
        app = subprocess.Popen(
            command, cwd=workdir, env={**os.environ, "DISPLAY": display}, stdin=subprocess.DEVNULL, stdout=app_log, stderr=app_log
        )
    except OSError as exc:
        raise DesktopAppError(f"cannot start {command[0]!r}: {exc}") from None
    stack.callback(_stop_process, app)
    _wait_for_app(app, app_log, display, spec.window_title, spec.ready_timeout_s)
    executor = DesktopExecutor(
        DesktopSettings(display=display, monitor=spec.monitor),
        files=task.file_paths(),
        secrets=task.secret_values(),
        coordinate_mode=task.policy.coordinate_mode,
        coordinate_divisor=task.policy.coordinate_divisor,
    )
    stack.enter_context(executor)
    return Environment(task=task, executor=executor, display=display)


def _wait_for_app(app: subprocess.Popen[bytes], app_log: IO[bytes], display: str, title: str | None, timeout: float) -> None:
    import shutil

    deadline = time.monotonic() + timeout
    xdotool = shutil.which("xdotool")
    while time.monotonic() < deadline:
        if app.poll() is not None:
            app_log.seek(0)
            err = app_log.read().decode(errors="replace").strip()
            raise DesktopAppError(f"the app exited with code {app.returncode} before showing a window: {err[-400:]}")
        if title is None or xdotool is None:
            time.sleep(1.0)  # no title to wait for: give it a moment to draw
            return
        found = subprocess.run(
            [xdotool, "search", "--name", title], capture_output=True, timeout=5, env={**os.environ, "DISPLAY": display}
        )
        if found.returncode == 0 and found.stdout.strip():
            time.sleep(0.2)  # mapped; let it paint
            return
        time.sleep(0.05)
    raise DesktopAppError(f"no window titled {title!r} appeared within {timeout:.0f} s")


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
