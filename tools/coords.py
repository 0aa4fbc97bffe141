"""Coordinate mapping from what the model says to CSS pixels, with an audit trail.

Qwen3-VL speaks in a 0..1000 grid over the screenshot (``relative-1000``); Qwen2.5-VL in pixels of
the resized image it was shown (``absolute``). Mouse input in a browser is in CSS pixels; the
screenshot has ``device_scale_factor`` times as many pixels.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel


class CoordinateMode(str, Enum):
    relative_1000 = "relative-1000"
    absolute = "absolute"


class CoordinateAudit(BaseModel):
    """How one model coordinate became a pixel on the device."""

    model: tuple[float, float]
    mode: CoordinateMode
    divisor: float | None  # relative mode only
    resized_size: tuple[int, int] | None  # absolute mode: the image size the model saw
    screenshot_size: tuple[int, int]  # device pixels
    device_scale_factor: float
    css: tuple[int, int]  # where the executor acted
    clamped: bool


def to_css(
    point: list[float] | tuple[float, float],
    *,
    css_size: tuple[int, int],
    device_scale_factor: float = 1.0,
    mode: CoordinateMode = CoordinateMode.relative_1000,
    divisor: float = 1000.0,
    resized_size: tuple[int, int] | None = None,
) -> CoordinateAudit:
    """Map a model coordinate to a CSS pixel, clamped to the viewport.

    >>> to_css([500, 500], css_size=(1280, 800)).css
    (640, 400)
    """
    x, y = float(point[0]), float(point[1])
    width, height = css_size
    if mode is CoordinateMode.relative_1000:
        fx, fy = x / divisor, y / divisor
    else:
        if resized_size is None:
            raise ValueError("absolute coordinates need the size of the resized image the model saw")
        fx, fy = x / resized_size[0], y / resized_size[1]
    px, py = round(fx * width), round(fy * height)
    cx, cy = min(max(px, 0), width - 1), min(max(py, 0), height - 1)
    return CoordinateAudit(
        model=(x, y),
        mode=mode,
        divisor=divisor if mode is CoordinateMode.relative_1000 else None,
        resized_size=resized_size,
        screenshot_size=(round(width * device_scale_factor), round(height * device_scale_factor)),
        device_scale_factor=device_scale_factor,
        css=(cx, cy),
        clamped=(cx, cy) != (px, py),
    )


def from_css(point: tuple[float, float], *, css_size: tuple[int, int], divisor: float = 1000.0) -> list[int]:
    """The relative (0..divisor) coordinate of a CSS pixel; used by scripts that name elements."""
    return [round(point[0] / css_size[0] * divisor), round(point[1] / css_size[1] * divisor)]
