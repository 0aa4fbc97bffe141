"""Labels a person puts on steps: correct, or wrong with where it should have clicked.

Stored in the run folder (``RUN/labels.jsonl``, append-only: an undo is one more line), the source of truth,
and mirrored into the runs index so the viewer and the export list them fast. Deleting or rebuilding the
index keeps them; labels that an older Glassbox kept only in the index move to the folders on first open.

    labels = Labels(Path("runs"))
    labels.add(run_id, 4, LabelIn(verdict="wrong", correction=Correction(action="left_click", coordinate=(412, 300))))
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tools.actions import COMPUTER_USE_ACTIONS, POINT_ACTIONS
from tools.errors import UsageError
from tracer.index import RunIndex
from tracer.labels import LabelAdded, LabelUndone, append_label_event, new_label_id
from tracer.store import RunStore, read_steps


class Correction(BaseModel):
    """What the agent should have done. ``coordinate`` is on the 0..1000 grid over the screenshot."""

    model_config = ConfigDict(extra="forbid")

    action: str = "left_click"
    coordinate: tuple[float, float] | None = None
    text: str | None = Field(default=None, max_length=2000)
    keys: list[str] | None = None

    @model_validator(mode="after")
    def _valid(self) -> "Correction":
        allowed = (*COMPUTER_USE_ACTIONS, "upload_file", "goto_url")
        if self.action not in allowed:
            raise ValueError(f"unknown action {self.action!r}")
        if self.coordinate is not None and not all(0 <= c <= 1000 for c in self.coordinate):
            raise ValueError("coordinate must be within 0..1000")
        if self.action in POINT_ACTIONS and self.coordinate is None:
            raise ValueError(f"{self.action} needs a coordinate")
        if self.action == "type" and not self.text:
            raise ValueError("type needs text")
        if self.action == "key" and not self.keys:
            raise ValueError("key needs keys")
        return self


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["correct", "wrong"]
    correction: Correction | None = None
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _consistent(self) -> "LabelIn":
        if self.verdict == "correct" and self.correction is not None:
            raise ValueError("a step marked correct takes no correction")
        return self


class Label(LabelIn):
    id: int
    run_id: str
    step: int
    created_at: datetime
    pixel: tuple[int, int] | None = None  # the correction in screenshot pixels


class LabelError(UsageError, ValueError):
    """A label that cannot be stored (unknown run or step)."""


class Labels:
    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir
        self.store = RunStore(runs_dir)

    def add(self, run_id: str, step: int, label: LabelIn) -> Label:
        try:
            run_dir = self.store.run_dir(run_id)
        except FileNotFoundError as exc:
            raise LabelError(str(exc)) from None
        steps = {s.index: s for s in read_steps(run_dir)}
        if step not in steps:
            raise LabelError(f"run {run_id} has no step {step}")
        correction: dict[str, Any] | None = label.correction.model_dump() if label.correction else None
        if correction is not None and label.correction and label.correction.coordinate is not None:
            width, height = steps[step].screenshot_size
            x, y = label.correction.coordinate
            correction["pixel"] = [round(x / 1000 * width), round(y / 1000 * height)]
        event = LabelAdded(
            id=new_label_id(),
            step=step,
            verdict=label.verdict,
            correction=correction,
            note=label.note,
            created_at=datetime.now().astimezone(),
        )
        append_label_event(run_dir, event)  # the truth first; the index only mirrors it
        index = RunIndex(self.runs_dir)
        try:
            index.mirror_labels(run_dir)
        finally:
            index.close()
        added = _label(run_dir.name, event.model_dump())
        assert added is not None  # built from a validated LabelIn
        return added

    def undo(self, label_id: int) -> bool:
        """Undo a label (an undo line appended to its run's labels file); False when there is no such label."""
        index = RunIndex(self.runs_dir)
        try:
            holders = index.label_runs(label_id)
            if not holders:  # given by another process whose mirror has not run yet
                index.refresh_labels()
                holders = index.label_runs(label_id)
            undone = False
            for run_id, deleted in holders:
                try:
                    run_dir = self.store.run_dir(run_id)
                except FileNotFoundError:
                    continue
                if not deleted:
                    append_label_event(run_dir, LabelUndone(id=label_id, at=datetime.now(timezone.utc)))
                    undone = True
                index.mirror_labels(run_dir)
            return undone
        finally:
            index.close()

    def list(self, run_id: str | None = None) -> list[Label]:
        """Labels not undone, oldest first. A label whose correction no longer validates (a hand-edited or
        foreign labels file) is left out rather than failing the whole list."""
        index = RunIndex(self.runs_dir)
        try:
            index.refresh_labels(run_id)
            rows = index.labels(run_id)
        finally:
            index.close()
        labels = []
        for row in rows:
            label = _label(row["run_id"], {**row, "step": row["idx"]})
            if label is not None:
                labels.append(label)
        return labels


def _label(run_id: str, row: dict[str, Any]) -> Label | None:
    correction = dict(row["correction"]) if row.get("correction") else None
    pixel = correction.pop("pixel", None) if correction else None
    try:
        return Label(
            id=row["id"],
            run_id=run_id,
            step=row["step"],
            verdict=row["verdict"],
            note=row["note"],
            correction=Correction(**correction) if correction else None,
            created_at=row["created_at"],
            pixel=tuple(pixel) if isinstance(pixel, (list, tuple)) and len(pixel) == 2 else None,
        )
    except (ValidationError, TypeError):
        return None
