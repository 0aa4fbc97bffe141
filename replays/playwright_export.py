"""Export a run as a standalone Python Playwright script: the run's actions in CSS pixels, with waits and
uploads; secrets are read from environment variables, never written into the script.

    export_playwright(run_dir, Path("publish.py"))
    # then:  GLASSBOX_SECRET_PASSWORD=... python publish.py --base-url http://127.0.0.1:8765
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from agent.task import Task, TaskError, load_task
from agent.task_yaml import dotted
from tools import actions as A
from tools.errors import UsageError
from tools.keys import playwright_chord
from tools.views import TAB_CLOSED, BrowserSettings
from tracer.store import read_run, read_steps

_SECRET = re.compile(r"<secret>([A-Za-z_][A-Za-z0-9_]*)</secret>")
_POINTER = (A.LeftClick, A.DoubleClick, A.TripleClick, A.RightClick, A.MiddleClick, A.MouseMove)  # a click (or move) at a point


class ExportError(UsageError, ValueError):
    """The run cannot be exported (nothing to export, task file gone)."""


class ExportInfo(BaseModel):
    actions: int
    secret_env: list[str]


def secret_env_name(name: str) -> str:
    return f"GLASSBOX_SECRET_{name.upper()}"


def export_playwright(run_dir: Path, out: Path) -> ExportInfo:
    """The script needs the actions, not the screenshots: a run whose screenshots were deleted still exports."""
    try:
        run, steps = read_run(run_dir), read_steps(run_dir, whole=True)  # a script missing one action is wrong code
    except (FileNotFoundError, ValueError) as exc:
        raise ExportError(str(exc)) from None
    acted = [s for s in steps if s.action is not None and s.outcome == "ok"]
    if not acted:
        raise ExportError(f"run {run.run_id} has no action that succeeded: nothing to export")
    # Only names of secrets and the files' paths are needed here: nothing is typed and no program is started.
    try:
        task: Task | None = (
            load_task(run.task_file, require_env=False, allow_programs=True)
            if run.task_file and Path(run.task_file).is_file()
            else None
        )
    except TaskError as exc:
        raise ExportError(f"the task file of run {run.run_id} no longer loads: {exc}") from None
    files = task.file_paths() if task else {}
    start = urlsplit(run.target_url or "")
    start_path = start.path + (f"?{start.query}" if start.query else "") or "/"
    # Typed, never the raw run.json: the script is code a person will run. Only the browser settings are needed
    # (a run recorded by an older version whose task no longer validates as a whole still exports).
    try:
        browser = BrowserSettings.model_validate(run.task.get("browser") or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = dotted(["browser", *first["loc"]])
        raise ExportError(f"run {run.run_id}: the recorded task is not valid ({field}: {first['msg']})") from None
    lines: list[str] = []
    secrets: set[str] = set()
    for step in acted:
        action = step.action
        assert action is not None  # acted steps have one
        name = action.action
        css = step.coordinate.css if step.coordinate else None
        comment = f"    # step {step.index}: {name}"
        if step.reasoning:
            comment += f" — {' '.join(step.reasoning.split())[:80]}"
        lines.append(comment)
        first_line = len(lines)  # of this step's action
        if isinstance(action, _POINTER) and css:
            call = {
                "left_click": "page.mouse.click({x}, {y})",
                "double_click": "page.mouse.dblclick({x}, {y})",
                "triple_click": "page.mouse.click({x}, {y}, click_count=3)",
                "right_click": "page.mouse.click({x}, {y}, button='right')",
                "middle_click": "page.mouse.click({x}, {y}, button='middle')",
                "mouse_move": "page.mouse.move({x}, {y})",
            }[name]
            lines.append("    " + call.format(x=css[0], y=css[1]))
        elif isinstance(action, A.LeftClickDrag) and css:
            lines.append(f"    page.mouse.down(); page.mouse.move({css[0]}, {css[1]}, steps=8); page.mouse.up()")
        elif isinstance(action, A.Type):
            names = _SECRET.findall(action.text)
            secrets.update(names)
            lines.append(f"    page.keyboard.type(reveal({json.dumps(action.text, ensure_ascii=False)}))")
        elif isinstance(action, A.Key):
            lines.append(f"    page.keyboard.press({json.dumps(playwright_chord(action.keys))})")
        elif isinstance(action, (A.Scroll, A.HScroll)):
            if css or action.coordinate:
                point = css or (browser.viewport[0] // 2, browser.viewport[1] // 2)
                lines.append(f"    page.mouse.move({point[0]}, {point[1]})")
            dx, dy = (0, -action.pixels) if isinstance(action, A.Scroll) else (action.pixels, 0)
            lines.append(f"    page.mouse.wheel({dx}, {dy})")
        elif isinstance(action, A.Wait):
            lines.append(f"    page.wait_for_timeout({int(action.time * 1000)})")
        elif isinstance(action, A.UploadFile) and css:
            path = files.get(action.file)
            if path is None:
                raise ExportError(f"step {step.index} uploads {action.file!r}, which the task file no longer declares")
            lines.append(f"    upload(page, {css[0]}, {css[1]}, {json.dumps(str(path))})")
        elif isinstance(action, A.GotoUrl):
            target = urlsplit(action.url)
            same_site = target.netloc == start.netloc
            url = (target.path + (f"?{target.query}" if target.query else "")) if same_site else action.url
            lines.append(f"    page.goto({'base + ' if same_site else ''}{json.dumps(url)})")
        elif isinstance(action, (A.Terminate, A.Answer)):
            said = action.status if isinstance(action, A.Terminate) else action.text
            lines.append(f"    print({json.dumps(f'{name}: ' + said)})")
            continue
        else:
            continue
        closed = step.tab_change is not None and step.tab_change.startswith(TAB_CLOSED)
        if closed:
            # The action closed its own tab (window.close()): Playwright may report that as the action failing,
            # depending on whether the close or the action's answer comes first.
            action_lines = lines[first_line:]
            lines[first_line:] = [
                "    try:",
                *("    " + line for line in action_lines),
                "    except Exception:",
                "        if not closed_soon(page):  # only the close the run saw here is expected",
                "            raise",
            ]
        lines.append("    settle(page)")
        if step.tab_change:  # the run looked at the tab the action opened (or the one left when its tab closed)
            lines.append(f"    page = follow_tab(page, closed={closed})")
    lines.append("    return page")
    body = "\n".join(lines)
    script = TEMPLATE.format(
        # A run folder is untrusted: its names go in as escaped string literals (a quote cannot end the docstring).
        run_id=json.dumps(run.run_id),
        task=json.dumps(run.task_name),
        start_path=json.dumps(start_path),
        width=int(browser.viewport[0]),
        height=int(browser.viewport[1]),
        scale=float(browser.device_scale_factor),
        dialogs="accept" if browser.dialogs == "accept" else "dismiss",
        secret_env=json.dumps({n: secret_env_name(n) for n in sorted(secrets)}),
        body=body,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(script, encoding="utf-8")
    return ExportInfo(actions=len(acted), secret_env=[secret_env_name(n) for n in sorted(secrets)])


TEMPLATE = '''#!/usr/bin/env python3
"""Replays Glassbox run {run_id} ({task}) with Playwright, on its own.

Usage: python this_script.py --base-url http://127.0.0.1:8765 [--headed]
Secrets are read from environment variables: {secret_env}.
Chromium: $GLASSBOX_CHROMIUM, else chromium / chromium-browser / google-chrome on PATH.
"""

import argparse
import os
import re
import shutil
import sys
import time

from playwright.sync_api import sync_playwright

SECRET_ENV = {secret_env}


def reveal(text):
    def value(match):
        name = match.group(1)
        env = SECRET_ENV.get(name)
        if env is None or env not in os.environ:
            sys.exit(f"set the environment variable {{env or name}} (secret {{name!r}})")
        return os.environ[env]

    return re.sub(r"<secret>([A-Za-z_][A-Za-z0-9_]*)</secret>", value, text)


# The main frame's navigations as the page asks for them (DevTools events, on the session that also runs the
# frame wait: a form's submit is known when the wait returns, before its request is sent).
NAVIGATION = {{"pending": False, "main": None, "devtools": None}}
FRAMES = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"
CHOOSERS = []
SESSIONS = {{}}  # page -> (its DevTools session, its main frame's id): each page is listened to once
PAUSE_MS = 150


def upload(page, x, y, path, timeout=5.0):
    """Click the file input and choose ``path`` in the chooser it opens."""
    CHOOSERS.clear()
    page.mouse.click(x, y)
    deadline = time.monotonic() + timeout
    while not CHOOSERS and time.monotonic() < deadline:
        page.wait_for_timeout(10)
    if not CHOOSERS:
        sys.exit(f"no file chooser opened at ({{x}}, {{y}})")
    CHOOSERS.pop().set_files(path)


def settle(page, timeout=5.0):
    """Wait two frames, then for a navigation the action asked for to load (or stop), then a beat (the recorded
    run looked at the screen between actions; some widgets, such as a select's popup, open asynchronously)."""
    try:
        # In a world of its own, as the run's frame wait: a page that replaced requestAnimationFrame cannot hold it.
        devtools = NAVIGATION["devtools"]
        world = devtools.send("Page.createIsolatedWorld", {{"frameId": NAVIGATION["main"], "worldName": "replay"}})
        context = world["executionContextId"]
        devtools.send("Runtime.evaluate", {{"expression": FRAMES, "awaitPromise": True, "contextId": context}})
    except Exception:
        pass  # the document went away: a navigation is under way
    deadline = time.monotonic() + timeout
    try:
        while NAVIGATION["pending"] and time.monotonic() < deadline:
            page.wait_for_timeout(10)
        page.wait_for_timeout(PAUSE_MS)
    except Exception:
        if not page.is_closed():
            raise  # else the action closed its own tab: follow_tab() goes on in the one left


def watch(page):
    """Listen to ``page`` as the run did, once: its dialogs answered as the run's were (browser.dialogs), and said;
    its file choosers kept (listening from the start keeps interception on: enabling it per click can miss one);
    its main frame's navigations, for settle(). Then settle() looks at this page."""
    if page not in SESSIONS:
        page.on("dialog", lambda d: (print(f"{{d.type}} dialog: {{d.message!r}} {dialogs}ed"), d.{dialogs}()))
        page.on("filechooser", lambda chooser: CHOOSERS.append(chooser))
        devtools = page.context.new_cdp_session(page)
        main = devtools.send("Page.getFrameTree")["frameTree"]["frame"]["id"]
        SESSIONS[page] = (devtools, main)

        def on_requested(event):
            if event.get("frameId") == main == NAVIGATION["main"]:
                NAVIGATION["pending"] = True

        def on_stopped(event):
            if event.get("frameId") == main == NAVIGATION["main"]:
                NAVIGATION["pending"] = False

        devtools.on("Page.frameRequestedNavigation", on_requested)
        devtools.on("Page.frameStoppedLoading", on_stopped)
        devtools.send("Page.enable")
    NAVIGATION["devtools"], NAVIGATION["main"] = SESSIONS[page]
    NAVIGATION["pending"] = False


def closed_soon(page, timeout_ms=2000):
    """Whether the page is closed, or closes within ``timeout_ms`` (its close can be told just after an error)."""
    if page.is_closed():
        return True
    try:
        page.wait_for_event("close", timeout=timeout_ms)
    except Exception:
        return page.is_closed()
    return True


def follow_tab(page, closed, timeout_ms=5000):
    """The run went on in the tab its action opened, or (``closed``), when the tab closed itself, in the one left:
    so does this script."""
    context = page.context
    try:
        if closed and not page.is_closed():
            page.wait_for_event("close", timeout=timeout_ms)
        elif not closed and [p for p in context.pages if not p.is_closed()][-1] is page:  # not known here yet
            context.wait_for_event("page", timeout=timeout_ms)
    except Exception:
        sys.exit("the recorded run went on in another tab here: " + ("its tab did not close" if closed else "none opened"))
    open_pages = [p for p in context.pages if not p.is_closed()]
    if not open_pages:
        sys.exit("no tab is left open")
    newest = open_pages[-1]
    newest.wait_for_load_state()
    watch(newest)
    print("tab:", newest.url)
    return newest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the site to run against, e.g. http://127.0.0.1:8765")
    parser.add_argument("--headed", action="store_true")
    args = parser.parse_args()
    base = args.base_url.rstrip("/")
    executable = os.environ.get("GLASSBOX_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if executable is None:
        sys.exit("no Chromium found: install it (apt-get install chromium) or set GLASSBOX_CHROMIUM")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=not args.headed, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        # Downloads refused, as in Glassbox's run: a page cannot fill the disk through this script either.
        page = browser.new_page(viewport={{"width": {width}, "height": {height}}}, device_scale_factor={scale},
                                accept_downloads=False)
        watch(page)
        page.goto(base + {start_path}, wait_until="load")
        page = run(page, base)
        print("final URL:", page.url)
        browser.close()


def run(page, base):
{body}


if __name__ == "__main__":
    main()
'''
