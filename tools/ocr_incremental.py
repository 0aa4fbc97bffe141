"""Incremental OCR: read only what changed since the previous screenshot read.

Consecutive screenshots of a run mostly differ in a small area (a character typed into a field, a focus ring
moving, a menu opening). :class:`IncrementalReader` compares each screenshot with the previous one it read and:

- **reused**: nothing changed: the previous lines, as they are;
- **partial**: the changed area is small: the changed rectangles are found on a grid of 8 px cells, grown to hold
  every previous line they touch (a line is re-read whole, never half), padded and aligned to the detector's
  32 px stride, and only those crops are read (:meth:`tools.ocr.RapidOcrEngine.read_region`). Previous lines
  outside the changed rectangles are kept; the lines read in a crop that touch a changed rectangle replace them.
  When a crop's lines do not fit that picture (a line cut by the crop's edge, or one overlapping a kept line),
  the image is read in full instead;
- **full**: the first screenshot, a large change, every ``full_every``-th read (so any drift goes away), a size
  the engine cannot crop at the same scale, or an engine without region reads.

Every read says how it was made (:class:`ReadInfo`), so the OCR file of a step can be audited.

:func:`read_around` reads only the neighbourhood of a point (the text a reasoning-action verdict needs), for a gate
that must judge a step before it acts.
"""

from __future__ import annotations

import time
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from tools.capture import png_size
from tools.images import check_screenshot_size
from tools.ocr import OcrEngine, OcrLine, OcrResult, _rgb_array, sort_lines
from tools.ocr_views import NEAR_PX, box_distance

Box = tuple[int, int, int, int]
ReadMode = Literal["full", "partial", "reused"]

CELL = 8  # px: the diff grid (a changed pixel marks its cell)
JOIN_CELLS = 2  # changed cells this close (16 px) are one change: the letters of a typed word
PIXEL_THRESHOLD = 16  # a pixel changed when a channel moved more than this (of 255)
PAD = 16  # px of context around a changed rectangle (the detector needs some background around text)
STRIDE = 32  # the detector's stride: crops start and end on this grid, as the full image does
EDGE = 2  # px: a line this close to a crop's inner edge may have been cut by it
SAME_LINE = 0.25  # a line read in a crop sharing more than this of its (or a kept line's) area with a kept line
TOUCH = 4  # px: a previous line this close to a change is read again (a detector's box edges move by a few px)
FULL_EVERY = 20  # a full read at least every this many reads (a page change brings one sooner)
MAX_CHANGED = 0.3  # of the image's area: read in full when the crops would cover more than this
AROUND = (256, 96)  # px either side of a point, across and down: the verdict looks 40 px around it (NEAR_PX: 64)
AROUND_TRIES = 3  # crops grown around a point before reading the whole image instead


class ReadInfo(BaseModel):
    """How a screenshot was read: in full, partly (the crops read, in image pixels) or reused outright."""

    mode: ReadMode
    crops: list[Box] = Field(default_factory=list)  # partial: the rectangles read
    changed: float = 0.0  # fraction of the image's 8 px cells that changed since the base read
    base: int | None = None  # the step whose read this one built on (partial, reused)
    reason: str = ""  # why this mode
    kept: int = 0  # partial: previous lines kept outside the crops
    ms: float = 0.0  # the time this read took (OCR, diff included)


@runtime_checkable
class RegionEngine(Protocol):
    """An engine that can read one rectangle of an image at the scale a full read uses."""

    def read_region(self, image: Any, box: Box) -> OcrResult: ...

    def region_scale_ok(self, size: tuple[int, int]) -> bool: ...


class IncrementalReader:
    """Reads a sequence of screenshots, each against the previous one read (see the module docstring)."""

    def __init__(
        self,
        engine: OcrEngine,
        *,
        enabled: bool = True,
        full_every: int = FULL_EVERY,
        max_changed: float = MAX_CHANGED,
    ) -> None:
        self.engine = engine
        self.enabled = enabled
        self.full_every = max(1, full_every)
        self.max_changed = max_changed
        self._previous: Any = None  # the RGB array last read
        self._result: OcrResult | None = None  # ... and its lines
        self._step: int | None = None
        self._since_full = 0

    @property
    def last_step(self) -> int | None:
        """The step of the image read (or remembered) last."""
        return self._step

    def remember(self, image: bytes | Any, result: OcrResult, *, step: int | None = None, full: bool = True) -> None:
        """Take ``result`` (read elsewhere, e.g. by a gate) as the read of ``image``: the next read diffs
        against it."""
        self._previous = decode_rgb(image)
        self._result = result
        self._step = step
        self._since_full = 0 if full else self._since_full + 1

    def read(self, image: bytes | Any, *, step: int | None = None) -> tuple[OcrResult, ReadInfo]:
        started = time.perf_counter()
        array = decode_rgb(image)
        result, info = self._read(array)
        info.ms = round((time.perf_counter() - started) * 1000, 2)
        result = result.model_copy(update={"ms": info.ms})  # this read's time (a reused one: the diff's)
        self._previous, self._result = array, result
        self._step = step
        self._since_full = 0 if info.mode == "full" else self._since_full + 1
        return result, info

    def _read(self, array: Any) -> tuple[OcrResult, ReadInfo]:
        import numpy as np

        base = self._step
        previous, before = self._previous, self._result
        if not self.enabled:
            return self._full(array, "incremental reads are off")
        if previous is None or before is None:
            return self._full(array, "first read")
        if previous.shape != array.shape:
            return self._full(array, "the screenshot's size changed")
        if np.array_equal(previous, array):  # a memory compare: far cheaper than the diff below
            return before, ReadInfo(mode="reused", base=base, reason="identical to the previous read", changed=0.0)
        cells = changed_cells(previous, array)
        changed = round(float(cells.mean()), 4) if cells.size else 0.0
        if not cells.any():
            return before, ReadInfo(mode="reused", base=base, reason="no pixel changed noticeably", changed=0.0)
        if self._since_full + 1 >= self.full_every:
            return self._full(array, f"a full read every {self.full_every} reads", changed)
        engine = self.engine
        height, width = array.shape[:2]
        if not isinstance(engine, RegionEngine) or not engine.region_scale_ok((width, height)):
            return self._full(array, "this engine or image size has no region reads", changed)
        if changed > self.max_changed:
            return self._full(array, f"{changed:.0%} of the screen changed", changed)
        changes = grow_over_lines(cell_boxes(cells), before.lines)
        crops = crop_boxes(changes, (width, height))
        area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in crops)
        if area > self.max_changed * width * height:
            return self._full(array, f"the crops cover {area / (width * height):.0%} of the screen", changed)
        kept = [line for line in before.lines if not any(touches(line.box, c) for c in changes)]
        fresh: list[OcrLine] = []
        for crop in crops:
            inside = [c for c in changes if contains(crop, c)]
            for line in engine.read_region(array, crop).lines:
                if not any(overlaps(line.box, c) for c in inside):
                    continue  # unchanged text in the padding: its previous line is kept
                if cut_by(line.box, crop, (width, height)):
                    return self._full(array, f"a line read in {crop} reaches the crop's edge", changed)
                if any(shared(line.box, k.box) > SAME_LINE for k in kept):
                    return self._full(array, f"a line read in {crop} overlaps a line kept outside it", changed)
                fresh.append(line)
        result = OcrResult(engine=before.engine, size=(width, height), lines=sort_lines(kept + fresh))
        reason = f"{len(changes)} changed area(s), {area / (width * height):.1%} of the screen read"
        return result, ReadInfo(mode="partial", crops=crops, changed=changed, base=base, reason=reason, kept=len(kept))

    def _full(self, array: Any, reason: str, changed: float = 1.0) -> tuple[OcrResult, ReadInfo]:
        return self.engine.read(array), ReadInfo(mode="full", reason=reason, changed=changed)


# -- geometry ---------------------------------------------------------------------------------------------------


def changed_cells(before: Any, after: Any) -> Any:
    """A boolean grid of ``CELL`` px cells: True where a pixel changed by more than ``PIXEL_THRESHOLD``."""
    import cv2
    import numpy as np

    diff = cv2.absdiff(np.ascontiguousarray(before), np.ascontiguousarray(after))  # uint8: 1/5 the time of int16
    diff = np.maximum(np.maximum(diff[:, :, 0], diff[:, :, 1]), diff[:, :, 2])
    height, width = diff.shape
    rows, cols = -(-height // CELL), -(-width // CELL)
    padded = np.zeros((rows * CELL, cols * CELL), dtype=np.uint8)
    padded[:height, :width] = diff
    return padded.reshape(rows, CELL, cols, CELL).max(axis=(1, 3)) > PIXEL_THRESHOLD


def decode_rgb(image: bytes | Any) -> Any:
    """An RGB array of a screenshot: PNG bytes decoded by OpenCV (a third of Pillow's time; lossless, so the
    same pixels), anything else as :func:`tools.ocr._rgb_array` does."""
    if isinstance(image, (bytes, bytearray, memoryview)) and bytes(image[:8]) == b"\x89PNG\r\n\x1a\n":
        import cv2
        import numpy as np

        check_screenshot_size(*png_size(bytes(image[:24])), what="the screenshot to read")
        bgr = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return _rgb_array(image)


def cell_boxes(cells: Any) -> list[Box]:
    """The changed areas, in pixels: connected groups of changed cells (joined across ``JOIN_CELLS`` cells)."""
    import cv2
    import numpy as np

    grid = cells.astype(np.uint8)
    size = 2 * JOIN_CELLS + 1
    joined = cv2.dilate(grid, np.ones((size, size), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    boxes = []
    for label in range(1, count):
        mask = (labels == label) & (grid > 0)  # the group's own changed cells, not the joining margin
        ys, xs = np.nonzero(mask)
        if len(xs):
            boxes.append((int(xs.min()) * CELL, int(ys.min()) * CELL, (int(xs.max()) + 1) * CELL, (int(ys.max()) + 1) * CELL))
    return merge_boxes(boxes)


def grow_over_lines(changes: list[Box], lines: list[OcrLine]) -> list[Box]:
    """Each change grown to hold every previous line it touches (within ``TOUCH`` px; repeated until nothing more
    is touched), so a line partly changed is read again whole."""
    boxes = list(changes)
    while True:
        grown = []
        for box in boxes:
            for line in lines:
                if touches(line.box, box):
                    box = union(box, line.box)
            grown.append(box)
        grown = merge_boxes(grown)
        if grown == boxes:
            return boxes
        boxes = grown


def crop_boxes(changes: list[Box], size: tuple[int, int]) -> list[Box]:
    """The rectangles to read: each change padded by ``PAD``, aligned outwards to the ``STRIDE`` grid, inside the
    image; overlapping ones merged."""
    width, height = size
    crops = []
    for left, top, right, bottom in changes:
        crops.append(
            (
                max(0, (left - PAD) // STRIDE * STRIDE),
                max(0, (top - PAD) // STRIDE * STRIDE),
                min(width, -(-(right + PAD) // STRIDE) * STRIDE),
                min(height, -(-(bottom + PAD) // STRIDE) * STRIDE),
            )
        )
    return merge_boxes(crops)


def merge_boxes(boxes: list[Box]) -> list[Box]:
    """Boxes that overlap merged into their union, until none overlap; sorted top to bottom."""
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if overlaps(boxes[i], boxes[j]):
                    boxes[i] = union(boxes[i], boxes.pop(j))
                    merged = True
                    break
            if merged:
                break
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def touches(line: Box, change: Box) -> bool:
    """Whether a line's box, widened by ``TOUCH`` px, overlaps a change."""
    return overlaps((line[0] - TOUCH, line[1] - TOUCH, line[2] + TOUCH, line[3] + TOUCH), change)


def shared(a: Box, b: Box) -> float:
    """The area two boxes share, over the smaller one's area (adjacent words' boxes overlap by a few px)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return width * height / max(1, smaller)


def contains(outer: Box, inner: Box) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def cut_by(line: Box, crop: Box, size: tuple[int, int]) -> bool:
    """Whether ``line`` reaches an edge of ``crop`` that is not the image's edge (the crop may have cut it)."""
    width, height = size
    return (
        (crop[0] > 0 and line[0] <= crop[0] + EDGE)
        or (crop[1] > 0 and line[1] <= crop[1] + EDGE)
        or (crop[2] < width and line[2] >= crop[2] - EDGE)
        or (crop[3] < height and line[3] >= crop[3] - EDGE)
    )


def read_around(engine: OcrEngine, image: bytes | Any, point: tuple[int, int]) -> tuple[OcrResult, ReadInfo]:
    """The lines near ``point``, read from a crop reaching ``AROUND`` from it: every line within ``NEAR_PX`` of the
    point whole (a line the crop cut grows the crop over it), and the other lines the crop holds whole. After
    ``AROUND_TRIES`` crops (or with an engine or image size without region reads) the whole image is read."""
    started = time.perf_counter()
    array = decode_rgb(image)
    height, width = array.shape[:2]
    x, y = min(max(point[0], 0), width - 1), min(max(point[1], 0), height - 1)
    if isinstance(engine, RegionEngine) and engine.region_scale_ok((width, height)):
        dx, dy = AROUND
        wanted = (x - dx, y - dy, x + dx, y + dy)
        for _ in range(AROUND_TRIES):
            [crop] = crop_boxes(
                [(max(0, wanted[0]), max(0, wanted[1]), min(width, wanted[2]), min(height, wanted[3]))], (width, height)
            )
            result = engine.read_region(array, crop)
            edge = [line for line in result.lines if cut_by(line.box, crop, (width, height))]
            # a cut line farther than NEAR_PX can be neither under the point nor near it (its hidden part is
            # beyond the crop's edge, farther still): left out, instead of growing the crop over it
            far = [line for line in edge if box_distance((x, y), line.box) > NEAR_PX]
            cut = [line.box for line in edge if line not in far]
            if not cut:
                result = result.model_copy(update={"lines": [line for line in result.lines if line not in far]})
                ms = round((time.perf_counter() - started) * 1000, 2)
                info = ReadInfo(mode="partial", crops=[crop], reason=f"around the point {point}", ms=ms)
                return result.model_copy(update={"ms": ms}), info
            for box in cut:  # a cut line runs on past the edge: reach well beyond it on that side
                wanted = union(wanted, (box[0] - dx, box[1] - dy // 2, box[2] + dx, box[3] + dy // 2))
    result = engine.read(array)
    ms = round((time.perf_counter() - started) * 1000, 2)
    return result, ReadInfo(mode="full", reason=f"no crop around the point {point} held its lines whole", ms=ms)
