"""Incremental OCR: a partial read of what changed gives the lines a full read gives, on real shop screenshots;
an unchanged screenshot is not read again; and the reader falls back to a full read when a crop cannot be
trusted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.conftest import copy_bundled_run
from tools.ocr import OcrLine, OcrResult, _rgb_array, get_engine, ocr_available
from tools.ocr_incremental import (
    CELL,
    STRIDE,
    IncrementalReader,
    cell_boxes,
    changed_cells,
    crop_boxes,
    decode_rgb,
    grow_over_lines,
    read_around,
)
from tools.ocr_views import NEAR_PX, point_text
from tracer import read_steps

BOX_PX = 6  # "within a few pixels": the detector's box edges move by a few px with the context around a line


class Counting:
    """The real engine, with its reads counted (so a test can tell that a screenshot was not read again)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name = engine.name
        self.full = 0
        self.regions: list[tuple[int, int, int, int]] = []

    def read(self, image: Any) -> OcrResult:
        self.full += 1
        return self.engine.read(image)

    def read_region(self, image: Any, box: tuple[int, int, int, int]) -> OcrResult:
        self.regions.append(box)
        return self.engine.read_region(image, box)

    def region_scale_ok(self, size: tuple[int, int]) -> bool:
        return bool(self.engine.region_scale_ok(size))


@pytest.fixture(scope="module")
def shots(bundled_run, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Screenshots of a real recorded run of the bundled task, by what the step before did."""
    problem = ocr_available()
    if problem is not None:
        pytest.skip(f"needs the ocr extra: {problem}")
    result = copy_bundled_run(bundled_run, tmp_path_factory.mktemp("incremental") / "runs")
    steps = read_steps(result.run_dir)

    def shot(index: int) -> bytes:
        return (result.run_dir / steps[index].screenshot).read_bytes()

    # step 1 shows the username field focused, step 2 "admin" typed into it; step 8 the product name field
    # focused, step 9 the name typed; step 10 the price field focused (the focus ring moved)
    assert steps[1].action is not None and steps[1].action.action == "type"
    assert steps[8].action is not None and steps[8].action.action == "type"
    return {
        "username focused": shot(1),
        "username typed": shot(2),
        "name focused": shot(8),
        "name typed": shot(9),
        "price focused": shot(10),
    }


def same_lines(partial: OcrResult, full: OcrResult) -> None:
    assert [line.text for line in partial.lines] == [line.text for line in full.lines]
    for a, b in zip(partial.lines, full.lines, strict=True):
        assert max(abs(p - q) for p, q in zip(a.box, b.box, strict=True)) <= BOX_PX, (a, b)


@pytest.mark.parametrize(
    ("before", "after", "typed", "height"),
    [
        ("username focused", "username typed", "admin", 800),
        ("name focused", "name typed", "Aurora LED desk lamp", 800),
        ("name typed", "price focused", None, 800),
        # a 1280x720 screen (the detector enlarges a full read by 2%; a crop is read at its own size)
        ("name focused", "name typed", "Aurora LED desk lamp", 720),
    ],
)
def test_a_partial_read_gives_the_lines_of_a_full_read(shots, before: str, after: str, typed: str | None, height: int) -> None:
    engine = Counting(get_engine())
    reader = IncrementalReader(engine)
    first, info = reader.read(_rgb_array(shots[before])[:height], step=0)
    assert info.mode == "full" and info.reason == "first read" and engine.full == 1

    screen = _rgb_array(shots[after])[:height]
    partial, info = reader.read(screen, step=1)
    assert info.mode == "partial", info.reason
    assert engine.full == 1 and engine.regions == info.crops  # only the crops were read
    area = sum((right - left) * (bottom - top) for left, top, right, bottom in info.crops)
    assert area < 0.15 * 1280 * height, info.crops  # a small part of the screen
    assert all(box[0] % STRIDE == 0 and box[1] % STRIDE == 0 for box in info.crops)
    assert info.base == 0 and 0 < info.kept <= len(first.lines)

    full = get_engine().read(screen)
    same_lines(partial, full)
    if typed is not None:
        assert typed in [line.text for line in partial.lines]
        assert typed not in [line.text for line in first.lines]


def test_an_unchanged_screenshot_is_not_read_again(shots) -> None:
    engine = Counting(get_engine())
    reader = IncrementalReader(engine)
    first, _ = reader.read(shots["name typed"], step=4)
    again, info = reader.read(shots["name typed"], step=5)
    assert info.mode == "reused" and info.base == 4 and info.changed == 0.0
    assert engine.full == 1 and engine.regions == []
    assert again.lines == first.lines


def test_incremental_reads_off_reads_every_screenshot_in_full(shots) -> None:
    engine = Counting(get_engine())
    reader = IncrementalReader(engine, enabled=False)
    for name in ("name focused", "name typed", "name typed"):
        _, info = reader.read(shots[name])
        assert info.mode == "full" and info.reason == "incremental reads are off"
    assert engine.full == 3 and engine.regions == []


@pytest.mark.parametrize("point", [(300, 140), (400, 200), (300, 570)])
def test_a_read_around_a_point_finds_the_text_a_full_read_finds_there(shots, point: tuple[int, int]) -> None:
    """The gate's early read: the verdict needs the line under the point, or the nearest one within 40 px."""
    engine = Counting(get_engine())
    near, info = read_around(engine, shots["name typed"], point)
    assert info.mode == "partial" and engine.full == 0 and engine.regions == info.crops
    [crop] = info.crops
    assert (crop[2] - crop[0]) * (crop[3] - crop[1]) < 0.15 * 1280 * 800
    full = get_engine().read(shots["name typed"])
    at_crop, at_full = point_text(near, point), point_text(full, point)
    assert (at_crop.under and at_crop.under.text) == (at_full.under and at_full.under.text)
    assert at_crop.nearest is not None and at_full.nearest is not None and at_full.distance_px is not None
    if at_full.distance_px <= NEAR_PX:  # farther, the crop may not reach it (nor does the verdict look)
        assert at_crop.nearest.text == at_full.nearest.text
        assert at_crop.distance_px == pytest.approx(at_full.distance_px, abs=BOX_PX)


# -- without the OCR model: the geometry and the fallbacks ---------------------------------------------------------


def blank(width: int = 1280, height: int = 800) -> np.ndarray:
    return np.full((height, width, 3), 255, dtype=np.uint8)


class Scripted:
    """A stand-in region engine (the geometry is under test here, not OCR): full reads return ``full``, a region
    read returns the lines of ``region`` inside the box."""

    name = "scripted"

    def __init__(self, full: list[OcrLine], region: list[OcrLine]) -> None:
        self.full_lines, self.region_lines = full, region
        self.full = 0
        self.regions: list[tuple[int, int, int, int]] = []

    def read(self, image: Any) -> OcrResult:
        self.full += 1
        height, width = _rgb_array(image).shape[:2]
        return OcrResult(engine=self.name, size=(width, height), lines=self.full_lines)

    def read_region(self, image: Any, box: tuple[int, int, int, int]) -> OcrResult:
        self.regions.append(box)
        inside = [
            ln
            for ln in self.region_lines
            if ln.box[0] >= box[0] and ln.box[1] >= box[1] and ln.box[2] <= box[2] and ln.box[3] <= box[3]
        ]
        return OcrResult(engine=self.name, size=(1280, 800), lines=inside)

    def region_scale_ok(self, size: tuple[int, int]) -> bool:
        return True


def line(text: str, box: tuple[int, int, int, int]) -> OcrLine:
    return OcrLine(text=text, box=box, score=1.0)


def test_changed_cells_group_into_boxes_and_grow_over_the_lines_they_touch() -> None:
    before, after = blank(), blank()
    after[130:140, 300:306] = 0  # one typed letter
    after[131:139, 316:322] = 0  # the next, 10 px on: the same change
    after[600:604, 900:960] = 0  # somewhere else
    cells = changed_cells(before, after)
    assert cells.shape == (100, 160) and cells.sum() == 4 + 4 + 8  # 8 px cells: 4 for each letter, 8 for the bar
    boxes = cell_boxes(cells)
    assert boxes == [(296, 128, 328, 144), (896, 600, 960, 608)]
    name = line("Aurora", (274, 127, 300, 151))  # touches the first change: read again whole
    grown = grow_over_lines(boxes, [name, line("Price", (262, 163, 351, 193))])
    assert grown == [(274, 127, 328, 151), (896, 600, 960, 608)]
    crops = crop_boxes(grown, (1280, 800))
    assert crops == [(256, 96, 352, 192), (864, 576, 992, 640)]
    assert all(v % CELL == 0 for box in boxes for v in box)


def test_a_line_cut_by_the_crop_edge_means_a_full_read() -> None:
    before, after = blank(), blank()
    after[200:210, 600:620] = 0
    kept = line("Title", (10, 10, 100, 30))
    # the region read finds a line that runs past the crop (its right edge at the crop's edge)
    engine = Scripted([kept], [line("a long line", (580, 196, 640, 214))])
    reader = IncrementalReader(engine)
    reader.read(before)
    _, info = reader.read(after)
    assert info.mode == "full" and "reaches the crop's edge" in info.reason
    assert engine.regions == [(576, 160, 640, 256)] and engine.full == 2


def test_lines_outside_the_change_are_kept_and_those_inside_replaced() -> None:
    before, after = blank(), blank()
    after[300:310, 600:610] = 0
    title, old = line("Title", (10, 10, 100, 30)), line("ab", (590, 296, 605, 312))
    engine = Scripted([title, old], [line("abc", (590, 296, 612, 312)), line("pad", (580, 330, 600, 340))])
    reader = IncrementalReader(engine)
    reader.read(before, step=3)
    result, info = reader.read(after, step=4)
    assert info.mode == "partial" and info.base == 3 and info.kept == 1
    # "pad" is in the crop's padding, not in the change: not taken (its previous line, if any, stays)
    assert [ln.text for ln in result.lines] == ["Title", "abc"]


def test_a_full_read_every_k_reads_and_when_much_changed() -> None:
    screens = [blank() for _ in range(4)]
    for i, screen in enumerate(screens):
        screen[100:110, 100 + 20 * i : 110 + 20 * i] = 0
    engine = Scripted([], [])
    reader = IncrementalReader(engine, full_every=3)
    modes = [reader.read(screen)[1].mode for screen in screens]
    assert modes == ["full", "partial", "partial", "full"]
    whole = blank()
    whole[:, :] = 0
    _, info = reader.read(whole)
    assert info.mode == "full" and "100% of the screen changed" in info.reason


def test_a_png_decodes_to_the_same_pixels_as_pillow_gives() -> None:
    import io

    from PIL import Image

    pixels = np.random.default_rng(7).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    png = buffer.getvalue()
    assert np.array_equal(decode_rgb(png), pixels) and np.array_equal(decode_rgb(png), _rgb_array(png))
    rgba = io.BytesIO()
    Image.fromarray(pixels).convert("RGBA").save(rgba, format="PNG")
    assert np.array_equal(decode_rgb(rgba.getvalue()), pixels)  # an alpha channel is dropped, as Pillow's RGB does
