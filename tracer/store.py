"""The run folder: ``RUNS_DIR/<run_id>/run.json``, ``steps.jsonl`` and ``steps/NNNN/`` files.

Writing::

    writer = RunWriter.create(Path("runs"), record)
    writer.write_screenshot(0, png)
    writer.write_step(step)
    writer.finish(status=RunStatus.succeeded, end_reason="task done")

The files are written in order on a writer thread (:mod:`tracer.write_queue`). Every call waits for its
write unless told ``wait=False`` (the loop: a screenshot written while the step thinks and acts, run.json
while the next step perceives); :meth:`RunWriter.write_step` always waits, so a step that was returned (and
then announced) is on disk with everything written before it, and a killed run keeps it.

Reading::

    for run in RunStore(Path("runs")).runs():
        print(run.run_id, run.status, len(read_steps(run_dir)))

The files themselves (names, atomic writes, reading them back) are :mod:`tracer.run_files`; its names are
re-exported here, where callers have always found them.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from tracer.evidence import EvidenceWriter
from tracer.index import RunIndex
from tracer.run_files import (
    RUN_FILE,
    STEPS_FILE,
    TEMP_SUFFIX,
    DamagedSteps,
    MissingRunFile,
    UnreadableStep,
    atomic_write,
    missing_screenshots,
    process_alive,
    read_run,
    read_step_entries,
    read_step_file,
    read_steps,
    split_entries,
    stale_temp_files,
    step_file,
)
from tracer.schema import RunRecord, RunStatus, StepErrorKind, StepRecord
from tracer.secrets import Scrubber
from tracer.write_queue import WriteQueue

__all__ = [
    "RUN_FILE",
    "STEPS_FILE",
    "TEMP_SUFFIX",
    "DamagedSteps",
    "MissingRunFile",
    "RunStore",
    "RunWriter",
    "atomic_write",
    "missing_screenshots",
    "new_run_id",
    "process_alive",
    "read_run",
    "read_step_entries",
    "read_step_file",
    "read_steps",
    "split_entries",
    "UnreadableStep",
    "stale_temp_files",
    "step_file",
]


def new_run_id(task_name: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    slug = "".join(c if c.isalnum() else "-" for c in task_name.lower()).strip("-")[:40] or "run"
    return f"{now:%Y%m%d-%H%M%S}-{slug}-{secrets.token_hex(3)}"


class RunWriter:
    """Appends the steps of one run to its folder and the runs index. One writer per run folder.

    Every record passes through ``scrubber`` here, the one place where run data is written (folder and
    index), so no caller can write a secret by forgetting to mask it. The masked copies are what
    :meth:`write_step` returns and :attr:`record` holds: hand those on (history, live views), never the input.
    """

    def __init__(
        self, run_dir: Path, record: RunRecord, *, index: RunIndex | None = None, scrubber: Scrubber | None = None
    ) -> None:
        self.run_dir = run_dir
        self.scrubber = scrubber or Scrubber([])
        self.record = self.scrubber.scrub(record)
        self.index = index
        self.evidence = EvidenceWriter(run_dir)
        self._steps = open(run_dir / STEPS_FILE, "a", encoding="utf-8")
        self._confidences: list[float] = []
        self._writes = WriteQueue("run-writer")

    @classmethod
    def create(cls, runs_dir: Path, record: RunRecord, *, indexed: bool = True, scrubber: Scrubber | None = None) -> "RunWriter":
        run_dir = runs_dir / record.run_id
        (run_dir / "steps").mkdir(parents=True, exist_ok=False)
        writer = cls(run_dir, record, index=RunIndex(runs_dir) if indexed else None, scrubber=scrubber)
        writer.save()
        return writer

    def step_dir(self, index: int) -> Path:
        path = self.run_dir / "steps" / f"{index:04d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_screenshot(self, index: int, png: bytes, *, wait: bool = True) -> str:
        """Store the step's screenshot (with ``wait=False`` in the background; the step's line waits for it);
        returns its path relative to the run folder."""
        path = self.step_dir(index) / "screenshot.png"
        ticket = self._writes.submit(lambda: atomic_write(path, png))
        if wait:
            self._writes.wait(ticket)
        return path.relative_to(self.run_dir).as_posix()

    def write_step(self, step: StepRecord) -> StepRecord:
        """Append one step (secrets masked) as a JSON line and flush it, so a reader sees whole steps as they
        end, and only once the step's files exist; returns the masked step as written, once it and every write
        before it are on disk."""
        step = self.scrubber.scrub(step)
        line = step.model_dump_json() + "\n"
        crops = self.evidence.submitted  # this step's crop and every one before it: on disk before the line
        ticket = self._writes.submit(lambda: self._append_line(line, crops))
        if self.index is not None:
            index, run_id = self.index, self.record.run_id
            ticket = self._writes.submit(lambda: index.add_step(run_id, step))
        self._writes.wait(ticket)
        self.record.steps = step.index + 1
        summary = self.record.summary
        summary.steps = self.record.steps
        if step.outcome == "error":
            self.record.errors += 1
            summary.errors += 1
        if step.error_kind is StepErrorKind.parse:
            summary.parse_errors += 1
        if step.action is not None:
            name = step.action.action
            summary.actions[name] = summary.actions.get(name, 0) + 1
        if step.confidence is not None:
            self._confidences.append(step.confidence)
            summary.mean_confidence = round(sum(self._confidences) / len(self._confidences), 4)
        if step.policy in ("qwen3vl", "openai") and not step.cache_hit and step.call_index == 0:  # one call per output
            summary.model_calls += 1
        summary.think_ms_total = round(summary.think_ms_total + step.timings.think_ms, 2)
        summary.act_ms_total = round(summary.act_ms_total + step.timings.act_ms, 2)
        return step

    def _append_line(self, line: str, crops: int = 0) -> None:
        """Append a step's line once its files are on disk: a reader that sees the line finds the step's screenshot
        (written earlier in this queue) and evidence crop (written by the evidence thread)."""
        self.evidence.wait(crops)
        self._steps.write(line)
        self._steps.flush()

    def save(self, *, wait: bool = True) -> None:
        """Write run.json and the index's row of the run (with ``wait=False`` in the background)."""
        self.record = self.scrubber.scrub(self.record)  # callers set checks, end reasons ... on the record
        data = self.record.model_dump_json(indent=2).encode()
        snapshot = self.record.model_copy(deep=True)  # the caller goes on changing self.record
        ticket = self._writes.submit(lambda: self._save_files(data, snapshot))
        if wait:
            self._writes.wait(ticket)

    def _save_files(self, data: bytes, record: RunRecord) -> None:
        atomic_write(self.run_dir / RUN_FILE, data)
        if self.index is not None:
            self.index.upsert_run(record)

    def flush(self) -> None:
        """Wait for every pending write; raises the first one's error."""
        self._writes.wait()

    def finish(self, *, status: RunStatus, end_reason: str) -> RunRecord:
        now = datetime.now(timezone.utc)
        self.record.status = status
        self.record.end_reason = end_reason
        self.record.ended_at = now
        self.record.duration_s = round((now - self.record.started_at).total_seconds(), 3)
        self.evidence.close()
        self._writes.close()  # the pending writes first; then the last run.json here, even after a failed write
        try:
            self.record = self.scrubber.scrub(self.record)
            self._save_files(self.record.model_dump_json(indent=2).encode(), self.record)
        finally:
            self._steps.close()
            if self.index is not None:
                self.index.close()
        if self._writes.error is not None and not self._writes.error_reported:
            raise self._writes.error  # a background write failed and no caller heard of it yet
        return self.record


class RunStore:
    """A runs directory: one folder per run."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir

    def runs(self) -> Iterator[RunRecord]:
        if not self.runs_dir.is_dir():
            return
        for run_dir in sorted(self.runs_dir.iterdir(), reverse=True):
            if (run_dir / RUN_FILE).is_file():
                try:
                    yield read_run(run_dir)
                except (ValueError, OSError):
                    continue

    def run_dir(self, run_id: str) -> Path:
        """The folder of ``run_id`` (a unique prefix is enough), or FileNotFoundError."""
        if "/" in run_id or run_id in ("", ".", ".."):
            raise FileNotFoundError(f"{run_id!r} is not a run id")
        path = self.runs_dir / run_id
        if (path / RUN_FILE).is_file():
            return path
        matches = [p for p in self.runs_dir.glob(f"{run_id}*") if (p / RUN_FILE).is_file()] if self.runs_dir.is_dir() else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise FileNotFoundError(f"{run_id!r} matches {len(matches)} runs in {self.runs_dir}; give more of the id")
        raise FileNotFoundError(f"no run {run_id!r} in {self.runs_dir}")

    def remove(self, run_id: str) -> Path:
        """Delete a run's folder and its index rows."""
        import shutil

        path = self.run_dir(run_id)
        shutil.rmtree(path)
        index = RunIndex(self.runs_dir)
        try:
            index.remove_run(path.name)
        finally:
            index.close()
        return path
