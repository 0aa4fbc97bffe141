"""Attention pictures a person can read (the colour scale, the dimmed screenshot, the top region's outline) and the
explain folder's records and listing (nothing read from outside the run's explain folder)."""

from __future__ import annotations

import io
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tracer.attention_picture import DIM, LUT, TOP_COLOUR, attention_picture, colormap, css_gradient, top_region
from tracer.explain_files import (
    ExplainMap,
    ExplainRecord,
    explain_file,
    explain_results,
    picture_name,
    record_name,
    write_explain_record,
)

SIZE = (1280, 800)
GRID = (25, 40)  # 32 px cells on a 1280x800 screenshot
BACKGROUND = (200, 120, 40)  # a colour with distinct channels: a tint would change their ratios


def screenshot(colour=BACKGROUND, size=SIZE) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def peaked(row: int = 10, col: int = 20) -> np.ndarray:
    """An even map with a 3x3 block of strong cells around (row, col): the block's centre cell is the peak."""
    m = np.full(GRID, 1.0, dtype=np.float32)
    m[row - 1 : row + 2, col - 1 : col + 2] = 40.0
    m[row, col] = 60.0
    return (m / m.sum()).astype(np.float16)


def pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "RGB"
        return np.asarray(image, dtype=np.int16)


def test_colour_scale_runs_from_dark_purple_to_yellow_and_rises_in_lightness():
    assert LUT.shape == (256, 3) and tuple(LUT[0]) == (68, 1, 84) and tuple(LUT[-1]) == TOP_COLOUR == (253, 231, 37)
    luma = LUT @ np.array([0.299, 0.587, 0.114])
    # Perceptual order: lighter all the way up (every 8 entries; between them only 8-bit rounding moves it).
    assert np.all(np.diff(luma[::8]) > 0) and np.diff(luma).min() > -1
    assert tuple(colormap(np.array([0.0, 1.0, 2.0, -1.0]))[1]) == TOP_COLOUR
    assert tuple(colormap(np.array([2.0]))[0]) == TOP_COLOUR and tuple(colormap(np.array([-1.0]))[0]) == tuple(LUT[0])
    gradient = css_gradient()
    assert gradient.startswith("linear-gradient(to right, rgb(68 1 84) 0.0%") and "rgb(253 231 37) 100.0%" in gradient


def test_the_screenshot_is_dimmed_not_tinted_the_peak_is_the_top_colour_and_the_top_region_is_outlined():
    out = pixels(attention_picture(screenshot(), peaked(10, 20)))
    assert out.shape == (800, 1280, 3)
    # Far from the peak the map is at an even spread: the screenshot only, dimmed, its hue kept.
    corner = out[40, 40]
    assert tuple(corner) == tuple(round(c * DIM) for c in BACKGROUND)
    assert corner.sum() < sum(BACKGROUND)
    # The peak cell (10, 20) spans x 640..672, y 320..352: all of it in the top colour.
    assert np.all(out[320:352, 640:672] == np.array(TOP_COLOUR))
    # The top region is the 3x3 block (cells >= half the peak's excess): x 608..704, y 288..384, outlined around
    # it with a dark edge and a white line.
    region = top_region(peaked(10, 20), SIZE)
    assert region is not None and region.box == (608, 288, 704, 384)
    assert region.mass == pytest.approx((8 * 40 + 60) / (991 + 8 * 40 + 60), abs=1e-3)  # float16 grid
    column = out[250:300, 656]  # from above the region down to its top edge
    assert any(tuple(p) == (255, 255, 255) for p in column) and any(tuple(p) == (0, 0, 0) for p in column)
    assert tuple(out[300, 700]) not in {(255, 255, 255), (0, 0, 0)}  # inside the region: colours, no line


def test_an_even_map_leaves_the_whole_screenshot_dimmed_with_no_region():
    even = np.full(GRID, 1 / (GRID[0] * GRID[1]), dtype=np.float32)
    out = pixels(attention_picture(screenshot(), even))
    assert np.all(out == np.array([round(c * DIM) for c in BACKGROUND]))
    assert top_region(even, SIZE) is None and top_region(np.zeros(GRID), SIZE) is None


def test_a_picture_can_be_drawn_small_for_small_multiples():
    out = pixels(attention_picture(screenshot(), peaked(3, 3), max_width=480))
    assert out.shape == (300, 480, 3)
    assert np.all(out[37:47, 37:47] == np.array(TOP_COLOUR))  # cell (3, 3) spans 36..48 at this width
    with pytest.raises(ValueError, match="2-D grid"):
        attention_picture(screenshot(), np.ones(10))


# -- the explain folder ---------------------------------------------------------------------------------------


def record(step: int = 2, words: list[str] | None = None) -> ExplainRecord:
    return ExplainRecord(
        step=step,
        method="attention",
        model="tiny",
        words=words or [],
        created_at=datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc),
        targets={"action": 3},
        maps=[
            ExplainMap(
                key="action/deep",
                target="action",
                group="deep",
                picture=picture_name(step, "attention", "action/deep"),
                peak_px=(100, 200),
                concentration=0.4,
                entropy=0.6,
                mass_in_evidence=0.25,
            )
        ],
    )


def make_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    (run_dir / "explain").mkdir(parents=True)
    return run_dir


def test_a_record_lists_its_pictures_with_figures_and_loose_pictures_are_listed_by_name(tmp_path):
    run_dir = make_run(tmp_path)
    folder = run_dir / "explain"
    assert record_name(2, "attention", None) == "step0002_attention.json"
    assert record_name(2, "attention", ["Publish", "a b"]) == "step0002_attention_Publish-a_b.json"
    (folder / "step0002_attention_action_deep.png").write_bytes(screenshot())
    (folder / "step0002_gradcam_action_gradcam.png").write_bytes(screenshot())  # an older explain: no record
    (folder / "step0003_attention_action_deep.png").write_bytes(screenshot())  # another step
    write_explain_record(folder, record())
    (folder / "step0002_attention_broken.json").write_text("{not json")
    listed = explain_results(run_dir, 2)
    assert [(x.record, x.method) for x in listed] == [
        ("step0002_attention.json", "attention"),
        ("step0002_attention_broken.json", "?"),
        (None, "gradcam"),
    ]
    assert listed[0].maps[0].mass_in_evidence == 0.25  # type: ignore[union-attr]
    assert listed[1].problem is not None and listed[1].problem.startswith("unreadable record")
    assert listed[2].maps == ["step0002_gradcam_action_gradcam.png"]
    assert explain_results(run_dir, 7) == [] and explain_results(tmp_path / "none", 2) == []


def test_only_files_directly_inside_the_runs_explain_folder_are_served(tmp_path):
    run_dir = make_run(tmp_path)
    folder = run_dir / "explain"
    (folder / "ok.png").write_bytes(b"png")
    (run_dir / "run.json").write_text("{}")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"secret")
    (folder / "out.png").symlink_to(outside)
    (folder / "up.png").symlink_to(run_dir / "run.json")  # inside the run, but not in its explain folder
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.png").write_bytes(b"png")
    assert explain_file(run_dir, "ok.png") == (folder / "ok.png").resolve()
    for name in ("out.png", "up.png", "../run.json", "sub/deep.png", "sub", ".hidden", "", "a\0b", "..", "..\\run.json"):
        assert explain_file(run_dir, name) is None, name


def test_an_explain_folder_that_leads_out_of_the_run_is_not_read(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_explain_record(elsewhere, record())
    (elsewhere / "step0002_attention_action_deep.png").write_bytes(b"png")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.symlink(elsewhere, run_dir / "explain")
    assert explain_results(run_dir, 2) == []
    assert explain_file(run_dir, "step0002_attention_action_deep.png") is None
