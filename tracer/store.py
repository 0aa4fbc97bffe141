"""The run folder: ``RUNS_DIR/<run_id>/run.json``, ``steps.jsonl`` and ``steps/NNNN/`` files.

Writing::

    writer = RunWriter.create(Path("runs"), record)
    writer.write_step(step, screenshot_png=png)
    writer.finish(status=RunStatus.succeeded, end_reason="task done")

Reading::

    for run in RunStore(Path("runs")).runs():
        print(run.run_id, run.status, len(read_steps(run_dir)))

A run whose process died shows as ``interrupted``; a torn last line of ``steps.jsonl`` is skipped.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from pydantic import ValidationError

from tracer.evidence import EvidenceWriter
from tracer.index import RunIndex
from tracer.schema import RunRecord, RunStatus, StepRecord

RUN_FILE = "run.json"
STEPS_FILE = "steps.jsonl"


def new_run_id(task_name: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    slug = "".join(c if c.isalnum() else "-" for c in task_name.lower()).strip("-")[:40] or "run"
    return f"{now:%Y%m%d-%H%M%S}-{slug}-{secrets.token_hex(3)}"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class RunWriter:
    """Appends the steps of one run to its folder and the runs index. One writer per run folder."""

    def __init__(self, run_dir: Path, record: RunRecord, *, index: RunIndex | None = None) -> None:
        self.run_dir = run_dir
        self.record = record
        self.index = index
        self.evidence = EvidenceWriter(run_dir)
        self._steps = open(run_dir / STEPS_FILE, "a", encoding="utf-8")
        self._confidences: list[float] = []

    @classmethod
    def create(cls, runs_dir: Path, record: RunRecord, *, indexed: bool = True) -> "RunWriter":
        run_dir = runs_dir / record.run_id
        (run_dir / "steps").mkdir(parents=True, exist_ok=False)
        writer = cls(run_dir, record, index=RunIndex(runs_dir) if indexed else None)
        writer.save()
        return writer

    def step_dir(self, index: int) -> Path:
        path = self.run_dir / "steps" / f"{index:04d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_screenshot(self, index: int, png: bytes) -> str:
        """Store the step's screenshot; returns its path relative to the run folder."""
        path = self.step_dir(index) / "screenshot.png"
        atomic_write(path, png)
        return path.relative_to(self.run_dir).as_posix()

    def write_step(self, step: StepRecord) -> None:
        """Append one step as a JSON line and flush it, so a reader sees whole steps as they end."""
        self._steps.write(step.model_dump_json() + "\n")
        self._steps.flush()
        self.record.steps = step.index + 1
        summary = self.record.summary
        summary.steps = self.record.steps
        if step.outcome == "error":
            self.record.errors += 1
            summary.errors += 1
        if step.error_kind == "parse":
            summary.parse_errors += 1
        if step.action:
            name = str(step.action.get("action"))
            summary.actions[name] = summary.actions.get(name, 0) + 1
        if step.confidence is not None:
            self._confidences.append(step.confidence)
            summary.mean_confidence = round(sum(self._confidences) / len(self._confidences), 4)
        if step.policy in ("qwen3vl", "openai") and not step.cache_hit:
            summary.model_calls += 1
        summary.think_ms_total = round(summary.think_ms_total + step.timings.think_ms, 2)
        summary.act_ms_total = round(summary.act_ms_total + step.timings.act_ms, 2)
        if self.index is not None:
            self.index.add_step(self.record.run_id, step)

    def save(self) -> None:
        atomic_write(self.run_dir / RUN_FILE, self.record.model_dump_json(indent=2).encode())
        if self.index is not None:
            self.index.upsert_run(self.record)

    def finish(self, *, status: RunStatus, end_reason: str) -> RunRecord:
        now = datetime.now(timezone.utc)
        self.record.status = status
        self.record.end_reason = end_reason
        self.record.ended_at = now
        self.record.duration_s = round((now - self.record.started_at).total_seconds(), 3)
        self.evidence.close()
        self.save()
        self._steps.close()
        if self.index is not None:
            self.index.close()
        return self.record


def read_run(run_dir: Path) -> RunRecord:
    """Read ``run.json``; a run marked running whose process is gone reads as interrupted."""
    path = run_dir / RUN_FILE
    try:
        record = RunRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {RUN_FILE})") from None
    except ValidationError as exc:
        raise ValueError(f"{path} is not a valid run record: {exc.errors()[0]['msg']}") from None
    if record.status is RunStatus.running and not process_alive(record.pid, record.host):
        record.status = RunStatus.interrupted
        record.end_reason = record.end_reason or "the recording process ended before the run finished"
    return record


def read_steps(run_dir: Path) -> list[StepRecord]:
    """Every whole step of a run; a torn or unreadable line (a crash mid-write) is skipped."""
    steps: list[StepRecord] = []
    path = run_dir / STEPS_FILE
    if not path.exists():
        return steps
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break  # torn last line
            try:
                steps.append(StepRecord.model_validate_json(line))
            except ValidationError:
                continue
    return steps


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
                except ValueError:
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


def process_alive(pid: int | None, host: str | None) -> bool:
    """Whether the process that wrote a run is still running (PIDs can be reused: a best effort)."""
    if pid is None:
        return False
    if host != socket.gethostname():
        return True  # another machine's run: we cannot tell, so trust its record
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
