"""A reasoning-action mismatch shows on the step's terminal line and counts in an eval's summary."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from rich.console import Console

from cli import app as cli_app
from evals.stats import summarize
from tools.actions import LeftClick
from tracer.evals import EpisodeResult
from tracer.schema import ConsistencyCheck, StepRecord, StepTimings


def step(check: ConsistencyCheck | None) -> StepRecord:
    return StepRecord(
        index=6,
        started_at=datetime.now(timezone.utc),
        timings=StepTimings(),
        url=None,
        title=None,
        screenshot="steps/0006/screenshot.png",
        screenshot_size=(1280, 800),
        policy="script",
        raw_output=None,
        reasoning="Click the 'Orders' link",
        action=LeftClick(action="left_click", coordinate=[300, 40]),
        confidence=None,
        outcome="ok",
        consistency=check,
    )


def printed(record: StepRecord, monkeypatch) -> str:
    # A console of our own: setting the shared console's `file` would leave it pinned to this test's captured
    # stdout afterwards (rich reads sys.stdout when `file` was never set), and later CLI calls would print nowhere.
    out = io.StringIO()
    monkeypatch.setattr(cli_app, "console", Console(file=out, width=200, color_system=None))
    cli_app._print_step(record)
    return out.getvalue()


def test_a_mismatch_is_flagged_on_the_step_line_and_a_match_is_not(monkeypatch) -> None:
    mismatch = ConsistencyCheck(
        verdict="mismatch",
        claimed=["Orders"],
        observed={"element": "New product"},
        reason="the reasoning names 'Orders' but the point shows element 'New product'",
    )
    line = printed(step(mismatch), monkeypatch)
    assert "mismatch the reasoning names 'Orders' but the point shows element 'New product'" in line
    match = mismatch.model_copy(update={"verdict": "match", "reason": "'Orders' agrees"})
    assert "mismatch" not in printed(step(match), monkeypatch)
    assert "mismatch" not in printed(step(None), monkeypatch)


def test_the_eval_summary_counts_mismatches() -> None:
    def episode(i: int, mismatches: int) -> EpisodeResult:
        return EpisodeResult(
            episode_id=f"e{i}",
            task_name="t",
            task_file="t.yaml",
            seed=None,
            repeat=i,
            status="succeeded",
            run_id=f"r{i}",
            end_reason="the agent ended the task (success)",
            steps=5,
            seconds=1.0,
            parse_errors=0,
            mismatches=mismatches,
            harness_attempts=1,
            finished_at=datetime.now(timezone.utc),
        )

    summary = summarize([episode(0, 2), episode(1, 0), episode(2, 1)])
    assert (summary.mismatches, summary.mismatch_episodes) == (3, 2)
