"""Run one episode attempt in a child process of its own, with a time limit.

Each attempt is a fresh ``python -m evals.worker`` in its own session (process group): its own browser and its
own site instance, nothing shared with other episodes, and when the time limit passes the whole group is
stopped (SIGTERM, so the run closes as interrupted and Chromium goes with it; SIGKILL if it does not). The
child dies with its parent (Linux ``PR_SET_PDEATHSIG``), so a killed eval leaves no episode running.

    result = run_attempt_in_child(job)     # an AttemptResult; never raises for what happens in the child

Both engines use this: the local pool from its threads, Ray from inside each Ray task.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from evals.episode import AttemptResult, EpisodeJob, run_attempt

_GRACE_S = 10.0  # after SIGTERM, how long the run gets to close before SIGKILL
_PROJECT_ROOT = Path(__file__).resolve().parents[1]
_live: set[subprocess.Popen[bytes]] = set()  # children of this process still running, for stop_all()
_live_lock = threading.Lock()


def stop_all() -> None:
    """Ask every running episode of this process to stop (SIGTERM to its group: its run closes as interrupted).
    For an eval that is itself stopping: the threads waiting on those children then return at once."""
    with _live_lock:
        children = list(_live)
    for child in children:
        try:
            os.killpg(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def run_attempt_in_child(job: EpisodeJob) -> AttemptResult:
    with tempfile.TemporaryDirectory(prefix="glassbox-episode-") as tmp:
        job_file, result_file, stderr_file = Path(tmp) / "job.json", Path(tmp) / "result.json", Path(tmp) / "stderr.txt"
        job_file.write_text(job.model_dump_json(), encoding="utf-8")
        env = dict(os.environ)
        # The child imports this very code, wherever this process found it (a Ray worker's cwd is elsewhere).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        started = time.monotonic()
        with open(stderr_file, "wb") as stderr:
            child = subprocess.Popen(
                [sys.executable, "-m", "evals.worker", str(job_file), str(result_file), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                env=env,
                start_new_session=True,
            )
            with _live_lock:
                _live.add(child)
            try:
                child.wait(timeout=job.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                _stop_group(child)
            except BaseException:  # the eval itself is stopping (Ctrl-C): take the episode down with it
                _stop_group(child)
                raise
            finally:
                with _live_lock:
                    _live.discard(child)
        seconds = time.monotonic() - started
        if timed_out:
            written = (job.runs_dir / job.run_id / "run.json").is_file()
            return AttemptResult(
                kind="harness",
                run_id=job.run_id if written else None,
                error=f"timeout: the episode ran past {job.timeout_s:g} s and its worker was stopped",
                timed_out=True,
                seconds=seconds,
            )
        try:
            return AttemptResult.model_validate_json(result_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = stderr_file.read_bytes()[-1500:].decode("utf-8", errors="replace").strip()
            written = (job.runs_dir / job.run_id / "run.json").is_file()
            return AttemptResult(
                kind="harness",
                run_id=job.run_id if written else None,
                error=f"the worker process exited with code {child.returncode} without a result" + (f": {tail}" if tail else ""),
                seconds=seconds,
            )


def _stop_group(child: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, _GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when the process that started it dies (the loop closes the run as interrupted)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a killed eval may leave this episode running to its end
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> int:
    job_file, result_file, parent_pid = Path(argv[0]), Path(argv[1]), int(argv[2])
    _die_with_parent(parent_pid)
    job = EpisodeJob.model_validate_json(job_file.read_text(encoding="utf-8"))
    result = run_attempt(job)
    tmp = result_file.with_suffix(".tmp")
    tmp.write_text(result.model_dump_json(), encoding="utf-8")
    os.replace(tmp, result_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
