"""File writes run in order on one background thread, so a step's fsyncs stay off the loop's critical path.

Each :meth:`WriteQueue.submit` returns a ticket; :meth:`WriteQueue.wait` blocks until that write and every one
submitted before it are done. The first error stops the writes after it (a step line is never written after
its screenshot failed) and is raised to the caller at its next submit or wait.

Usage::

    writes = WriteQueue("run-writer")
    ticket = writes.submit(lambda: atomic_write(path, data))
    writes.wait(ticket)  # on disk now
    writes.close()
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

MAX_PENDING = 64  # writes waiting at most; submit blocks beyond (a disk slower than the loop)


class WriteQueue:
    """One writer thread taking jobs in order; one thread submits."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.Queue[tuple[int, Callable[[], None]] | None] = queue.Queue(maxsize=MAX_PENDING)
        self._done = threading.Condition()
        self._submitted = 0
        self._finished = 0
        self._error: BaseException | None = None
        self.error_reported = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def error(self) -> BaseException | None:
        return self._error

    def submit(self, job: Callable[[], None]) -> int:
        """Queue ``job``; returns its ticket for :meth:`wait`. Raises an earlier write's error."""
        self._raise()
        if not self._thread.is_alive():
            raise RuntimeError("the writer thread is closed")
        self._submitted += 1
        self._jobs.put((self._submitted, job))
        return self._submitted

    def wait(self, ticket: int | None = None) -> None:
        """Block until write ``ticket`` (all writes when None) and those before it are done; raise their error."""
        target = self._submitted if ticket is None else ticket
        with self._done:
            self._done.wait_for(lambda: self._finished >= target or self._error is not None)
        self._raise()

    def close(self) -> None:
        """Finish the pending writes and stop the thread (their error stays in :attr:`error`)."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            self.error_reported = True
            raise self._error

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            ticket, job = item
            if self._error is None:  # after a failure the later writes are dropped, in order
                try:
                    job()
                except BaseException as exc:  # handed to the submitting thread
                    self._error = exc
            with self._done:
                self._finished = ticket
                self._done.notify_all()
