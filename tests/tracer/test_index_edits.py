"""A finished run's folder edited by hand after it was indexed is indexed again (the list says what the folder
says), one that no longer reads is named instead of listed as it was, and an index of the version before keeps
its labels when it is upgraded."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.conftest import glassbox_in_process
from tests.tracer.test_index_confidence import write_run
from tracer.index import INDEX_FILE, INDEX_VERSION, RunIndex
from tracer.labels import LabelAdded, append_label_event, new_label_id


def listed(runs: Path) -> dict[str, int]:
    index = RunIndex(runs)
    try:
        index.sync()
        return {row.run_id: row.steps for row in index.runs()}
    finally:
        index.close()


def test_a_run_edited_by_hand_is_indexed_again_and_an_unreadable_one_is_named(tmp_path: Path) -> None:
    write_run(tmp_path, "cut", [0.9, 0.8, 0.7, 0.6])
    write_run(tmp_path, "typed", [0.5])
    assert listed(tmp_path) == {"cut": 4, "typed": 1}
    steps = tmp_path / "cut" / "steps.jsonl"
    steps.write_text("".join(steps.read_text().splitlines(keepends=True)[:2]))  # cut to two steps by hand
    run_json = tmp_path / "typed" / "run.json"
    run_json.write_text(json.dumps(json.loads(run_json.read_text()) | {"policy": 7}))
    assert listed(tmp_path) == {"cut": 2}  # not 4, and "typed" is not shown as it was
    done = glassbox_in_process("runs", "list", "--runs-dir", str(tmp_path))
    assert done.returncode == 0 and "cut" in done.stdout and "typed" not in done.stdout
    said = " ".join(done.stderr.split())
    assert "not listed, its folder cannot be read: typed:" in said and "policy: Input should be a valid string" in said
    as_json = json.loads(glassbox_in_process("runs", "list", "--runs-dir", str(tmp_path), "--json").stdout)
    assert [run_id for run_id, _ in as_json["unreadable"]] == ["typed"]


def test_an_index_of_the_version_before_is_upgraded_keeping_its_labels(tmp_path: Path) -> None:
    write_run(tmp_path, "a", [0.9])
    append_label_event(
        tmp_path / "a",
        LabelAdded(id=new_label_id(), step=0, verdict="correct", created_at="2026-11-28T00:00:00Z"),
    )
    index = RunIndex(tmp_path)
    try:
        index.sync()
        assert len(index.labels("a")) == 1
    finally:
        index.close()
    conn = sqlite3.connect(tmp_path / INDEX_FILE)  # as version 3 wrote it: no run_files table
    conn.execute("DROP TABLE run_files")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    index = RunIndex(tmp_path)
    try:
        assert len(index.labels("a")) == 1  # the labels mirror was kept, not dropped with nothing to refill it
        index.sync()
        assert [r.run_id for r in index.runs()] == ["a"]
    finally:
        index.close()
    conn = sqlite3.connect(tmp_path / INDEX_FILE)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == INDEX_VERSION
        assert conn.execute("SELECT run_id FROM run_files").fetchall() == [("a",)]
    finally:
        conn.close()
