"""Crash recovery under hostile conditions: a corrupt index, torn step lines, kills mid-step, leftover temporary
files, deleted screenshots, and labels that must survive every index rebuild. Real SQLite, real files, real
processes (killed with SIGKILL where it matters); after every probe the runs that existed still list and open."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from PIL import Image

from replays.diff import diff_runs
from replays.export import FeedbackExportError, export_feedback
from replays.labels import Correction, LabelIn, Labels
from replays.replay import ReplayError, replay
from tests.conftest import ROOT, TASKS, glassbox_in_process
from tools.actions import ToolCall
from tracer import RunRecord, RunStatus, RunWriter, StepRecord, StepTimings, read_run, read_steps
from tracer.follow import RunFollower
from tracer.index import INDEX_FILE, RunIndex
from tracer.labels import LABELS_FILE
from tracer.schema import PromptMessage
from tracer.store import MissingRunFile, RunStore, atomic_write, read_step_file

# -- building runs without a browser ---------------------------------------------------------------------------


def png(colour: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 25), (colour, colour, colour)).save(buffer, format="PNG")
    return buffer.getvalue()


def record(run_id: str, *, task_file: str | None = None, pid: int | None = None) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        task_name="crash-probe",
        task_file=task_file,
        task={},
        policy="script",
        status=RunStatus.running,
        started_at=datetime.now(timezone.utc),
        pid=pid or os.getpid(),
        host=socket.gethostname(),
    )


def step(index: int, *, reasoning: str = "r", outcome: str = "ok") -> StepRecord:
    shot = f"steps/{index:04d}/screenshot.png"
    return StepRecord(
        index=index,
        started_at=datetime.now(timezone.utc),
        timings=StepTimings(),
        url="http://127.0.0.1:1/",
        title="t",
        screenshot=shot,
        screenshot_size=(40, 25),
        policy="script",
        raw_output="x",
        reasoning=reasoning,
        action={"action": "left_click", "coordinate": [500, 500]},
        tool_calls=[ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [500, 500]})],
        confidence=None,
        outcome=outcome,
        error=None if outcome == "ok" else "boom",
        prompt=[PromptMessage(role="user", text="<image>what next?", images=[shot])],  # as Prompt.record() writes it
    )


def make_run(
    runs: Path, run_id: str, steps: int = 3, *, task_file: str | None = None, status: RunStatus = RunStatus.succeeded
) -> Path:
    writer = RunWriter.create(runs, record(run_id, task_file=task_file))
    for i in range(steps):
        writer.write_screenshot(i, png(i * 20))
        writer.write_step(step(i))
    writer.finish(status=status, end_reason="done")
    return writer.run_dir


def cli(*args: str, runs: Path) -> subprocess.CompletedProcess[str]:
    """The CLI's reading commands, in this process (what they print is tested here, not the process)."""
    return glassbox_in_process(*args, "--runs-dir", str(runs), env={"COLUMNS": "200"})


def listed(runs: Path) -> dict[str, int]:
    """``glassbox runs list --json``: run id -> steps; asserts the command succeeded without a traceback or a
    warning (an index that was recovered once is not recovered again)."""
    proc = cli("runs", "list", "--json", runs=runs)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "warning" not in proc.stderr, proc.stderr
    return {r["run_id"]: r["steps"] for r in json.loads(proc.stdout)["runs"]}


def assert_all_open(runs: Path, expected: dict[str, int]) -> None:
    """Every run that existed is listed with its steps (``runs list``) and opens (``runs show`` for the first,
    the store's reading API for all)."""
    assert listed(runs) == expected
    first = min(expected)
    shown = cli("runs", "show", first, "--json", runs=runs)
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["steps"]) == expected[first]
    store = RunStore(runs)
    for run_id, steps in expected.items():
        run_dir = store.run_dir(run_id)
        assert read_run(run_dir).run_id == run_id and len(read_steps(run_dir)) == steps


def asides(runs: Path) -> list[Path]:
    return sorted(
        p for p in runs.iterdir() if p.name.startswith(f"{INDEX_FILE}.corrupt-") and "-wal" not in p.name and "-shm" not in p.name
    )


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    runs = tmp_path / "runs"
    make_run(runs, "20261101-000000-a", 3)
    make_run(runs, "20261101-000001-b", 2)
    return runs, {"20261101-000000-a": 3, "20261101-000001-b": 2}


# -- a corrupt or unusable index -------------------------------------------------------------------------------


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\x00\xff" * 40)


def _truncated(path: Path) -> None:
    size = path.stat().st_size
    assert size > 3 * 4096, "the index must span pages beyond the schema for a truncation to bite"
    with open(path, "r+b") as fh:
        fh.truncate(2 * 4096)


def _header_only(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(60)


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "keep.txt").write_text("something a person put here")


def _wrong_schema(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (id INTEGER, name TEXT)")
    conn.execute("INSERT INTO runs VALUES (1, 'not ours')")
    conn.commit()
    conn.close()


def _current_version_missing_tables(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE steps")
    conn.commit()
    conn.close()


CORRUPTIONS = {
    "garbage": _garbage,
    "truncated": _truncated,
    "header-only": _header_only,
    "directory": _directory,
    "wrong-schema": _wrong_schema,
    "missing-table": _current_version_missing_tables,
}


@pytest.fixture(scope="module")
def big_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """Enough runs and steps that the index spans many pages (a truncation cuts real data), and a label."""
    runs = tmp_path_factory.mktemp("template") / "runs"
    expected = {}
    for n in range(12):
        run_id = f"20261102-0000{n:02d}-r"
        writer = RunWriter.create(runs, record(run_id), indexed=False)
        for i in range(25):
            writer.write_step(step(i, reasoning="x" * 50))
        writer.finish(status=RunStatus.succeeded, end_reason="done")
        expected[run_id] = 25
    index = RunIndex(runs)
    index.sync()
    index.close()
    Labels(runs).add("20261102-000003-r", 4, LabelIn(verdict="correct", note="fine"))
    return runs, expected


@pytest.fixture
def big_runs(tmp_path: Path, big_template: tuple[Path, dict[str, int]]) -> tuple[Path, dict[str, int]]:
    runs = tmp_path / "runs"
    shutil.copytree(big_template[0], runs)
    return runs, big_template[1]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_a_corrupt_index_is_moved_aside_and_rebuilt_by_runs_list(big_runs, corrupt):
    runs, expected = big_runs
    index = runs / INDEX_FILE
    for suffix in ("-wal", "-shm"):
        assert not Path(f"{index}{suffix}").exists()  # every connection closed: the WAL was checkpointed
    CORRUPTIONS[corrupt](index)
    before = sorted(p.name for p in index.rglob("*")) if index.is_dir() else index.read_bytes()

    proc = cli("runs", "list", "--json", runs=runs)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert {r["run_id"]: r["steps"] for r in json.loads(proc.stdout)["runs"]} == expected
    assert "warning:" in proc.stderr and "moved to index.sqlite3.corrupt-" in proc.stderr
    assert "rebuilt from 12 run folder(s)" in proc.stderr
    [aside] = asides(runs)  # moved, never deleted: byte for byte what was there
    assert (sorted(p.name for p in aside.rglob("*")) if aside.is_dir() else aside.read_bytes()) == before
    assert index.is_file()
    assert [(lbl.step, lbl.note) for lbl in Labels(runs).list()] == [(4, "fine")]
    assert_all_open(runs, expected)  # the rebuilt index is used from now on: no second warning, no second move
    assert len(asides(runs)) == 1


def test_a_page_of_the_index_overwritten_with_garbage_is_found_mid_query(big_runs):
    """Corruption SQLite notices only when a query reaches the damaged page: recovered there, not at open."""
    runs, expected = big_runs
    path = runs / INDEX_FILE
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 6] = b"\xa5" * (4096 * 3)
    path.write_bytes(bytes(data))
    index = RunIndex(runs)  # opens: the schema page is intact
    try:
        rows = {r.run_id: r.steps for r in index.runs(limit=100)}
        counts = {run_id: len(index.steps(run_id)) for run_id in expected}
    finally:
        index.close()
    assert rows == expected and counts == expected
    assert len(asides(runs)) == 1


def test_the_viewer_and_glassbox_run_start_with_a_corrupt_index(tmp_path):
    import httpx

    from replays.viewer import ViewerServer

    runs = tmp_path / "runs"
    make_run(runs, "20261101-000000-a", 3)
    _garbage(runs / INDEX_FILE)
    with ViewerServer(runs) as server:
        listed_ids = [r["run_id"] for r in httpx.get(f"{server.url}/api/runs", timeout=30).json()]
        page = httpx.get(f"{server.url}/api/runs/20261101-000000-a", timeout=30)
    assert listed_ids == ["20261101-000000-a"] and page.status_code == 200
    assert len(asides(runs)) == 1

    # Recording a new run into a runs dir whose index is corrupt (RunWriter opens the index first).
    _garbage(runs / INDEX_FILE)
    make_run(runs, "20261101-000005-c", 1)
    assert len(asides(runs)) == 2
    assert_all_open(runs, {"20261101-000000-a": 3, "20261101-000005-c": 1})


@pytest.mark.usefixtures("chromium")
def test_glassbox_run_with_a_corrupt_index_records_and_warns(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "20261101-000000-a", 3)
    _garbage(runs / INDEX_FILE)
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "run", str(slow_task(tmp_path, waits=2)), "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "Traceback" not in proc.stderr and proc.returncode in (0, 1), proc.stderr
    assert "moved to index.sqlite3.corrupt-" in proc.stderr
    new = [p.name for p in runs.iterdir() if p.is_dir() and p.name != "20261101-000000-a"]
    assert len(new) == 1
    assert_all_open(runs, {"20261101-000000-a": 3, new[0]: 2})


def test_several_processes_meeting_one_corrupt_index_move_it_aside_once(tmp_path, two_runs):
    runs, expected = two_runs
    _garbage(runs / INDEX_FILE)
    code = (
        "import sys; from pathlib import Path; from tracer.index import RunIndex; sys.stdout.write('ready\\n');"
        "sys.stdout.flush(); sys.stdin.readline(); i = RunIndex(Path(sys.argv[1])); i.sync();"
        "print(sorted((r.run_id, r.steps) for r in i.runs())); i.close()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(runs)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:  # all start opening the index at once
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == str(sorted(expected.items()))
    assert len(asides(runs)) == 1
    assert_all_open(runs, expected)


# -- concurrent writers still safe -----------------------------------------------------------------------------


WRITER = r"""
import os, socket, sys
from datetime import datetime, timezone
from pathlib import Path
from replays.labels import LabelIn, Labels
from tests.tracer.test_crash_recovery import make_run
runs, name = Path(sys.argv[1]), sys.argv[2]
sys.stdout.write("ready\n"); sys.stdout.flush(); sys.stdin.readline()
for n in range(3):
    run_id = f"20261103-00000{n}-{name}"
    make_run(runs, run_id, 5)
    Labels(runs).add(run_id, 2, LabelIn(verdict="correct", note=name))
"""


def test_concurrent_writers_into_one_fresh_runs_dir(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    names = ["w0", "w1", "w2"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(runs), name],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:  # the first index is created (and upgraded) by all of them at once
            proc.stdin.write("go\n")
            proc.stdin.flush()
        errors = [proc.communicate(timeout=180)[1] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert all(proc.returncode == 0 for proc in procs), errors
    assert not any("warning" in e for e in errors), errors
    index = RunIndex(runs)  # what the writers put in the index themselves, before any sync
    try:
        rows = {r.run_id: r.steps for r in index.runs(limit=100)}
        labels = index.labels()
    finally:
        index.close()
    expected = {f"20261103-00000{n}-{name}": 5 for n in range(3) for name in names}
    assert rows == expected
    assert sorted((lbl["run_id"], lbl["idx"], lbl["note"]) for lbl in labels) == sorted(
        (run_id, 2, run_id.rsplit("-", 1)[1]) for run_id in expected
    )
    assert len({lbl["id"] for lbl in labels}) == len(expected)
    assert_all_open(runs, expected)


# -- torn lines in steps.jsonl ---------------------------------------------------------------------------------

UNICODE = step(3, reasoning="café ☕ 漢字 — ok").model_dump_json().encode()
TORN_TAILS = {
    "partial-line": UNICODE[:40],
    "torn-multibyte-char": UNICODE[: UNICODE.index("☕".encode()) + 1],
    "invalid-utf8-whole-line": b'{"index": 3, "bad": "\xff\xfe\xc3"}\n',
    "torn-char-then-newline": UNICODE[: UNICODE.index("漢".encode()) + 2] + b"\n",
    "nul-bytes": b"\x00" * 300,
    "invalid-line-then-a-whole-step": b"\xc3\x28 not json\n" + step(3).model_dump_json().encode() + b"\n",
}


@pytest.mark.parametrize("tail", TORN_TAILS, ids=list(TORN_TAILS))
def test_torn_lines_are_skipped_everywhere(tmp_path, tail):
    runs = tmp_path / "runs"
    run_dir = make_run(runs, "20261104-000000-torn", 3)
    make_run(runs, "20261104-000001-fine", 2)
    with open(run_dir / "steps.jsonl", "ab") as fh:
        fh.write(TORN_TAILS[tail])
    whole_valid = 4 if tail == "invalid-line-then-a-whole-step" else 3
    assert [s.index for s in read_steps(run_dir)] == list(range(whole_valid))
    assert [s.index for s in RunFollower(run_dir).poll_steps()] == list(range(whole_valid))
    (runs / INDEX_FILE).unlink()  # rebuilt from the folders: the count comes from the lines on disk
    assert_all_open(runs, {"20261104-000000-torn": whole_valid, "20261104-000001-fine": 2})


# -- kill -9 mid-step: the index counts the whole lines on disk -------------------------------------------------

KILLED = r"""
import sys
from pathlib import Path
from tracer.index import RunIndex
from tracer.store import RunWriter
from tests.tracer.test_crash_recovery import png, record, step
runs, mode, stop_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
real_add_step = RunIndex.add_step

def add_step(self, run_id, record_):
    if mode == "after-line" and record_.index == stop_at:  # the line is on disk, the index not yet told
        sys.stdout.write("ready\n"); sys.stdout.flush(); sys.stdin.readline()
    real_add_step(self, run_id, record_)

RunIndex.add_step = add_step
writer = RunWriter.create(runs, record("20261105-000000-killed"))
for i in range(stop_at + 1):
    writer.write_screenshot(i, png())
    if mode == "torn-line" and i == stop_at:  # the process dies inside the write of a line
        line = step(i, reasoning="漢字").model_dump_json().encode()
        with open(writer.run_dir / "steps.jsonl", "ab") as fh:
            fh.write(line[:line.index("漢".encode()) + 1])
        sys.stdout.write("ready\n"); sys.stdout.flush(); sys.stdin.readline()
    writer.write_step(step(i))
    writer.save()
"""


@pytest.mark.parametrize("mode", ["after-line", "torn-line"])
def test_sigkill_mid_step_leaves_the_index_counting_whole_lines(tmp_path, mode):
    runs = tmp_path / "runs"
    make_run(runs, "20261101-000000-a", 3)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(runs), mode, "4"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_dir = runs / "20261105-000000-killed"
    data = (run_dir / "steps.jsonl").read_bytes()
    whole = data.count(b"\n")
    assert whole == (5 if mode == "after-line" else 4)
    assert read_run(run_dir).steps == 4  # run.json lags one step behind the lines in "after-line"
    assert list(run_dir.rglob("*.tmp")) == []
    index = RunIndex(runs)  # no explicit sync: listing alone brings the killed run up to date
    try:
        [row] = index.runs(status="interrupted")
        assert (row.run_id, row.steps) == (run_dir.name, whole)
        assert len(index.steps(row.run_id)) == whole
    finally:
        index.close()
    assert_all_open(runs, {"20261101-000000-a": 3, run_dir.name: whole})


@pytest.mark.usefixtures("chromium")
def test_sigkill_of_a_real_run_counts_whole_lines(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "run", str(slow_task(tmp_path, waits=40)), "--runs-dir", str(runs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        follower: RunFollower | None = None
        seen: list[StepRecord] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(seen) < 3:
            dirs = [p for p in runs.glob("*") if p.is_dir()] if runs.exists() else []
            if dirs and follower is None:
                follower = RunFollower(dirs[0])
            seen += follower.poll_steps() if follower else []
            time.sleep(0.02)
        assert len(seen) >= 3
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert follower is not None
    whole = (follower.run_dir / "steps.jsonl").read_bytes().count(b"\n")
    assert listed(runs) == {follower.run_dir.name: whole}


# -- temporary files -------------------------------------------------------------------------------------------


def test_a_failed_atomic_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "run.json"
    target.mkdir()  # os.replace onto a directory fails after the temporary file was written
    with pytest.raises(OSError):
        atomic_write(target, b"{}")
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_stale_temporary_files_are_removed_when_the_run_is_indexed(tmp_path):
    runs = tmp_path / "runs"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
    try:
        finished = make_run(runs, "20261106-000000-done", 2)
        stale = [finished / f".run.json.{dead_pid}-abc123.tmp", finished / "steps" / "0001" / f".screenshot.png.{dead_pid}.tmp"]
        kept = finished / "steps" / "0000" / f".screenshot.png.{live.pid}-def456.tmp"  # a live process's write
        not_ours = finished / ".notes.tmp"
        # A run whose writer is alive (this process): nothing of it is touched.
        writer = RunWriter.create(runs, record("20261106-000001-live"))
        writer.write_step(step(0))
        writer.save()
        running = writer.run_dir / f".run.json.{dead_pid}-aaa111.tmp"
        for path in (*stale, kept, not_ours, running):
            path.write_bytes(b"partial")
        (runs / INDEX_FILE).unlink()
        assert listed(runs) == {"20261106-000000-done": 2, "20261106-000001-live": 1}
        assert [p.exists() for p in stale] == [False, False]
        assert kept.exists() and not_ours.exists() and running.exists()
        writer.finish(status=RunStatus.succeeded, end_reason="done")
    finally:
        live.stdin.write(b"\n")
        live.stdin.close()
        live.wait(timeout=30)


# -- labels live in the run folder ----------------------------------------------------------------------------


def test_labels_survive_deleting_the_index(tmp_path, two_runs):
    runs, expected = two_runs
    labels = Labels(runs)
    wrong = labels.add(
        "20261101-000000-a",
        1,
        LabelIn(verdict="wrong", note="there", correction=Correction(action="left_click", coordinate=(250, 400))),
    )
    right = labels.add("20261101-000001-b", 0, LabelIn(verdict="correct"))
    undone = labels.add("20261101-000000-a", 2, LabelIn(verdict="correct"))
    assert labels.undo(undone.id) and not labels.undo(undone.id)
    before = [lbl.model_dump() for lbl in labels.list()]
    assert [(lbl["run_id"], lbl["step"]) for lbl in before] == [("20261101-000000-a", 1), ("20261101-000001-b", 0)]
    assert before[0]["pixel"] == (10, 10) and wrong.id < right.id < undone.id
    for path in runs.glob(f"{INDEX_FILE}*"):
        path.unlink()
    assert [lbl.model_dump() for lbl in Labels(runs).list()] == before
    assert [lbl.model_dump() for lbl in Labels(runs).list("20261101-000000-a")] == before[:1]
    events = [json.loads(line) for line in (runs / "20261101-000000-a" / LABELS_FILE).read_text().splitlines()]
    assert [e["op"] for e in events] == ["add", "add", "undo"]
    # The undone label stays undone after the rebuild; the export sees what the viewer sees.
    summary = export_feedback(runs, tmp_path / "out" / "sft.jsonl")
    assert summary.records == 2
    assert_all_open(runs, expected)


def test_a_label_appended_by_another_process_and_a_torn_label_line(tmp_path, two_runs):
    runs, expected = two_runs
    labels = Labels(runs)
    first = labels.add("20261101-000000-a", 0, LabelIn(verdict="correct"))
    path = runs / "20261101-000000-a" / LABELS_FILE
    with open(path, "ab") as fh:  # a process killed mid-append
        fh.write(b'{"op": "add", "id": 99, "step": 1, "verd')
    second = labels.add("20261101-000000-a", 1, LabelIn(verdict="correct"))
    assert [lbl.id for lbl in labels.list()] == [first.id, second.id]
    # Appended without telling the index (the mirror catches up by the file's size).
    with open(path, "ab") as fh:
        fh.write(
            json.dumps(
                {
                    "op": "add",
                    "id": 7,
                    "step": 2,
                    "verdict": "correct",
                    "note": None,
                    "correction": None,
                    "created_at": "2026-11-01T00:00:00+00:00",
                }
            ).encode()
            + b"\n"
        )
    assert sorted(lbl.id for lbl in labels.list()) == sorted([7, first.id, second.id])
    assert labels.undo(7)
    assert_all_open(runs, expected)


OLD_SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, task_name TEXT NOT NULL, policy TEXT NOT NULL, model TEXT, status TEXT NOT NULL,
    end_reason TEXT, agent_verdict TEXT, checks_passed INTEGER, started_at TEXT NOT NULL, ended_at TEXT, duration_s REAL,
    steps INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0, layout_seed INTEGER, parent_run TEXT, pid INTEGER,
    host TEXT);
CREATE TABLE steps (run_id TEXT NOT NULL, idx INTEGER NOT NULL, action TEXT, outcome TEXT NOT NULL, error TEXT,
    confidence REAL, url TEXT, started_at TEXT NOT NULL, PRIMARY KEY (run_id, idx));
CREATE TABLE labels (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, idx INTEGER NOT NULL,
    verdict TEXT NOT NULL, correction TEXT, note TEXT, created_at TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0);
CREATE INDEX labels_step ON labels (run_id, idx);
"""


def old_index(runs: Path) -> None:
    """An index as Glassbox wrote it before labels moved to the run folders (user_version 0, labels only here)."""
    for path in runs.glob(f"{INDEX_FILE}*"):
        path.unlink()
    conn = sqlite3.connect(runs / INDEX_FILE)
    conn.executescript(OLD_SCHEMA)
    correction = json.dumps({"action": "left_click", "coordinate": [100.0, 200.0], "text": None, "keys": None, "pixel": [4, 5]})
    conn.executemany(
        "INSERT INTO labels (run_id, idx, verdict, correction, note, created_at, deleted) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            ("20261101-000000-a", 1, "wrong", correction, "old", "2026-10-01T10:00:00+02:00", 0),
            ("20261101-000000-a", 2, "correct", None, None, "2026-10-01T10:01:00+02:00", 1),
            ("20261101-000001-b", 0, "correct", None, "kept", "2026-10-01T10:02:00+02:00", 0),
            ("20261031-gone", 0, "correct", None, None, "2026-10-01T10:03:00+02:00", 0),
        ],
    )
    conn.commit()
    conn.close()


def test_labels_of_an_old_index_move_to_the_folders_on_first_open(tmp_path, two_runs):
    runs, expected = two_runs
    old_index(runs)
    # Several processes open the old index at once: each label is written to its folder once.
    code = (
        "import sys; from pathlib import Path; from replays.labels import Labels; sys.stdout.write('ready\\n');"
        "sys.stdout.flush(); sys.stdin.readline(); print(len(Labels(Path(sys.argv[1])).list()))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(runs)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [out.strip() for out, _ in outputs] == ["2", "2", "2"], outputs
    labels = Labels(runs).list()
    assert [(lbl.id, lbl.run_id, lbl.step, lbl.verdict, lbl.note, lbl.pixel) for lbl in labels] == [
        (1, "20261101-000000-a", 1, "wrong", "old", (4, 5)),
        (3, "20261101-000001-b", 0, "correct", "kept", None),
    ]
    assert labels[0].correction == Correction(action="left_click", coordinate=(100, 200))
    events = [json.loads(line) for line in (runs / "20261101-000000-a" / LABELS_FILE).read_text().splitlines()]
    assert [(e["op"], e["id"]) for e in events] == [("add", 1), ("add", 2), ("undo", 2)]
    # From now on the folders are the truth: the index can go.
    for path in runs.glob(f"{INDEX_FILE}*"):
        path.unlink()
    assert [lbl.id for lbl in Labels(runs).list()] == [1, 3]
    new = Labels(runs).add("20261101-000001-b", 1, LabelIn(verdict="correct"))
    assert new.id > 3 and [lbl.id for lbl in Labels(runs).list()] == [1, 3, new.id]
    assert_all_open(runs, expected)


def test_labels_of_an_old_index_that_is_also_corrupt_are_salvaged(tmp_path, two_runs):
    runs, expected = two_runs
    old_index(runs)
    conn = sqlite3.connect(runs / INDEX_FILE)
    conn.execute("ALTER TABLE runs RENAME COLUMN task_name TO name")  # unusable as an index, labels still readable
    conn.commit()
    conn.close()
    proc = cli("runs", "list", "--json", runs=runs)
    assert proc.returncode == 0 and {r["run_id"]: r["steps"] for r in json.loads(proc.stdout)["runs"]} == expected
    message = " ".join(proc.stderr.split())
    assert "moved to index.sqlite3.corrupt-" in message
    assert "1 label(s) in the runs index belong to run '20261031-gone'" in message
    assert "they stay in index.sqlite3.corrupt-" in message
    assert [(lbl.id, lbl.note) for lbl in Labels(runs).list()] == [(1, "old"), (3, "kept")]
    assert len(asides(runs)) == 1
    assert_all_open(runs, expected)


# -- a deleted screenshot --------------------------------------------------------------------------------------


def replayable_run(runs: Path) -> Path:
    """A run recorded from the bundled task file (a replay needs it), made without a browser."""
    return make_run(runs, "20261107-000000-replayable", 3, task_file=str(TASKS / "publish_product.yaml"))


def test_a_deleted_screenshot_is_a_clear_error_in_replay_and_resume(tmp_path):
    runs = tmp_path / "runs"
    run_dir = replayable_run(runs)
    (run_dir / "steps" / "0001" / "screenshot.png").unlink()
    with pytest.raises(ReplayError, match=r"screenshot of step 1 \(steps/0001/screenshot.png\) is missing"):
        replay(runs, run_dir.name)
    for args in (("replay", run_dir.name), ("resume", run_dir.name, "--from-step", "2")):
        proc = cli(*args, runs=runs)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "the screenshot of step 1 (steps/0001/screenshot.png) is missing" in " ".join(proc.stderr.split())
    assert [p.name for p in runs.iterdir() if p.is_dir()] == [run_dir.name]  # nothing started
    assert_all_open(runs, {run_dir.name: 3})


def test_a_deleted_screenshot_is_a_clear_error_in_the_feedback_export(tmp_path):
    runs = tmp_path / "runs"
    run_dir = replayable_run(runs)
    Labels(runs).add(run_dir.name, 1, LabelIn(verdict="wrong", correction=Correction(action="left_click", coordinate=(10, 10))))
    (run_dir / "steps" / "0001" / "screenshot.png").unlink()
    out = tmp_path / "export" / "sft.jsonl"
    with pytest.raises(FeedbackExportError, match=r"step 1 of run 20261107-000000-replayable: .*screenshot.png is missing"):
        export_feedback(runs, out)
    proc = cli("export", "feedback", "--format", "sft", "--out", str(out), runs=runs)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "screenshot.png is missing" in " ".join(proc.stderr.split()) and "undo the label" in proc.stderr
    assert not out.exists() and list(out.parent.glob("*.tmp")) == []
    # The Playwright export needs the actions, not the screenshots: it still writes the script.
    script = tmp_path / "export" / "replay.py"
    exported = cli("export", "playwright", run_dir.name, "--out", str(script), runs=runs)
    assert exported.returncode == 0 and "Traceback" not in exported.stderr, exported.stderr
    assert "page.mouse.click(" in script.read_text()
    assert_all_open(runs, {run_dir.name: 3})


def test_diff_compares_the_actions_where_a_screenshot_is_gone(tmp_path):
    runs = tmp_path / "runs"
    a, b = make_run(runs, "20261109-000000-a", 3), make_run(runs, "20261109-000001-b", 3)
    (b / "steps" / "0001" / "screenshot.png").unlink()
    result = diff_runs(a, b)  # step 1 is compared by its action only
    assert (result.step, result.compared) == (None, 3)
    proc = cli("diff", a.name, b.name, runs=runs)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "no difference over 3 steps" in proc.stdout


def test_the_read_api_names_a_missing_file(tmp_path):
    runs = tmp_path / "runs"
    run_dir = make_run(runs, "20261108-000000-x", 2)
    assert read_step_file(run_dir, "steps/0000/screenshot.png", 0).startswith(b"\x89PNG")
    (run_dir / "steps" / "0000" / "screenshot.png").unlink()
    with pytest.raises(MissingRunFile, match=r"step 0 of run 20261108-000000-x: steps/0000/screenshot.png is missing"):
        read_step_file(run_dir, "steps/0000/screenshot.png", 0)
    with pytest.raises(ValueError, match="outside the run folder"):
        read_step_file(run_dir, "../../etc/passwd")


# -- helpers that need the bundled task --------------------------------------------------------------------------


def slow_task(tmp_path: Path, waits: int) -> Path:
    data = yaml.safe_load((TASKS / "publish_product.yaml").read_text())
    data.pop("files")  # nothing is uploaded: waits only
    data["script"] = [{"action": "wait", "time": 0.2}] * waits
    data["limits"]["max_steps"] = waits
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_screenshot_that_is_a_bomb_is_not_handed_to_a_trainer(tmp_path):
    from tests.tools.test_images import png_bomb

    runs = tmp_path / "runs"
    run_dir = replayable_run(runs)
    Labels(runs).add(run_dir.name, 1, LabelIn(verdict="wrong", correction=Correction(action="left_click", coordinate=(10, 10))))
    (run_dir / "steps" / "0001" / "screenshot.png").write_bytes(png_bomb(12000, 9000))  # 300 KB, 324 MB decoded
    out = tmp_path / "export" / "sft.jsonl"
    with pytest.raises(FeedbackExportError, match=r"step 1 of run .*screenshot.png is 12000x9000 pixels: not a screenshot"):
        export_feedback(runs, out)
    assert not out.exists() and not (out.parent / "images").exists() or not any((out.parent / "images").iterdir())
