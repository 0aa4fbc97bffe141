"""Shared by the page-event tests (dialogs, tabs, downloads): a click by model coordinates, and a run of a task
that clicks once on a page and ends."""

from __future__ import annotations

import textwrap
from pathlib import Path

from agent import load_task, run_task
from tools.actions import ToolCall, parse_tool_call
from tools.browser import BrowserExecutor
from tools.views import Outcome
from tracer import StepRecord, read_steps


def click(browser: BrowserExecutor, x: int, y: int) -> Outcome:
    return browser.act(parse_tool_call(ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [x, y]})))


def run_one_click(tmp_path: Path, start_url: str, coordinate: tuple[int, int]) -> tuple[str, list[StepRecord]]:
    """Run a task that clicks ``coordinate`` (0..1000) on ``start_url`` then ends; its run id and steps."""
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: one-click
        goal: click once
        target: {{start_url: "{start_url}"}}
        script:
          - {{action: left_click, coordinate: [{coordinate[0]}, {coordinate[1]}]}}
          - {{action: terminate, status: success}}
        """),
        encoding="utf-8",
    )
    result = run_task(load_task(path), runs_dir=tmp_path / "runs")
    return result.run_id, read_steps(result.run_dir)
