"""Follow a run as it is recorded, from another process: new steps within a poll interval.

    follower = RunFollower(run_dir)
    for event in follower.events(interval=0.1):      # blocks; ends when the run ends
        print(event.kind, event.step.index if event.step else event.run.status)

The reading side for live viewers: it tails ``steps.jsonl`` by byte offset (a torn line is left for
the next poll) and rereads ``run.json`` only when it changed. A whole line that is not a step comes out of
:meth:`RunFollower.poll_entries` as an :class:`~tracer.run_files.UnreadableStep` in its place.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator, Literal

from pydantic import BaseModel

from tracer.run_files import RUN_FILE, STEPS_FILE, UnreadableStep, parse_step_line, read_run, whole_lines
from tracer.schema import RunRecord, RunStatus, StepRecord


class RunEvent(BaseModel):
    kind: Literal["step", "run"]
    step: StepRecord | None = None
    run: RunRecord | None = None


class RunFollower:
    """Incremental reader of one run folder."""

    def __init__(self, run_dir: Path, *, from_step: int = 0) -> None:
        self.run_dir = run_dir
        self.from_step = from_step
        self._offset = 0
        self._line = 0  # line number of the next line of steps.jsonl
        self._last_index: int | None = None  # index of the last line read (a step, or one standing for it)
        self._run_mtime: int | None = None
        self.run: RunRecord | None = None

    def poll_steps(self) -> list[StepRecord]:
        """Steps appended since the last poll (whole lines only; a line that is not a step is skipped)."""
        return [e for e in self.poll_entries() if isinstance(e, StepRecord)]

    def poll_entries(self) -> list[StepRecord | UnreadableStep]:
        """Whole lines appended since the last poll, in order: each a step, or an UnreadableStep in its place."""
        path = self.run_dir / STEPS_FILE
        entries: list[StepRecord | UnreadableStep] = []
        try:
            with open(path, "rb") as fh:
                fh.seek(self._offset)
                for line in whole_lines(fh):  # whole lines only: a line being written is read next time
                    self._offset = fh.tell()
                    entry = parse_step_line(line, self._line, self._last_index)
                    self._line += 1
                    self._last_index = entry.index
                    if entry.index >= self.from_step:
                        entries.append(entry)
        except OSError:  # not there yet, or gone
            pass
        return entries

    def poll_run(self) -> RunRecord | None:
        """The run record if ``run.json`` changed since the last poll, else None."""
        try:
            mtime = os.stat(self.run_dir / RUN_FILE).st_mtime_ns
        except OSError:
            return None
        if mtime == self._run_mtime and self.run is not None and self.run.status is not RunStatus.running:
            return None
        try:
            run = read_run(self.run_dir)
        except (ValueError, OSError):  # gone or unreadable now: the last good record stands
            return None
        changed = self.run is None or mtime != self._run_mtime or run.status != self.run.status
        self._run_mtime, self.run = mtime, run
        return run if changed else None

    def events(self, *, interval: float = 0.1, timeout: float | None = None) -> Iterator[RunEvent]:
        """Yield step and run events until the run is no longer running (or ``timeout`` passes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for step in self.poll_steps():
                yield RunEvent(kind="step", step=step)
            run = self.poll_run()
            if run is not None:
                yield RunEvent(kind="run", run=run)
            if self.run is not None and self.run.status is not RunStatus.running:
                for step in self.poll_steps():  # steps flushed just before the end
                    yield RunEvent(kind="step", step=step)
                return
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(interval)
