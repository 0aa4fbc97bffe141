"""Labels in the run folder: ``RUN/labels.jsonl``, append-only, the source of truth for a run's labels.

Each line is one event: a label added, or a label undone (an undo is appended, never an edit). The runs
index mirrors these files (:meth:`tracer.index.RunIndex.mirror_labels`) and can always be rebuilt from them.

    append_label_event(run_dir, LabelAdded(id=new_label_id(), step=4, verdict="wrong", correction={...}))
    for label in current_labels(run_dir): ...

Label ids are unique across a runs directory without asking anyone: milliseconds since 2025 in the high
bits, random low bits, increasing within a process. They stay below 2**53, so JavaScript reads them exactly,
and they sort in the order labels were given.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tracer.run_files import valid_lines

LABELS_FILE = "labels.jsonl"
MAX_LABEL_LINE = 2**20  # a label event is a few hundred bytes; a longer line (a crafted file) is passed over
MAX_LABELLED_STEP = 1_000_000  # no run has more steps (the viewer's bound on a step number too)
_EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
_RANDOM_BITS = 12
_id_lock = threading.Lock()
_last_id = 0


class LabelAdded(BaseModel):
    """A person's (or a script's) verdict on one step. ``correction`` is what should have been done."""

    model_config = ConfigDict(extra="ignore")

    op: Literal["add"] = "add"
    id: int = Field(ge=1, le=2**53 - 1)
    step: int = Field(ge=0, le=MAX_LABELLED_STEP)  # a hand-edited line past it is passed over (SQLite holds 64 bits)
    verdict: Literal["correct", "wrong"]
    correction: dict[str, Any] | None = None
    note: str | None = None
    created_at: datetime


class LabelUndone(BaseModel):
    model_config = ConfigDict(extra="ignore")

    op: Literal["undo"] = "undo"
    id: int = Field(ge=1, le=2**53 - 1)
    at: datetime


LabelEvent = Annotated[LabelAdded | LabelUndone, Field(discriminator="op")]
_EVENT: TypeAdapter[LabelAdded | LabelUndone] = TypeAdapter(LabelEvent)


class CurrentLabel(BaseModel):
    """A label as it stands after replaying the file's events."""

    label: LabelAdded
    deleted: bool = False


def new_label_id() -> int:
    global _last_id
    candidate = ((int(time.time() * 1000) - _EPOCH_MS) << _RANDOM_BITS) | secrets.randbelow(1 << _RANDOM_BITS)
    with _id_lock:
        _last_id = max(candidate, _last_id + 1)
        return _last_id


def read_label_events(run_dir: Path) -> tuple[list[LabelAdded | LabelUndone], int]:
    """The whole, valid events of ``run_dir``'s labels file, and the file's size in bytes when read.

    A torn last line (a crash mid-append) or a line that is not a valid event is skipped, never fatal."""
    path = run_dir / LABELS_FILE
    events: list[LabelAdded | LabelUndone] = []
    size = 0
    try:
        with open(path, "rb") as fh:
            # a torn last line is left out, a huge or invalid one passed over
            events.extend(valid_lines(fh, _EVENT.validate_json, MAX_LABEL_LINE))
            size = fh.seek(0, os.SEEK_END)
    except OSError:  # not there (no labels yet), or unreadable
        pass
    return events, size


def current_labels(events: list[LabelAdded | LabelUndone]) -> list[CurrentLabel]:
    """Labels in the order they were added, each marked deleted when an undo followed."""
    labels: dict[int, CurrentLabel] = {}
    for event in events:
        if isinstance(event, LabelAdded):
            labels.setdefault(event.id, CurrentLabel(label=event))  # a repeated add (a re-run migration) is one label
        elif event.id in labels:
            labels[event.id].deleted = True
    return list(labels.values())


def append_label_event(run_dir: Path, event: LabelAdded | LabelUndone) -> None:
    """Append one event as a single write and make it durable before returning."""
    line = event.model_dump_json().encode() + b"\n"
    # Not through a link: a run folder is untrusted, and its labels file pointing elsewhere would have us append
    # to any file this user can write (OSError ELOOP: the caller says it cannot write the labels).
    fd = os.open(run_dir / LABELS_FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        size = os.fstat(fd).st_size
        # A crash mid-append leaves a line without its newline: start on a fresh line so this one stays whole.
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
