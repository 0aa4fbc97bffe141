"""Worker processes die with the eval's process, not with the thread that happened to start them: PR_SET_PDEATHSIG
follows the starting thread, and the local pool's threads end with every eval."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from evals.worker import _spawn

CHILD = """
import ctypes, signal, time
ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # as evals.worker._die_with_parent does
print("ready", flush=True)
time.sleep(30)
"""


def test_a_worker_outlives_the_thread_that_asked_for_it() -> None:
    started: list[subprocess.Popen[bytes]] = []

    def from_a_short_lived_thread() -> None:
        child = _spawn([sys.executable, "-c", CHILD], stdout=subprocess.PIPE)
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"  # its death signal is set
        started.append(child)

    thread = threading.Thread(target=from_a_short_lived_thread)
    thread.start()
    thread.join()
    [child] = started
    try:
        time.sleep(0.5)  # the signal would have come as the thread ended
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
