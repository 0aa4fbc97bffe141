"""One logging path: library modules log structlog events and print nothing; a run's log.jsonl gets every event
logged while it is open (secrets masked); the CLI renders them on the terminal (info and up, debug with -v)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.conftest import ROOT, TASKS
from tracer.logs import Console, RunLog, format_event, get_logger, set_console
from tracer.secrets import Scrubber


@pytest.fixture
def no_console() -> Iterator[None]:
    """No terminal console, as in a script using the Python API; the one before is put back afterwards."""
    previous = set_console(None)
    yield
    set_console(previous)


def read_events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_library_module_logging_writes_nothing_to_stdout_or_stderr(no_console, capsys):
    from agent.backends import decoding, local

    decoding.log.info("warming up: compiling the decode step", cache_tokens=4096)
    local.log.warning("fast decoding is not available; using transformers generate", reason="old transformers")
    structlog.get_logger("glassbox.loop").error("run crashed", error="harness error: boom")  # plain structlog too
    try:
        raise RuntimeError("disk full")
    except RuntimeError:
        get_logger("glassbox.viewer").exception("viewer error", path="/runs")
        logging.getLogger("glassbox.viewer").exception("viewer error")
    assert capsys.readouterr() == ("", "")


def test_a_run_log_gets_every_event_from_any_logger_while_open_with_secrets_masked(no_console, tmp_path):
    secret = "Xq7-tulip-4821"
    run_log = RunLog(tmp_path, Scrubber.from_secrets({"password": secret}))
    get_logger("glassbox.backend").info("warming up: compiling the decode step", cache_tokens=4096, seconds=1.5)
    structlog.get_logger("glassbox.loop").debug("step decided", text=f"typing {secret} now")
    get_logger("glassbox.index").warning("runs index", message="moved aside")
    logging.getLogger("glassbox.viewer").error("viewer error on %s", "/runs")  # the standard library's way
    run_log.close()
    get_logger("glassbox.backend").info("after the run")  # the run is closed: not in its log

    events = read_events(tmp_path / "log.jsonl")
    assert [(e["logger"], e["level"], e["event"]) for e in events] == [
        ("glassbox.backend", "info", "warming up: compiling the decode step"),
        ("glassbox.loop", "debug", "step decided"),
        ("glassbox.index", "warning", "runs index"),
        ("glassbox.viewer", "error", "viewer error on /runs"),
    ]
    assert events[0]["cache_tokens"] == 4096 and events[0]["seconds"] == 1.5 and "timestamp" in events[0]
    assert secret not in (tmp_path / "log.jsonl").read_text() and events[1]["text"] == "typing ●●●● now"


def test_the_console_shows_info_and_up_keeps_quiet_loggers_to_errors_and_masks_secrets(tmp_path):
    shown: list[dict[str, object]] = []
    previous = set_console(Console(show=shown.append, level="info", quiet=frozenset({"glassbox.loop"})))
    run_log = RunLog(tmp_path, Scrubber.from_secrets({"password": "Xq7-tulip-4821"}))
    try:
        get_logger("glassbox.backend").debug("decoded", step=0)
        get_logger("glassbox.backend").info("warming up: compiling the decode step", compiler="CUDA graphs")
        get_logger("glassbox.loop").info("run started")
        get_logger("glassbox.loop").warning("step error", error="clicked nothing")
        get_logger("glassbox.index").warning("runs index", message="moved aside")
        get_logger("glassbox.loop").error("run crashed", error="typed Xq7-tulip-4821 into the wrong box")
    finally:
        run_log.close()
        set_console(previous)
    assert [format_event(e) for e in shown] == [
        'warming up: compiling the decode step (compiler="CUDA graphs")',
        "runs index: moved aside",
        'run crashed (error="typed ●●●● into the wrong box")',
    ]
    with pytest.raises(ValueError, match="console level must be one of debug, info"):
        Console(show=shown.append, level="loud")


def test_the_cli_renders_events_for_the_terminal_debug_only_with_verbose(capsys):
    from cli import app as cli

    previous = set_console(None)
    try:
        cli._options(verbose=False)
        get_logger("glassbox.backend").debug("decoded", step=3)
        get_logger("glassbox.backend").info("static KV cache grows", from_tokens=4096, cache_tokens=6144)
        get_logger("glassbox.loop").info("run started", run_id="r1")
        quiet = capsys.readouterr()
        cli._options(verbose=True)
        get_logger("glassbox.backend").debug("decoded", step=3)
        get_logger("glassbox.loop").info("run started", run_id="r1")
        verbose = capsys.readouterr()
    finally:
        set_console(previous)
    assert quiet.out == verbose.out == ""  # stdout is the command's own output
    assert quiet.err == "glassbox: static KV cache grows (from_tokens=4096 cache_tokens=6144)\n"
    assert verbose.err == "debug: decoded (step=3)\nglassbox: run started (run_id=r1)\n"


def test_the_cli_shows_a_library_warning_on_stderr(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "index.sqlite3").write_bytes(b"this is not a database" * 100)
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "runs", "list", "--json", "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["runs"] == [], proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"warning: runs index: the runs index {runs / 'index.sqlite3'} could not be used")
    assert line.endswith("and rebuilt from 0 run folder(s)")


@pytest.fixture(scope="module")
def tiny_model(tiny_thinking_model_dir: Path) -> Path:
    return tiny_thinking_model_dir


def test_a_run_with_the_local_model_logs_its_decoding_into_log_jsonl(tiny_model, tmp_path, chromium):
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            str(TASKS / "publish_product.yaml"),
            "--policy",
            "qwen3vl",
            "--model",
            str(tiny_model),
            "--max-steps",
            "2",
            "--max-errors",
            "10",
            "--max-new-tokens",
            "16",
            "--runs-dir",
            str(runs),
            "--decoding",
            "fast",
            "--no-compile",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr  # noise publishes nothing
    [run_dir] = [p for p in runs.iterdir() if p.is_dir()]
    events = read_events(run_dir / "log.jsonl")
    decoded = [e for e in events if e["event"] == "decoded"]
    assert [(e["logger"], e["level"], e["step"], e["path"]) for e in decoded] == [
        ("glassbox.backend", "debug", 0, "fast"),
        ("glassbox.backend", "debug", 1, "fast"),
    ]
    assert decoded[0]["prefix_reused"] == 0 and decoded[1]["prefix_reused"] > 0  # the prefix cache, as recorded
    assert "Xq7-tulip-4821" not in (run_dir / "log.jsonl").read_text()
    # The terminal: the backend's info as a readable line; neither debug events nor the loop's info (the CLI's
    # own lines say it), and nothing printed around the logging path.
    assert f"glassbox: loading the model (model={tiny_model} device=cpu dtype=float32)" in proc.stderr
    assert "decoded" not in proc.stderr and "run started" not in proc.stderr
