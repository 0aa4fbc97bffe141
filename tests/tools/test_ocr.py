"""The OCR engine (rapidocr, its models from the wheel) on real shop screenshots, and the layout geometry."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import copy_bundled_run
from tools.ocr import (
    OcrLine,
    OcrResult,
    OcrUnavailable,
    RapidOcrEngine,
    RecognizedLines,
    get_engine,
    ocr_available,
    register_engine,
)
from tools.ocr_views import layout, point_text
from tracer import read_steps
from tracer.ocr_files import scrub_lines
from tracer.secrets import MASK, Scrubber


def line(text: str, box: tuple[int, int, int, int]) -> OcrLine:
    return OcrLine(text=text, box=box, score=1.0)


FORM = OcrResult(
    engine="test",
    size=(1280, 800),
    lines=[
        line("Northwind Goods", (15, 15, 169, 38)),
        line("Dashboard", (16, 77, 93, 98)),
        line("Products", (16, 110, 84, 136)),
        line("Product name", (264, 97, 368, 120)),
        line("Price (USD)", (263, 163, 352, 193)),
        line("Publish", (273, 555, 339, 583)),
        line("Save draft", (370, 558, 447, 583)),
    ],
)


def test_rows_group_side_by_side_lines_and_name_the_clicked_region() -> None:
    regions = layout(FORM)
    assert [r.label for r in regions.rows if len(r.lines) > 1] == ["Publish | Save draft"]
    at = point_text(FORM, (306, 569), regions)
    assert at.under is not None and at.under.text == "Publish" and at.distance_px == 0
    assert at.description == "clicked 'Publish' in the region 'Publish | Save draft' at the bottom-left"


def test_a_point_beside_text_names_the_nearest_line_and_its_distance() -> None:
    at = point_text(FORM, (300, 130))  # an empty input under its label
    assert at.under is None and at.nearest is not None and at.nearest.text == "Product name"
    assert at.distance_px == 10.0
    far = point_text(FORM, (1000, 700))
    assert far.under is None and far.row is None and "no text within" in far.description


def test_panels_keep_the_sidebar_apart_from_the_form() -> None:
    panels = [r.label for r in layout(FORM).panels]
    assert panels == ["Northwind Goods", "Dashboard | Products", "Product name | Price (USD)", "Publish | Save draft"]


def test_an_unknown_engine_is_a_clear_error_and_another_can_be_registered() -> None:
    with pytest.raises(OcrUnavailable, match="unknown OCR engine 'nope'; known: .*rapidocr"):
        get_engine("nope")

    class Fixed:  # a stand-in engine: the registry is under test here, not OCR
        name = "fixed"

        def read(self, image: object) -> OcrResult:
            return FORM

    register_engine("fixed-test", Fixed)
    assert get_engine("fixed-test") is get_engine("fixed-test")  # built once per process
    assert get_engine("fixed-test").read(b"") is FORM
    assert "unknown OCR engine" in (ocr_available("nope") or "")


def test_a_line_showing_a_secret_in_any_case_or_spacing_is_masked_whole() -> None:
    scrub = Scrubber.from_secrets({"note": "Zebra-tulip-4821"})
    shown = ["note: Zebra-tulip-4821 ok", "Zebra-t ulip-48 21", "ZEBRA-TULIP-4821", "Zebra-t   ulip-4821", "key zebra-tulip"]
    lines = scrub_lines([line(text, (0, 0, 9, 9)) for text in shown + ["Zebra crossing", "tulip 4821"]], scrub)
    # A fragment shorter than the scrubber's window (8 characters) is not a secret's: those lines are kept.
    assert [x.text for x in lines] == [MASK] * len(shown) + ["Zebra crossing", "tulip 4821"]


def test_recognition_reads_each_line_image_once() -> None:
    """The memory of lines already read, around a stand-in recognizer that names a line by its pixel value."""
    batches: list[int] = []

    def recognize(crops: list[np.ndarray]) -> SimpleNamespace:
        batches.append(len(crops))
        texts = tuple(f"line {int(c[0, 0, 0])}" for c in crops)
        return SimpleNamespace(imgs=None, txts=texts, scores=(0.9,) * len(crops), word_results=(None,) * len(crops))

    memory = RecognizedLines(limit=2)
    read = memory.wrap(recognize)
    a, b, c = (np.full((4, 8, 3), value, np.uint8) for value in (1, 2, 3))
    out = read([a, b, a.copy()])  # the same line twice on one screen is recognized once
    assert out.txts == ("line 1", "line 2", "line 1") and out.scores == (0.9, 0.9, 0.9) and batches == [2]
    assert read([b, c]).txts == ("line 2", "line 3") and batches == [2, 1]  # only the new line
    assert (memory.hits, memory.misses) == (2, 3)
    assert read([a]).txts == ("line 1",) and batches == [2, 1, 1]  # a was the least recently used of 3: forgotten
    assert read([np.full((8, 4, 3), 1, np.uint8)]).txts == ("line 1",) and batches[-1] == 1  # same bytes, other shape
    assert read([b]).txts == ("line 2",) and batches[-1] == 1  # b fell out too (limit 2)
    memory.clear()
    read([c])
    assert batches[-1] == 1


# -- the real engine on real screenshots (slow: loads onnxruntime and the models) -------------------------------


@pytest.fixture(scope="module")
def engine():
    problem = ocr_available()
    if problem is not None:
        pytest.skip(f"needs the ocr extra: {problem}")
    return get_engine()


@pytest.mark.slow
def test_models_load_from_the_package_without_downloading(monkeypatch) -> None:
    if ocr_available() is not None:
        pytest.skip(f"needs the ocr extra: {ocr_available()}")
    from rapidocr.utils.download_file import DownloadFile

    from tools.fake import screenshot
    from tools.ocr import RapidOcrEngine

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("rapidocr tried to download a model")

    # rapidocr checks its bundled files against their checksums and asks the network only for a missing one
    monkeypatch.setattr(DownloadFile, "_make_http_request", classmethod(refuse))
    result = RapidOcrEngine().read(screenshot("white"))
    assert result.lines == [] and result.size == (1280, 800)


def test_ocr_finds_the_shop_buttons_where_the_clicks_landed(engine, bundled_run, tmp_path) -> None:
    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    steps = read_steps(result.run_dir)
    for name in ("Sign in", "Publish"):
        step = next(s for s in steps if s.element is not None and s.element.text == name and s.evidence is not None)
        read = engine.read((result.run_dir / step.screenshot).read_bytes())
        found = [x for x in read.lines if x.text == name]
        assert len(found) == 1, [x.text for x in read.lines]
        left, top, right, bottom = found[0].box
        assert right - left > 20 and bottom - top > 10
        at = point_text(read, step.evidence.point)
        assert at.under == found[0], at.description  # the click landed on the text OCR read
    publish_page = engine.read((result.run_dir / steps[-2].screenshot).read_bytes())
    rows = [r.label for r in layout(publish_page).rows]
    assert "Publish | Save draft" in rows


def test_the_published_message_reads_upright(engine, bundled_run, tmp_path) -> None:
    """rapidocr's text-direction classifier turned this upright line over (read as 'prod e uue e u uo urhed');
    the engine leaves it off, since a screenshot's text is upright."""
    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    last = read_steps(result.run_dir)[-1]
    read = engine.read((result.run_dir / last.screenshot).read_bytes())
    [message] = [x.text for x in read.lines if x.text.endswith(" was published.")]
    assert message.startswith("Product ") and "Aurora LED desk lamp" in message, message


def test_a_screen_read_again_gives_the_same_lines_without_recognizing_them(engine, bundled_run, tmp_path) -> None:
    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    png = (result.run_dir / read_steps(result.run_dir)[-2].screenshot).read_bytes()
    engine.forget()
    first = engine.read(png)
    misses = engine._recognized.misses
    again = engine.read(png)
    assert again.lines == first.lines and len(first.lines) > 10
    assert engine._recognized.misses == misses  # every line came from memory


def test_a_short_line_is_recognized_at_its_own_width_and_reads_as_at_rapidocrs(engine, bundled_run, tmp_path) -> None:
    """Recognition costs in proportion to the width a line is padded to; rapidocr pads every line to 320 px (at
    48 high), the engine only to REC_MIN_WIDTH, and the shop's buttons and labels read the same either way."""
    from tools.ocr import REC_MIN_WIDTH

    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    png = (result.run_dir / read_steps(result.run_dir)[-2].screenshot).read_bytes()
    recognizer = engine._ocr._load_rec_model()
    widths: list[int] = []
    session = recognizer.session

    class Spy:
        def __call__(self, batch):  # the array of one line, as the runtime gets it
            widths.append(batch.shape[-1])
            return session(batch)

    engine.forget()
    recognizer.session = Spy()
    try:
        ours = engine.read(png)
    finally:
        recognizer.session = session
    assert REC_MIN_WIDTH < 320 and widths and min(widths) == REC_MIN_WIDTH
    assert sum(w < 320 for w in widths) > len(widths) / 2  # most lines are short
    recognizer.rec_image_shape = [3, 48, 320]
    engine.forget()
    try:
        padded = engine.read(png)
    finally:
        recognizer.rec_image_shape = [3, 48, REC_MIN_WIDTH]
        engine.forget()
    assert [x.text for x in ours.lines] == [x.text for x in padded.lines]
    assert {"Publish", "Save draft", "Product name"} <= {x.text for x in ours.lines}


@pytest.mark.slow
def test_openvino_and_onnxruntime_read_the_same_text_and_boxes(bundled_run, tmp_path) -> None:
    import importlib.util

    missing = [b for b in ("openvino", "onnxruntime") if importlib.util.find_spec(b) is None]
    if missing or ocr_available() is not None:
        pytest.skip(f"needs both runtimes and rapidocr; missing: {missing or ocr_available()}")
    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    steps = read_steps(result.run_dir)
    pngs = [(result.run_dir / steps[i].screenshot).read_bytes() for i in (0, len(steps) - 2)]
    openvino, onnxruntime = RapidOcrEngine(backend="openvino"), RapidOcrEngine(backend="onnxruntime")
    assert (openvino.backend, onnxruntime.backend) == ("openvino", "onnxruntime")
    for png in pngs:
        assert openvino.read(png).lines == onnxruntime.read(png).lines


def test_an_image_no_screenshot_can_be_is_refused_before_it_is_decoded() -> None:
    """A run folder is untrusted: a 12000x12000 PNG is 140 KB on disk and 430 MB decoded."""
    import io

    from PIL import Image

    from tools.images import UnreadableImage
    from tools.ocr import _rgb_array
    from tools.ocr_incremental import decode_rgb

    buffer = io.BytesIO()
    Image.new("L", (12000, 12000)).save(buffer, "PNG")
    for decode in (decode_rgb, _rgb_array):
        with pytest.raises(UnreadableImage, match="is 12000x12000 pixels: not a screenshot"):
            decode(buffer.getvalue())


@pytest.mark.slow
def test_the_all_cores_engine_is_had_without_waiting_for_a_read_in_progress(engine) -> None:
    """The worker asks for it when a run ends, while it is still reading a screenshot (a second or two on one
    thread): waiting for that read delayed the switch to all cores by as much."""
    import threading

    got: list[object] = []
    with engine._lock:  # a read in progress holds this
        asking = threading.Thread(target=lambda: got.append(engine.all_cores()))
        asking.start()
        asking.join(timeout=60)
        done = not asking.is_alive()
    asking.join()
    assert done and got and got[0] is not engine
