"""Run episode attempts in worker processes of their own, with a time limit.

A worker is a ``python -m evals.worker`` in its own session (process group) that runs one attempt at a time:
each attempt opens its own site instance and its own browser context (agent.loop.run_task; cookies, storage and
cache of its own) in the worker's one Chromium, so episodes share nothing but the warm interpreter and browser
process, which a fresh process would launch and import again for every episode. When an attempt runs
past its time limit the worker's whole group is stopped (SIGTERM, so the run closes as interrupted and Chromium
goes with it; SIGKILL if it does not) and the next attempt gets a fresh worker; so does the attempt after a
worker died. A worker dies with the process that started it (Linux ``PR_SET_PDEATHSIG``), so a killed eval
leaves no episode running.

    result = run_attempt_in_child(job)     # an AttemptResult; never raises for what happens in the worker
    close_idle()                           # the eval is over: idle workers exit

Both engines use this: the local pool from its threads, Ray from inside each Ray task (idle workers stay with
the Ray worker process between its tasks).
"""

from __future__ import annotations

import concurrent.futures
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from evals.episode import AttemptResult, EpisodeJob, run_attempt

_GRACE_S = 10.0  # after SIGTERM, how long the run gets to close before SIGKILL
_PROJECT_ROOT = Path(__file__).resolve().parents[1]
_MAX_RESULT_BYTES = 64 * 1024 * 1024
_EPISODES_PER_WORKER = 25  # then a fresh process: whatever a long-lived one accumulates does not pile up
_lock = threading.Lock()
_busy: set[_Worker] = set()  # workers running an attempt now, for stop_all()
_idle: list[_Worker] = []  # workers waiting for their next attempt


class _WorkerGone(Exception):
    """The worker process ended (or stopped answering) before it gave a result."""


class _Worker:
    """One worker process: jobs go in on its stdin, one JSON line each; results come back on its stdout."""

    def __init__(self, otel_env: dict[str, str] | None = None) -> None:
        env = dict(os.environ)
        if otel_env is not None:  # the eval's OpenTelemetry settings, not this machine's (EpisodeJob.otel_env)
            env = {name: value for name, value in env.items() if not name.startswith("OTEL_")} | otel_env
        self.otel_key = _otel_key(otel_env)
        # The worker imports this very code, wherever this process found it (a Ray worker's cwd is elsewhere).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        self.stderr: IO[bytes] = tempfile.TemporaryFile(prefix="glassbox-worker-")  # a file: nobody has to drain it
        self.proc = _spawn(
            # -P: the folder the eval was started in is not on the worker's import path (a stray click.py there
            # would shadow the package of that name and fail every episode, while `glassbox run` works).
            [sys.executable, "-P", "-m", "evals.worker", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            start_new_session=True,
        )
        self._buffer = b""
        self.episodes = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job: EpisodeJob) -> AttemptResult:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(job.model_dump_json().encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _WorkerGone(f"the worker process could not take the job: {exc}") from None
        deadline = time.monotonic() + job.timeout_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk or len(self._buffer) > _MAX_RESULT_BYTES:
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
                raise _WorkerGone(f"the worker process exited with code {self.proc.returncode} without a result")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return AttemptResult.model_validate_json(line)
        except ValueError as exc:
            raise _WorkerGone(f"the worker process answered something that is not a result: {exc}") from None

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - 1500))
            return self.stderr.read().decode("utf-8", errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def stop(self) -> None:
        """Stop the worker's whole group: SIGTERM, then SIGKILL if it does not end."""
        self.end_group()
        self._release_files()

    def end_group(self) -> None:
        for sig, wait in ((signal.SIGTERM, _GRACE_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue

    def close(self) -> None:
        """Let an idle worker exit on its own (end of its input), or stop it."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=_GRACE_S)
        except (OSError, subprocess.TimeoutExpired):
            self.stop()
        self._release_files()

    def _release_files(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def run_attempt_in_child(job: EpisodeJob) -> AttemptResult:
    worker = _take_worker(job.otel_env if job.otel_parent else None)
    with _lock:
        _busy.add(worker)
    started = time.monotonic()
    keep = False
    try:
        worker.episodes += 1
        result = worker.run(job)
        keep = True
        return result
    except TimeoutError:
        worker.stop()
        return _harness(
            job,
            f"timeout: the episode ran past {job.timeout_s:g} s and its worker was stopped",
            started,
            timed_out=True,
        )
    except _WorkerGone as exc:
        worker.end_group()
        tail = worker.stderr_tail()  # what it said before it died (a traceback), read before its file is closed
        worker.stop()
        return _harness(job, f"{exc}" + (f": {tail}" if tail else ""), started)
    except BaseException:  # the eval itself is stopping (Ctrl-C): take the episode down with it
        worker.stop()
        raise
    finally:
        with _lock:
            _busy.discard(worker)
            if keep and worker.alive() and worker.episodes < _EPISODES_PER_WORKER:
                _idle.append(worker)
                keep = False
        if keep:
            worker.close()


def stop_all() -> None:
    """Ask every running episode of this process to stop (SIGTERM to its worker's group: its run closes as
    interrupted). For an eval that is itself stopping: the threads waiting on those workers return at once."""
    with _lock:
        busy = list(_busy)
    for worker in busy:
        try:
            os.killpg(worker.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def close_idle() -> None:
    """The eval is over: the idle workers exit."""
    with _lock:
        idle = list(_idle)
        _idle.clear()
    for worker in idle:
        worker.close()


_spawner_lock = threading.Lock()
_spawner: concurrent.futures.ThreadPoolExecutor | None = None


def _spawn(*args: Any, **kwargs: Any) -> "subprocess.Popen[bytes]":
    """subprocess.Popen(...) from one thread that lives as long as this process. PR_SET_PDEATHSIG (see
    _die_with_parent) fires when the *thread* that started the worker ends, not its process: started from a pool's
    thread, a worker was killed as that thread ended (at the end of every eval), before it could remove its shop's
    temporary folder or close its browser."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            # Its one thread is kept for the life of the process (the pool is never shut down): it only starts processes.
            _spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="glassbox-worker-spawner")
        spawner = _spawner
    started: subprocess.Popen[bytes] = spawner.submit(lambda: subprocess.Popen(*args, **kwargs)).result()
    return started


def _otel_key(otel_env: dict[str, str] | None) -> tuple[tuple[str, str], ...] | None:
    return None if otel_env is None else tuple(sorted(otel_env.items()))


def _take_worker(otel_env: dict[str, str] | None) -> _Worker:
    """An idle worker started with the same OpenTelemetry settings (None: this process's environment), or a new one."""
    key = _otel_key(otel_env)
    with _lock:
        for worker in [w for w in _idle if not w.alive()]:
            _idle.remove(worker)
            worker._release_files()
        for worker in reversed(_idle):
            if worker.otel_key == key:
                _idle.remove(worker)
                return worker
    return _Worker(otel_env)


def _harness(job: EpisodeJob, error: str, started: float, *, timed_out: bool = False) -> AttemptResult:
    written = (job.runs_dir / job.run_id / "run.json").is_file()
    return AttemptResult(
        kind="harness",
        run_id=job.run_id if written else None,
        error=error[:2000],
        timed_out=timed_out,
        seconds=time.monotonic() - started,
    )


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


def serve(parent_pid: int) -> int:
    """The worker's side: one job per input line, one result per output line, until the input ends."""
    _die_with_parent(parent_pid)
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the run prints goes to stderr; stdout carries only results
    import agent.loop  # noqa: F401  (warm: the first episode does not pay for the imports)
    from tools.browser import share_browser_between_runs

    share_browser_between_runs()  # episodes run one after another here: one Chromium, a fresh context each

    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        job = EpisodeJob.model_validate_json(line)
        result = run_attempt(job)
        results.write(result.model_dump_json().encode() + b"\n")
        results.flush()
    return 0


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
