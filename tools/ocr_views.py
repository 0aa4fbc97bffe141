"""What OCR lines say about a point and a page: the text under and nearest a point, and simple layout regions.

Layout is geometry only, enough to name where a click landed ("clicked 'Publish' in the region 'Publish |
Save draft' at the middle-left"):

- a **row** is lines side by side: their vertical extents overlap by half the smaller line's height and the gap
  between neighbours is at most three line heights (a button bar, a label and its value, a menu);
- a **panel** is lines stacked close together: a vertical gap of at most 1.5 line heights and overlapping (or
  nearly touching) horizontal extents, chained (a form, a sidebar, a card).

Positions name the third of the screen a region's centre is in: top/middle/bottom and left/center/right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from tools.ocr import OcrLine, OcrResult

UNDER_PAD = 4  # px around a line's box that still count as "under" (a click on a button's padding)
NEAR_PX = 64  # a line farther than this from the point does not name the point's region
LABEL_CHARS = 80


class Region(BaseModel):
    """A group of lines: ``lines`` are indices into the result's lines, ``label`` their text joined with " | "."""

    kind: Literal["row", "panel"]
    box: tuple[int, int, int, int]
    lines: list[int]
    label: str
    position: str  # e.g. "top-left", "center", "bottom-right"


class Layout(BaseModel):
    rows: list[Region] = Field(default_factory=list)
    panels: list[Region] = Field(default_factory=list)


class PointText(BaseModel):
    """The OCR text at an executed point (screenshot pixels)."""

    point: tuple[int, int]
    under: OcrLine | None = None  # the line whose box holds the point
    nearest: OcrLine | None = None  # the line closest to the point (the one under it, if any)
    distance_px: float | None = None  # from the point to the nearest line's box (0: inside)
    row: int | None = None  # index into Layout.rows of the nearest line's row, when it is within NEAR_PX
    panel: int | None = None
    description: str  # "clicked 'Publish' in the region 'Publish | Save draft' at the middle-left"


def box_distance(point: tuple[float, float], box: tuple[int, int, int, int]) -> float:
    """Euclidean distance from ``point`` to ``box`` (0 inside it)."""
    x, y = point
    left, top, right, bottom = box
    dx = max(left - x, 0.0, x - right)
    dy = max(top - y, 0.0, y - bottom)
    return math.hypot(dx, dy)


def position_name(box: tuple[int, int, int, int], size: tuple[int, int]) -> str:
    width, height = max(size[0], 1), max(size[1], 1)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    vertical = ("top", "middle", "bottom")[min(2, int(3 * cy / height))]
    horizontal = ("left", "center", "right")[min(2, int(3 * cx / width))]
    return "center" if (vertical, horizontal) == ("middle", "center") else f"{vertical}-{horizontal}"


def layout(result: OcrResult) -> Layout:
    """Rows and panels of the result's lines (see the module docstring)."""
    lines = result.lines
    rows = _groups(lines, _same_row)
    panels = _groups(lines, _same_panel)
    return Layout(
        rows=[_region("row", group, lines, result.size) for group in rows],
        panels=[_region("panel", group, lines, result.size) for group in panels],
    )


def point_text(result: OcrResult, point: tuple[int, int], regions: Layout | None = None, *, verb: str = "clicked") -> PointText:
    """The line under ``point``, the nearest line and its distance, and the region the point is in, described."""
    regions = regions if regions is not None else layout(result)
    under_index = nearest_index = None
    nearest_distance = math.inf
    for i, line in enumerate(result.lines):
        distance = box_distance(point, line.box)
        if distance <= UNDER_PAD and (under_index is None or _area(line) < _area(result.lines[under_index])):
            under_index = i
        if distance < nearest_distance:
            nearest_index, nearest_distance = i, distance
    if under_index is not None:
        nearest_index, nearest_distance = under_index, 0.0
    under = result.lines[under_index] if under_index is not None else None
    nearest = result.lines[nearest_index] if nearest_index is not None else None
    row = panel = None
    if nearest_index is not None and nearest_distance <= NEAR_PX:
        row = next((i for i, r in enumerate(regions.rows) if nearest_index in r.lines), None)
        panel = next((i for i, r in enumerate(regions.panels) if nearest_index in r.lines), None)
    description = _describe(verb, point, under, nearest, nearest_distance, regions, row, panel, result.size)
    return PointText(
        point=point,
        under=under,
        nearest=nearest,
        distance_px=round(nearest_distance, 1) if nearest is not None else None,
        row=row,
        panel=panel,
        description=description,
    )


def _describe(
    verb: str,
    point: tuple[int, int],
    under: OcrLine | None,
    nearest: OcrLine | None,
    distance: float,
    regions: Layout,
    row: int | None,
    panel: int | None,
    size: tuple[int, int],
) -> str:
    where = position_name((point[0], point[1], point[0], point[1]), size)
    if nearest is None:
        return f"{verb} at {point} ({where}); no text on the screen"
    if under is not None:
        what = f"{verb} {_quote(under.text)}"
    elif distance <= NEAR_PX:
        what = f"{verb} {distance:.0f} px from {_quote(nearest.text)}"
    else:
        return f"{verb} at {point} ({where}); no text within {NEAR_PX} px (nearest: {_quote(nearest.text)}, {distance:.0f} px)"
    if row is not None and len(regions.rows[row].lines) > 1:
        region = regions.rows[row]
        what += f" in the region {_quote(region.label)} at the {region.position}"
    else:
        what += f" at the {where}"
    if panel is not None and len(regions.panels[panel].lines) > 2:
        first = regions.panels[panel]
        what += f", in a panel of {len(first.lines)} lines at the {first.position}"
    return what


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…")


def _area(line: OcrLine) -> int:
    left, top, right, bottom = line.box
    return max(1, right - left) * max(1, bottom - top)


def _same_row(a: OcrLine, b: OcrLine) -> bool:
    overlap = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
    small = max(1, min(a.height, b.height))
    if overlap < small / 2:
        return False
    gap = max(a.box[0], b.box[0]) - min(a.box[2], b.box[2])
    return gap <= 3 * max(a.height, b.height)


def _same_panel(a: OcrLine, b: OcrLine) -> bool:
    tall = max(a.height, b.height, 1)
    vertical_gap = max(a.box[1], b.box[1]) - min(a.box[3], b.box[3])
    horizontal_gap = max(a.box[0], b.box[0]) - min(a.box[2], b.box[2])
    return vertical_gap <= 1.5 * tall and horizontal_gap <= 2 * tall


def _groups(lines: Sequence[OcrLine], joined: object) -> list[list[int]]:
    """Connected components of ``lines`` under the ``joined`` relation (union-find; quadratic, a page has ~100)."""
    parent = list(range(len(lines)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    assert callable(joined)
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            if joined(lines[i], lines[j]):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(lines)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: (min(lines[i].box[1] for i in g), min(lines[i].box[0] for i in g)))


def _region(kind: Literal["row", "panel"], group: list[int], lines: Sequence[OcrLine], size: tuple[int, int]) -> Region:
    members = sorted(
        group, key=lambda i: (lines[i].box[0], lines[i].box[1]) if kind == "row" else (lines[i].box[1], lines[i].box[0])
    )
    box = (
        min(lines[i].box[0] for i in members),
        min(lines[i].box[1] for i in members),
        max(lines[i].box[2] for i in members),
        max(lines[i].box[3] for i in members),
    )
    label = " | ".join(" ".join(lines[i].text.split()) for i in members)
    if len(label) > LABEL_CHARS:
        label = label[: LABEL_CHARS - 1] + "…"
    return Region(kind=kind, box=box, lines=members, label=label, position=position_name(box, size))
