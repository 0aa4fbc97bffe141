"""The run's explain folder (``RUN/explain``): what ``glassbox explain`` wrote for a step, as a typed JSON record
beside its pictures, and the listing of one step's results for the viewer.

    write_explain_record(run_dir / "explain", ExplainRecord(step=4, method="attention", ...))
    for result in explain_results(run_dir, 4): ...

Pictures written before records existed (or whose record is missing) are listed from their names, without figures.
Nothing outside the run's own explain folder is read: a folder or file that resolves elsewhere (a link) is skipped.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from tracer.run_files import atomic_write

EXPLAIN_DIR = "explain"
EXPLAIN_SCHEMA = 1
MAX_RECORD_BYTES = 1_000_000  # a record is a few KB; a bigger file is not one of ours
_PICTURE = re.compile(r"step(\d{4,})_(attention|gradcam)_([\w-]+)\.png")


class ExplainMap(BaseModel):
    """One map explain drew: its key (``target/group``), its picture (a file name in the explain folder), figures."""

    key: str
    target: str
    group: str
    picture: str
    peak_px: tuple[int, int]
    concentration: float
    entropy: float
    peak_to_click_px: float | None = None
    mass_in_evidence: float | None = None


class ExplainRecord(BaseModel):
    """One ``glassbox explain`` of a step."""

    schema_version: int = EXPLAIN_SCHEMA
    step: int
    method: str  # attention | gradcam
    model: str | None = None
    words: list[str] = Field(default_factory=list)  # the --text words; empty: the action, reasoning and output
    layers: str = "all"
    created_at: datetime
    targets: dict[str, int] = Field(default_factory=dict)  # target -> number of tokens
    maps: list[ExplainMap] = Field(default_factory=list)


class ExplainListing(BaseModel):
    """One explain result of a step as the viewer lists it: a record, or pictures found without one."""

    record: str | None  # the record's file name; None for pictures without a record
    method: str
    model: str | None = None
    words: list[str] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list)  # what was explained (action, reasoning, output, or the words)
    created_at: datetime | None = None
    maps: list[ExplainMap | str]  # a map with figures, or a bare picture's file name
    problem: str | None = None  # why a record could not be read


def record_name(step: int, method: str, words: list[str] | None) -> str:
    """``step0004_attention.json``, or with the words: ``step0004_attention_Publish.json``."""
    slug = "_" + _safe("-".join(words))[:80] if words else ""
    return f"step{step:04d}_{method}{slug}.json"


def picture_name(step: int, method: str, key: str) -> str:
    return f"step{step:04d}_{method}_{_safe(key)}.png"


def write_explain_record(folder: Path, record: ExplainRecord) -> Path:
    path = folder / record_name(record.step, record.method, record.words)
    atomic_write(path, record.model_dump_json(indent=1).encode())
    return path


def explain_folder(run_dir: Path) -> Path | None:
    """The run's explain folder, resolved, or None when there is none or it leads out of the run folder."""
    root = run_dir.resolve()
    try:
        folder = (root / EXPLAIN_DIR).resolve()
    except (OSError, RuntimeError):
        return None
    return folder if folder.is_relative_to(root) and folder.is_dir() else None


def explain_file(run_dir: Path, name: str) -> Path | None:
    """A regular file directly inside the run's explain folder (links resolved, then checked), else None."""
    folder = explain_folder(run_dir)
    if folder is None or not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        return None
    try:
        path = (folder / name).resolve()
        return path if path.parent == folder and path.is_file() else None
    except (OSError, ValueError, RuntimeError):
        return None


def explain_results(run_dir: Path, step: int) -> list[ExplainListing]:
    """The explain results recorded for ``step``: records first (newest first), then pictures without a record."""
    folder = explain_folder(run_dir)
    if folder is None:
        return []
    prefix = f"step{step:04d}_"
    listings: list[ExplainListing] = []
    claimed: set[str] = set()
    for path in sorted(folder.glob(prefix + "*.json")):
        if explain_file(run_dir, path.name) is None:
            continue
        try:
            if path.stat().st_size > MAX_RECORD_BYTES:
                raise ValueError(f"over {MAX_RECORD_BYTES} bytes")
            record = ExplainRecord.model_validate_json(path.read_bytes())
            if record.step != step:
                raise ValueError(f"it is for step {record.step}")
        except (OSError, ValueError, ValidationError) as exc:
            problem = str(exc).splitlines()[0][:200]
            listings.append(ExplainListing(record=path.name, method="?", maps=[], problem=f"unreadable record: {problem}"))
            continue
        maps = [m for m in record.maps if explain_file(run_dir, m.picture) is not None]
        claimed.update(m.picture for m in maps)
        listings.append(
            ExplainListing(
                record=path.name,
                method=record.method,
                model=record.model,
                words=record.words,
                targets=list(record.targets),
                created_at=record.created_at,
                maps=list(maps),
            )
        )
    listings.sort(key=lambda item: (item.created_at is None, -(item.created_at.timestamp() if item.created_at else 0)))
    loose: dict[str, list[ExplainMap | str]] = {}
    for path in sorted(folder.glob(prefix + "*.png")):
        match = _PICTURE.fullmatch(path.name)
        if match is None or int(match.group(1)) != step or path.name in claimed:
            continue
        if explain_file(run_dir, path.name) is not None:
            loose.setdefault(match.group(2), []).append(path.name)
    for method, names in loose.items():
        listings.append(ExplainListing(record=None, method=method, maps=names))
    return listings


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


__all__ = [
    "EXPLAIN_DIR",
    "ExplainListing",
    "ExplainMap",
    "ExplainRecord",
    "explain_file",
    "explain_folder",
    "explain_results",
    "picture_name",
    "record_name",
    "write_explain_record",
]
