"""Each run's lowest step confidence in the runs index: filled for new runs, while a run records, and for the runs
of an index written by the version before (upgraded in place, no rebuild); the least-confident-first order."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from tests.tracer.test_store import record, step
from tracer import RunStatus, RunWriter
from tracer.index import _COLUMNS, _OLDER_COLUMNS, INDEX_FILE, INDEX_VERSION, RunIndex


def write_run(runs: Path, run_id: str, confidences: list[float | None], minutes_ago: int = 0) -> None:
    rec = record(run_id)
    rec.started_at -= timedelta(minutes=minutes_ago)
    writer = RunWriter.create(runs, rec)
    for i, value in enumerate(confidences):
        writer.write_step(step(i).model_copy(update={"confidence": value}))
    writer.finish(status=RunStatus.succeeded, end_reason="done")


def lowest(index: RunIndex) -> dict[str, tuple[float | None, int | None]]:
    return {r.run_id: (r.min_confidence, r.min_confidence_step) for r in index.runs()}


def test_new_runs_carry_their_lowest_confidence_and_its_step(tmp_path) -> None:
    write_run(tmp_path, "a", [0.9, 0.42, 0.7, 0.42])
    write_run(tmp_path, "script", [None, None])
    write_run(tmp_path, "mixed", [None, 0.8, None])
    index = RunIndex(tmp_path)
    try:
        assert lowest(index) == {"a": (0.42, 1), "script": (None, None), "mixed": (0.8, 1)}
    finally:
        index.close()


def test_a_running_runs_row_follows_its_steps(tmp_path) -> None:
    writer = RunWriter.create(tmp_path, record("live"))
    index = RunIndex(tmp_path)
    try:
        writer.write_step(step(0).model_copy(update={"confidence": 0.9}))
        assert lowest(index)["live"] == (0.9, 0) and index.runs()[0].steps == 1
        writer.write_step(step(1, outcome="error").model_copy(update={"confidence": 0.3}))
        row = index.runs()[0]
        assert (row.min_confidence, row.min_confidence_step, row.steps, row.errors) == (0.3, 1, 2, 1)
        writer.save()  # run.json rewritten mid-run: the row keeps what its steps say
        assert lowest(index)["live"] == (0.3, 1)
    finally:
        writer.finish(status=RunStatus.failed, end_reason="x")
        index.close()


def test_an_index_written_by_the_previous_version_is_upgraded_and_filled_by_sync(tmp_path) -> None:
    write_run(tmp_path, "a", [0.9, 0.2])
    write_run(tmp_path, "b", [0.6])
    # Make the index exactly what version 2 wrote: its runs table had no confidence columns.
    conn = sqlite3.connect(tmp_path / INDEX_FILE)
    conn.execute("DROP INDEX runs_confidence")
    conn.execute("ALTER TABLE runs DROP COLUMN min_confidence_step")
    conn.execute("ALTER TABLE runs DROP COLUMN min_confidence")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    assert tuple(r[1] for r in conn.execute("PRAGMA table_info(runs)")) == _OLDER_COLUMNS["runs"]
    conn.close()

    index = RunIndex(tmp_path)
    try:
        index.sync()
        assert lowest(index) == {"a": (0.2, 1), "b": (0.6, 0)}
    finally:
        index.close()
    conn = sqlite3.connect(tmp_path / INDEX_FILE)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == INDEX_VERSION == 4
        assert tuple(r[1] for r in conn.execute("PRAGMA table_info(runs)")) == _COLUMNS["runs"]
    finally:
        conn.close()
    assert not list(tmp_path.glob(f"{INDEX_FILE}.corrupt-*"))  # upgraded in place, not moved aside


def test_least_confident_first_puts_unknown_last_and_ties_newest_first(tmp_path) -> None:
    write_run(tmp_path, "high", [0.95], minutes_ago=1)
    write_run(tmp_path, "low-old", [0.8, 0.1], minutes_ago=5)
    write_run(tmp_path, "low-new", [0.1], minutes_ago=2)
    write_run(tmp_path, "script", [None], minutes_ago=0)
    write_run(tmp_path, "medium", [0.55], minutes_ago=3)
    index = RunIndex(tmp_path)
    try:
        assert [r.run_id for r in index.runs(order="least_confident")] == ["low-new", "low-old", "medium", "high", "script"]
        assert [r.run_id for r in index.runs()] == ["script", "high", "low-new", "medium", "low-old"]
        assert [r.run_id for r in index.runs(order="least_confident", limit=2, offset=1)] == ["low-old", "medium"]
    finally:
        index.close()
