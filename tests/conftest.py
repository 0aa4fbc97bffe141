"""Shared fixtures: a real shop on 127.0.0.1 (OS-assigned port), real headless Chromium, the tiny Qwen3-VL built
once per session, and the CLI run in this process."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sites.shop import ShopServer
from tools.chromium import ChromiumNotFound, find_chromium

if TYPE_CHECKING:
    from agent.loop import RunResult

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "tasks"
FIXTURES = ROOT / "tests" / "fixtures"

# Markers for a fast inner loop (`pytest -m "not slow"`): a test that starts Chromium or a site is `browser`, one
# that loads a model is `model`, one that needs Xvfb is `desktop` (marked where it calls require_xvfb); all of
# them are `slow`. Fixtures say most of it, so new tests are marked without remembering to.
BROWSER_FIXTURES = {
    "chromium",
    "browser",
    "shop",
    "page",
    "pages",
    "signed_in",
    "publish_run",
    "original",
    "recorded",
    "chromium_module",
    "chromium_rebinding",
    "bundled_run",
}
MODEL_FIXTURES = {"model_dir", "tiny_model", "plain", "fast", "backend", "tiny_model_dir", "tiny_thinking_model_dir"}
MODEL_MODULES = {"test_attention", "test_fast_decoding", "test_qwen_local"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        if fixtures & MODEL_FIXTURES or item.module is not None and item.module.__name__.split(".")[-1] in MODEL_MODULES:
            item.add_marker(pytest.mark.model)
        if any(item.get_closest_marker(m) for m in ("browser", "model", "desktop")):
            item.add_marker(pytest.mark.slow)


def require_chromium() -> None:
    """Skip (saying why) when Chromium is missing on a developer machine; fail in CI, where it must exist."""
    try:
        find_chromium()
    except ChromiumNotFound as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"needs Chromium: {exc}")


@pytest.fixture
def chromium() -> None:
    require_chromium()


@pytest.fixture
def shop():
    with ShopServer() as server:
        yield server


@pytest.fixture
def browser(chromium, tmp_path):
    from tools.browser import BrowserExecutor, BrowserSettings

    files = {"lamp": TASKS / "fixtures" / "desk_lamp.png"}
    with BrowserExecutor(
        BrowserSettings(), files=files, secrets={"password": "s3cr3t-value"}, allowed_origins=["http://127.0.0.1:1"]
    ) as executor:
        yield executor


# -- the bundled task, recorded once per session ------------------------------------------------------------------


@pytest.fixture(scope="session")
def bundled_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult]:
    """A runs dir holding one succeeded run of tasks/publish_product.yaml (script policy, a fresh shop and
    Chromium). Modules that read or extend such a run take their own copy (``copy_bundled_run``) instead of
    recording the same run again, each in about as long as the whole task takes."""
    from agent import load_task, run_task
    from tracer import RunStatus

    require_chromium()
    runs = tmp_path_factory.mktemp("bundled") / "runs"
    result = run_task(load_task(TASKS / "publish_product.yaml"), runs_dir=runs)
    assert result.status is RunStatus.succeeded, result.end_reason
    return runs, result


def copy_bundled_run(bundled_run: tuple[Path, RunResult], runs: Path) -> RunResult:
    """Copy the session's recorded run (its folder and the runs index) into ``runs``, which must not exist yet
    or be empty; returns the run's result as if it had been recorded there."""
    template, result = bundled_run
    shutil.copytree(template, runs, dirs_exist_ok=True)
    return result.model_copy(update={"run_dir": runs / result.run_dir.name})


# -- the tiny model: built once per session (building is cheap once torch is imported; each module building its
# own copy was not) -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Qwen3-VL with the project's own chat template."""
    pytest.importorskip("torch", reason="the local backend needs torch (installed by .ci/setup)")
    pytest.importorskip("transformers", reason="the local backend needs transformers (installed by .ci/setup)")
    from agent.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen3vl")


@pytest.fixture(scope="session")
def tiny_thinking_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with the real Qwen3-VL-Thinking chat template (a fixture from a public source)."""
    pytest.importorskip("torch", reason="the local backend needs torch (installed by .ci/setup)")
    pytest.importorskip("transformers", reason="the local backend needs transformers (installed by .ci/setup)")
    from agent.tiny_model import build_tiny_model

    template = (FIXTURES / "qwen3vl_thinking.chat_template.jinja").read_text()
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen3vl-thinking", chat_template=template)


# -- the CLI in this process ------------------------------------------------------------------------------------


def glassbox_in_process(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m cli ARGS`` run in this process, for tests where the command's work is what is tested, not the
    process around it (signals, a fresh interpreter): a child would import torch and transformers again, which
    is most of a tiny-model run's time. Returns what ``subprocess.run(..., capture_output=True, text=True)``
    would; an exception escaping the command shows as a traceback on stderr, as it would from a process.

    Models loaded earlier in this process are forgotten first, so the command starts as cold as a new process
    (no reused weights, decoders or prefix caches)."""
    from rich.console import Console
    from typer.testing import CliRunner

    from cli import app as cli_app
    from tracer.logs import set_console

    if "agent.backends.local" in sys.modules:
        sys.modules["agent.backends.local"].unload_models()
    previous = set_console(None)
    runner = CliRunner()
    try:
        with runner.isolation(env=dict(env or {})):
            # A child process makes its consoles under this environment; ours were made at import. rich reads
            # COLUMNS on each print unless it was set then: a table would wrap at another width than in a child,
            # and a check for a secret could miss its two halves. Say so rather than test something else.
            fresh = Console(file=io.StringIO()).width
            if cli_app.console.width != fresh or cli_app.err_console.width != fresh:
                raise RuntimeError(f"the CLI's consoles are {cli_app.console.width} columns wide, a new one {fresh}")
        result = runner.invoke(cli_app.app, list(args), env=dict(env or {}), catch_exceptions=True)
    finally:
        set_console(previous)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit) and result.exc_info is not None:
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["glassbox", *args], result.exit_code, result.stdout, stderr)
