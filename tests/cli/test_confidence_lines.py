"""Confidence in the terminal: each step line shows the step's confidence with its band word (never colour alone),
and a run's end summary names its least confident step."""

from __future__ import annotations

import io

from rich.console import Console

from agent.events import RunEnded
from cli import app as cli_app
from cli.output import confidence_markup, least_confident_markup
from tests.conftest import glassbox_in_process
from tests.tracer.test_index_confidence import write_run
from tracer import RunStatus, read_run, read_steps


def plain(markup: str) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(markup)
    return console.file.getvalue().rstrip("\n")  # type: ignore[attr-defined]


def test_confidence_markup_names_the_band() -> None:
    assert [plain(confidence_markup(v, pad=0)) for v in (0.93, 0.5, 0.499, None)] == [
        "0.93 high",
        "0.50 medium",
        "0.499 low",  # two decimals would say 0.50, across the threshold: three are shown
        "unknown",
    ]


def test_step_lines_show_confidence_and_the_end_names_the_least_confident_step(tmp_path, monkeypatch) -> None:
    write_run(tmp_path, "r1", [0.91, 0.33, None, 0.7])
    result = glassbox_in_process("runs", "show", "r1", "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(lines) == 4
    for line, expected in zip(lines, ["0.91 high", "0.33 low", "unknown", "0.70 medium"], strict=True):
        assert expected in line, line

    out = io.StringIO()
    monkeypatch.setattr(cli_app, "console", Console(file=out, width=200, color_system=None))
    run_dir = tmp_path / "r1"
    run = read_run(run_dir)
    cli_app._print_run_end(RunEnded(run=run, run_dir=run_dir, status=RunStatus.succeeded, end_reason="done"))
    assert "least confident step: step 1 0.33 low · r" in out.getvalue()

    assert plain(least_confident_markup([s.model_copy(update={"confidence": None}) for s in read_steps(run_dir)])) == (
        "least confident step: none (no step recorded a confidence)"
    )
