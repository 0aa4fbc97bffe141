"""Labels a person puts on steps: correct, or wrong with where it should have clicked.

Stored in the runs index (SQLite), so they survive restarts and many viewers may write at once.

    labels = Labels(Path("runs"))
    labels.add(run_id, 4, LabelIn(verdict="wrong", correction=Correction(action="left_click", coordinate=(412, 300))))
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tools.actions import COMPUTER_USE_ACTIONS, POINT_ACTIONS
from tracer.index import RunIndex
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


class LabelError(ValueError):
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
        correction = label.correction.model_dump() if label.correction else None
        if label.correction and label.correction.coordinate is not None:
            width, height = steps[step].screenshot_size
            x, y = label.correction.coordinate
            correction["pixel"] = [round(x / 1000 * width), round(y / 1000 * height)]
        index = RunIndex(self.runs_dir)
        try:
            label_id = index.add_label(run_dir.name, step, label.verdict, correction, label.note)
        finally:
            index.close()
        return next(lbl for lbl in self.list(run_dir.name) if lbl.id == label_id)

    def undo(self, label_id: int) -> bool:
        index = RunIndex(self.runs_dir)
        try:
            return index.delete_label(label_id)
        finally:
            index.close()

    def list(self, run_id: str | None = None) -> list[Label]:
        index = RunIndex(self.runs_dir)
        try:
            rows = index.labels(run_id)
        finally:
            index.close()
        labels = []
        for row in rows:
            correction = row["correction"]
            pixel = tuple(correction.pop("pixel")) if correction and "pixel" in correction else None
            labels.append(Label(
                id=row["id"], run_id=row["run_id"], step=row["idx"], verdict=row["verdict"], note=row["note"],
                correction=Correction(**correction) if correction else None, created_at=row["created_at"], pixel=pixel,
            ))
        return labels
