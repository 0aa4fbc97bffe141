"""An index another program holds locked (a `sqlite3` shell inside a transaction, a backup) stops nothing: after a
bounded wait a run records into its folder, a listing lists from the folders, each saying why; once the lock is
gone the index catches up with what was recorded meanwhile."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import tracer.index as index_module
from agent import load_task, run_task
from tests.conftest import glassbox_in_process
from tests.replays.label_runs import SCRIPT, SECRET, SECRET_ENV, task_file
from tests.tracer.test_index_confidence import write_run
from tools.fake import FakeExecutor
from tracer.index import INDEX_FILE, RunIndex
from tracer.schema import RunStatus


@pytest.fixture
def quick_give_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "BUSY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(index_module, "LOCKED_GIVE_UP_S", 0.5)


def hold_lock(runs: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(runs / INDEX_FILE, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_run_records_while_another_program_holds_the_index(tmp_path, monkeypatch, quick_give_up) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    runs = tmp_path / "runs"
    write_run(runs, "earlier", [0.9])
    RunIndex(runs).close()  # the index file exists, as after any earlier run
    holder = hold_lock(runs)
    try:
        task = load_task(task_file(tmp_path, SCRIPT))
        result = run_task(task, policy="script", runs_dir=runs, executor=FakeExecutor(secrets=task.secret_values()))
        assert result.status is RunStatus.succeeded, result.end_reason
        listing = glassbox_in_process("runs", "list", "--runs-dir", str(runs))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    said = " ".join(listing.stderr.split())
    assert listing.returncode == 0, said
    assert result.run_id in listing.stdout and "earlier" in listing.stdout  # listed from the folders
    assert "locked by another program" in said and "Traceback" not in said
    index = RunIndex(runs)
    try:
        index.sync()
        assert not index.in_memory
        assert {row.run_id for row in index.runs()} == {"earlier", result.run_id}  # caught up once free
    finally:
        index.close()
