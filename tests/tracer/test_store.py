"""The run folder: atomic run.json, whole steps only, interrupted runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from tracer import RunRecord, RunStatus, RunStore, RunWriter, StepRecord, StepTimings, read_run, read_steps
from tracer.secrets import MASK, Scrubber


def record(run_id="r1", pid=None):
    return RunRecord(
        run_id=run_id,
        task_name="t",
        task_file=None,
        task={},
        policy="script",
        status=RunStatus.running,
        started_at=datetime.now(timezone.utc),
        pid=pid or os.getpid(),
        host=socket.gethostname(),
    )


def step(index, outcome="ok"):
    return StepRecord(
        index=index,
        started_at=datetime.now(timezone.utc),
        timings=StepTimings(),
        url=None,
        title=None,
        screenshot=f"steps/{index:04d}/screenshot.png",
        screenshot_size=(10, 10),
        policy="script",
        raw_output="x",
        reasoning="r",
        action={"action": "wait"},
        confidence=None,
        outcome=outcome,
        error=None if outcome == "ok" else "boom",
    )


def test_write_and_read_back(tmp_path):
    writer = RunWriter.create(tmp_path, record())
    writer.write_screenshot(0, b"\x89PNG fake")
    writer.write_step(step(0))
    writer.write_step(step(1, "error"))
    writer.save()
    assert read_run(writer.run_dir).status is RunStatus.running  # this process is alive
    writer.finish(status=RunStatus.failed, end_reason="because")
    run = read_run(writer.run_dir)
    assert (run.status, run.end_reason, run.steps, run.errors) == (RunStatus.failed, "because", 2, 1)
    assert [s.index for s in read_steps(writer.run_dir)] == [0, 1]
    assert [r.run_id for r in RunStore(tmp_path).runs()] == ["r1"]
    assert not list(writer.run_dir.glob(".*.tmp"))


def test_a_dead_writer_reads_as_interrupted_and_a_torn_line_is_skipped(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    writer = RunWriter.create(tmp_path, record(pid=int(dead.stdout)))
    writer.write_step(step(0))
    writer.write_step(step(1))
    with open(writer.run_dir / "steps.jsonl", "a") as fh:
        fh.write(step(2).model_dump_json()[:50])  # the process died mid-line
    run = read_run(writer.run_dir)
    assert run.status is RunStatus.interrupted and "ended before the run finished" in run.end_reason
    assert [s.index for s in read_steps(writer.run_dir)] == [0, 1]


def test_a_corrupt_run_json_is_a_clear_error_and_is_skipped_in_listings(tmp_path):
    good = RunWriter.create(tmp_path, record("good"))
    good.finish(status=RunStatus.succeeded, end_reason="ok")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    try:
        read_run(bad)
    except ValueError as exc:
        assert "not a valid run record" in str(exc)
    else:
        raise AssertionError("a corrupt run.json must not read as a run")
    assert [r.run_id for r in RunStore(tmp_path).runs()] == ["good"]
    typed = json.loads((good.run_dir / "run.json").read_text())
    (bad / "run.json").write_text(json.dumps(typed | {"policy": 7}))
    with pytest.raises(ValueError, match="is not a valid run record: policy: Input should be a valid string"):
        read_run(bad)


def test_scrubber_masks_nested_values():
    scrub = Scrubber(["pw", "pw-long"])
    assert scrub.scrub({"a": ["x pw-long y", ("pw",)], "n": 3}) == {"a": [f"x {MASK} y", (MASK,)], "n": 3}
    assert Scrubber([]).scrub("pw") == "pw"
