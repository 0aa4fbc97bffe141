"""The run folder: ``RUNS_DIR/<run_id>/run.json``, ``steps.jsonl`` and ``steps/NNNN/`` files.

Writing::

    writer = RunWriter.create(Path("runs"), record)
    writer.write_step(step, screenshot_png=png)
    writer.finish(status=RunStatus.succeeded, end_reason="task done")

Reading::

    for run in RunStore(Path("runs")).runs():
        print(run.run_id, run.status, len(read_steps(run_dir)))

A run whose process died shows as ``interrupted``; a torn last line of ``steps.jsonl`` (or a line that is
not valid UTF-8 JSON) is skipped; a file a step names that is gone is a :class:`MissingRunFile` error.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from pydantic import ValidationError

from tracer.evidence import EvidenceWriter
from tracer.index import RunIndex
from tracer.schema import RunRecord, RunStatus, StepRecord
from tracer.secrets import Scrubber

RUN_FILE = "run.json"
STEPS_FILE = "steps.jsonl"
TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"\..+\.(\d+)(?:-[0-9a-f]+)?\.tmp")


class MissingRunFile(FileNotFoundError):
    """A file a run record names (a screenshot, an evidence crop) is not in the run folder (deleted, or the
    folder was copied without it). Its message names the run, the step and the file."""

    def __init__(self, run_dir: Path, relative: str, step: int | None = None) -> None:
        where = f"step {step} of run {run_dir.name}" if step is not None else f"run {run_dir.name}"
        super().__init__(f"{where}: {relative} is missing from {run_dir} (deleted?)")
        self.run_dir, self.relative, self.step = run_dir, relative, step


def new_run_id(task_name: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    slug = "".join(c if c.isalnum() else "-" for c in task_name.lower()).strip("-")[:40] or "run"
    return f"{now:%Y%m%d-%H%M%S}-{slug}-{secrets.token_hex(3)}"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix.

    The temporary file is removed when the write fails; one left by a killed process carries its pid in its
    name (``.NAME.PID-XXXX.tmp``) and is removed when the run is next indexed (:func:`stale_temp_files`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}{TEMP_SUFFIX}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def stale_temp_files(folder: Path) -> list[Path]:
    """Temporary files of :func:`atomic_write` in ``folder`` (and below, symlinks not followed) whose writing
    process is gone from this machine. Call it only for folders no other machine writes to (a finished run's)."""
    found = []
    for parent, _dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            match = _TEMP_NAME.fullmatch(name)
            if match is None:
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or 0 < pid < 2**31 and process_alive(pid, socket.gethostname()):
                continue  # a live writer's
            path = Path(parent) / name
            if path.is_file() and not path.is_symlink():
                found.append(path)
    return found


class RunWriter:
    """Appends the steps of one run to its folder and the runs index. One writer per run folder.

    Every record passes through ``scrubber`` here, the one place where run data is written (folder and
    index), so no caller can write a secret by forgetting to mask it. The masked copies are what
    :meth:`write_step` returns and :attr:`record` holds: hand those on (history, live views), never the input.
    """

    def __init__(self, run_dir: Path, record: RunRecord, *, index: RunIndex | None = None,
                 scrubber: Scrubber | None = None) -> None:
        self.run_dir = run_dir
        self.scrubber = scrubber or Scrubber([])
        self.record = self.scrubber.scrub(record)
        self.index = index
        self.evidence = EvidenceWriter(run_dir)
        self._steps = open(run_dir / STEPS_FILE, "a", encoding="utf-8")
        self._confidences: list[float] = []

    @classmethod
    def create(cls, runs_dir: Path, record: RunRecord, *, indexed: bool = True,
               scrubber: Scrubber | None = None) -> "RunWriter":
        run_dir = runs_dir / record.run_id
        (run_dir / "steps").mkdir(parents=True, exist_ok=False)
        writer = cls(run_dir, record, index=RunIndex(runs_dir) if indexed else None, scrubber=scrubber)
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

    def write_step(self, step: StepRecord) -> StepRecord:
        """Append one step (secrets masked) as a JSON line and flush it, so a reader sees whole steps as they
        end; returns the masked step as written."""
        step = self.scrubber.scrub(step)
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
        if step.policy in ("qwen3vl", "openai") and not step.cache_hit and step.call_index == 0:  # one call per output
            summary.model_calls += 1
        summary.think_ms_total = round(summary.think_ms_total + step.timings.think_ms, 2)
        summary.act_ms_total = round(summary.act_ms_total + step.timings.act_ms, 2)
        if self.index is not None:
            self.index.add_step(self.record.run_id, step)
        return step

    def save(self) -> None:
        self.record = self.scrubber.scrub(self.record)  # callers set checks, end reasons ... on the record
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
    except OSError as exc:  # a folder in its place, no permission
        raise ValueError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except ValidationError as exc:
        raise ValueError(f"{path} is not a valid run record: {exc.errors()[0]['msg']}") from None
    if record.status is RunStatus.running and not process_alive(record.pid, record.host):
        record.status = RunStatus.interrupted
        record.end_reason = record.end_reason or "the recording process ended before the run finished"
    return record


def read_steps(run_dir: Path) -> list[StepRecord]:
    """Every whole step of a run. A torn last line (a crash mid-write, perhaps inside a UTF-8 character) and
    a line that is not a valid step (bytes that are not UTF-8, not JSON) are skipped, never fatal."""
    steps: list[StepRecord] = []
    path = run_dir / STEPS_FILE
    if not path.is_file():
        return steps
    with open(path, "rb") as fh:  # bytes: a line that is not UTF-8 must not end the reading
        for line in fh:
            if not line.endswith(b"\n"):
                break  # torn last line
            try:
                steps.append(StepRecord.model_validate_json(line))
            except (ValidationError, ValueError):
                continue
    return steps


def step_file(run_dir: Path, relative: str, step: int | None = None) -> Path:
    """The path of a file a record names, relative to ``run_dir``: :class:`MissingRunFile` when it is gone,
    ValueError when it points outside the run folder (a crafted record)."""
    root = run_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"run {run_dir.name}: {relative!r} is outside the run folder")
    if not path.is_file():
        raise MissingRunFile(run_dir, relative, step)
    return path


def read_step_file(run_dir: Path, relative: str, step: int | None = None) -> bytes:
    """The bytes of a file a record names (a screenshot): :class:`MissingRunFile` with a clear message when gone."""
    path = step_file(run_dir, relative, step)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MissingRunFile(run_dir, relative, step) from None


def missing_screenshots(run_dir: Path, steps: list[StepRecord]) -> list[StepRecord]:
    """The steps whose screenshot is not in the run folder."""
    missing = []
    for step in steps:
        try:
            step_file(run_dir, step.screenshot, step.index)
        except (MissingRunFile, ValueError):
            missing.append(step)
    return missing


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
