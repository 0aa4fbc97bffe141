"""`glassbox runs rm` leaves a run that is still being written alone (deleting it broke the run, which then wrote a
half folder back that listed as a ghost run), unless told --force; a run whose process is gone goes as before."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from tests.conftest import glassbox_in_process
from tests.replays.label_runs import SECRET, SECRET_ENV, script_run


def recorded_as_running(run_dir, pid: int, host: str) -> None:
    path = run_dir / "run.json"
    record = json.loads(path.read_text())
    record.update(status="running", ended_at=None, end_reason=None, pid=pid, host=host)
    path.write_text(json.dumps(record))


def test_a_run_still_being_written_is_not_deleted_without_force(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    run_dir = script_run(tmp_path)
    runs = str(run_dir.parent)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        recorded_as_running(run_dir, live.pid, socket.gethostname())
        refused = glassbox_in_process("runs", "rm", run_dir.name, "--runs-dir", runs, "--yes")
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 2, said
        assert f"is still running (process {live.pid} on this machine)" in said and "--force" in said
        assert (run_dir / "run.json").is_file()
        forced = glassbox_in_process("runs", "rm", run_dir.name, "--runs-dir", runs, "--yes", "--force")
        assert forced.returncode == 0, forced.stderr
        assert not run_dir.exists()
    finally:
        live.kill()
        live.wait()


def test_a_run_whose_process_is_gone_is_deleted(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    run_dir = script_run(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    recorded_as_running(run_dir, gone.pid, socket.gethostname())  # killed: its record still says running
    done = glassbox_in_process("runs", "rm", run_dir.name, "--runs-dir", str(run_dir.parent), "--yes")
    assert done.returncode == 0, done.stderr
    assert not run_dir.exists()


def test_a_run_recorded_as_running_elsewhere_needs_force(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    run_dir = script_run(tmp_path)
    recorded_as_running(run_dir, 4242, "another-box")
    refused = glassbox_in_process("runs", "rm", run_dir.name, "--runs-dir", str(run_dir.parent), "--yes")
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 2 and "recorded as running on another-box (process 4242)" in said, said
    assert run_dir.is_dir()
