"""The files of one run folder: their names, writing them atomically, and reading them back.

Everything here works on one folder and needs nothing else in :mod:`tracer` but the record models, so the
writer (:mod:`tracer.store`), the index (:mod:`tracer.index`) and the evidence thread (:mod:`tracer.evidence`)
all build on it without importing each other.

A run whose process died reads as ``interrupted``; a torn last line of ``steps.jsonl`` (or a line that is
not valid UTF-8 JSON) is skipped; a file a step names that is gone is a :class:`MissingRunFile` error.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from pydantic import BaseModel, ValidationError

from tools.errors import UsageError
from tracer.schema import RunRecord, RunStatus, StepRecord

RUN_FILE = "run.json"
STEPS_FILE = "steps.jsonl"
# A step's line holds its reasoning, prompt text and evidence, never images: far below this. A longer one (a
# crafted or damaged run folder) is skipped without being held in memory.
MAX_STEP_LINE = 32 * 2**20
_CHUNK = 2**20
MAX_RUN_FILE = 64 * 2**20  # run.json: a task, its checks and a summary (KBs); far more is a crafted file
T = TypeVar("T")
TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"\..+\.(\d+)(?:-[0-9a-f]+)?\.tmp")


class MissingRunFile(UsageError, FileNotFoundError):
    """A file a run record names (a screenshot, an evidence crop) is not in the run folder (deleted, or the
    folder was copied without it). Its message names the run, the step and the file."""

    def __init__(self, run_dir: Path, relative: str, step: int | None = None) -> None:
        where = f"step {step} of run {run_dir.name}" if step is not None else f"run {run_dir.name}"
        super().__init__(f"{where}: {relative} is missing from {run_dir} (deleted?)")
        self.run_dir, self.relative, self.step = run_dir, relative, step


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


def _first_problem(exc: ValidationError) -> str:
    """The first problem, naming its field: ``policy: Input should be a valid string``."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])[:120]  # a crafted key could be long
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def read_run(run_dir: Path) -> RunRecord:
    """Read ``run.json``; a run marked running whose process is gone reads as interrupted."""
    path = run_dir / RUN_FILE
    try:
        if path.stat().st_size > MAX_RUN_FILE:  # a crafted folder's: not read into memory
            raise ValueError(f"{path} is not a valid run record: larger than {MAX_RUN_FILE // 2**20} MB")
        record = RunRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {RUN_FILE})") from None
    except OSError as exc:  # a folder in its place, no permission
        raise ValueError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except ValidationError as exc:
        raise ValueError(f"{path} is not a valid run record: {_first_problem(exc)}") from None
    if record.status is RunStatus.running and not process_alive(record.pid, record.host):
        record.status = RunStatus.interrupted
        record.end_reason = record.end_reason or "the recording process ended before the run finished"
    return record


class UnreadableStep(BaseModel):
    """A whole line of ``steps.jsonl`` that is not a valid step, kept in its place so that the steps after it keep
    their recorded indices (a viewer labelling by position would otherwise label the wrong step).

    ``index`` is the step the line stands for: one after the readable step before it (the line number when none)."""

    index: int
    line: int  # 0-based line number in steps.jsonl
    unreadable: str  # why, e.g. "not JSON" or the first validation error


def parse_step_line(line: bytes | None, line_number: int, previous_index: int | None) -> StepRecord | UnreadableStep:
    """One whole line of ``steps.jsonl`` (without or with its newline; None: one too long to read, see
    :func:`whole_lines`) as a step, or as what stands in its place."""
    if line is None:
        reason = f"longer than {MAX_STEP_LINE:,} bytes"
        index = line_number if previous_index is None else previous_index + 1
        return UnreadableStep(index=index, line=line_number, unreadable=reason)
    try:
        return StepRecord.model_validate_json(line)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        reason = "not JSON" if error["type"] == "json_invalid" else f"not a valid step ({where}: {error['msg']})"
    except ValueError:  # bytes that are not UTF-8
        reason = "not UTF-8 text"
    index = line_number if previous_index is None else previous_index + 1
    return UnreadableStep(index=index, line=line_number, unreadable=reason[:300])


def whole_lines(fh: BinaryIO, limit: int = MAX_STEP_LINE) -> Iterator[bytes | None]:
    """The whole lines from ``fh``'s position on (newline included), None in place of one longer than ``limit``
    bytes; a torn last line (no newline yet) is left out. After each one, ``fh.tell()`` is where the next begins.
    Memory stays within ``limit`` however the file is made."""
    while True:
        line = fh.readline(limit + 1)
        if not line.endswith(b"\n"):
            if len(line) <= limit:
                return  # the end, or a torn last line
            while not line.endswith(b"\n"):  # too long: pass over the rest of it
                line = fh.readline(_CHUNK)
                if not line:
                    return
            yield None
            continue
        yield line


def read_step_entries(run_dir: Path) -> list[StepRecord | UnreadableStep]:
    """Every whole line of ``steps.jsonl`` in order: a step, or an :class:`UnreadableStep` in its place.
    A torn last line (a crash mid-write, or a line still being written) is left out."""
    entries: list[StepRecord | UnreadableStep] = []
    path = run_dir / STEPS_FILE
    if not path.is_file():
        return entries
    with open(path, "rb") as fh:  # bytes: a line that is not UTF-8 must not end the reading
        for number, line in enumerate(whole_lines(fh)):
            entries.append(parse_step_line(line, number, entries[-1].index if entries else None))
    return entries


class DamagedSteps(UsageError, ValueError):
    """``steps.jsonl`` has whole lines that are not valid steps, where the reader needs every step (a replay, an
    exported script: one left out would run the others out of order, silently)."""

    def __init__(self, run_dir: Path, damaged: list[UnreadableStep]) -> None:
        self.damaged = damaged
        first = damaged[0]
        more = f" and {len(damaged) - 1} more" if len(damaged) > 1 else ""
        super().__init__(
            f"run {run_dir.name}: line {first.line + 1} of {STEPS_FILE} (where step {first.index} would be) cannot be "
            f"read: {first.unreadable}{more}; this needs every recorded step (the viewer and `glassbox runs show` "
            "show the damaged lines in place)"
        )


def split_entries(entries: list[StepRecord | UnreadableStep]) -> tuple[list[StepRecord], list[UnreadableStep]]:
    """:func:`read_step_entries`' list as (the steps, the damaged lines), each in file order."""
    return [e for e in entries if isinstance(e, StepRecord)], [e for e in entries if isinstance(e, UnreadableStep)]


def read_steps(run_dir: Path, *, whole: bool = False) -> list[StepRecord]:
    """Every whole step of a run. A torn last line (a crash mid-write, perhaps inside a UTF-8 character) is left
    out. A line that is not a valid step (bytes that are not UTF-8, not JSON) is skipped, or, with ``whole``,
    raises :class:`DamagedSteps`."""
    steps, damaged = split_entries(read_step_entries(run_dir))
    if whole and damaged:
        raise DamagedSteps(run_dir, damaged)
    return steps


def valid_lines(fh: BinaryIO, parse: Callable[[bytes], T], limit: int = MAX_STEP_LINE) -> Iterator[T]:
    """What ``parse`` makes of each whole line from ``fh`` (:func:`whole_lines`); a line too long, not UTF-8 or
    that ``parse`` refuses (a pydantic ValidationError is a ValueError) is passed over, never fatal."""
    for line in whole_lines(fh, limit):
        if line is None:
            continue
        try:
            yield parse(line)
        except ValueError:
            continue


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
