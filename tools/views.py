"""Data shapes shared by executors: what was seen, where things are, what an action did."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from tools.coords import CoordinateAudit


class Box(BaseModel):
    """A rectangle in CSS pixels."""

    x: float
    y: float
    width: float
    height: float

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2


class Observation(BaseModel):
    """One screenshot of the environment and what is known about it."""

    screenshot_png: bytes = Field(repr=False, exclude=True)
    screenshot_size: tuple[int, int]  # device pixels
    css_size: tuple[int, int]  # viewport in CSS pixels
    device_scale_factor: float
    url: str | None = None
    title: str | None = None
    taken_at: datetime


class ElementInfo(BaseModel):
    """The element under the acting point, as the browser saw it just before the action."""

    tag: str
    text: str
    box: Box


class Outcome(BaseModel):
    """What an action did: ok, or an error with the reason."""

    status: Literal["ok", "error"]
    error: str | None = None
    coordinate: CoordinateAudit | None = None
    element: ElementInfo | None = None
    navigated: bool = False
