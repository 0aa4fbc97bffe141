"""Text targets found by OCR: which line wins, and what a miss says (no model: OcrResults made by hand)."""

from __future__ import annotations

import pytest

from tools.errors import StepError
from tools.ocr import OcrLine, OcrResult
from tools.ocr_locate import OcrTextLocator, TextNotFound, find_text


def read(*lines: tuple[str, tuple[int, int, int, int], float]) -> OcrResult:
    return OcrResult(engine="stub", size=(1000, 800), lines=[OcrLine(text=t, box=b, score=s) for t, b, s in lines], ms=12.5)


SCREEN = read(
    ("Save draft", (10, 10, 110, 30), 0.99),
    ("SAVE", (10, 50, 60, 70), 0.97),
    ("Save", (300, 400, 360, 420), 0.91),
    ("City (城市)", (20, 200, 120, 225), 0.98),
    ("Send me the  newsletter", (200, 260, 430, 285), 0.95),
)


def test_exact_beats_case_insensitive_beats_contains() -> None:
    match = find_text(SCREEN, "Save")
    assert (match.match, match.line, match.box, match.score) == ("exact", "Save", (300, 400, 360, 420), 0.91)
    assert match.center == (330, 410) and match.by == "ocr" and match.engine == "stub" and match.ocr_ms == 12.5
    assert (find_text(SCREEN, "save").match, find_text(SCREEN, "save").line) == ("case-insensitive", "SAVE")
    city = find_text(SCREEN, "city")
    assert (city.match, city.line, city.text) == ("contains", "City (城市)", "city")
    # whitespace is compared collapsed, on both sides
    assert find_text(SCREEN, " Send me the newsletter ").match == "exact"


def test_ties_go_to_the_shorter_line_then_the_score_then_the_position() -> None:
    assert find_text(SCREEN, "draft").line == "Save draft"
    screen = read(
        ("Sign in now", (10, 300, 90, 320), 0.99),
        ("Sign in", (500, 300, 560, 320), 0.90),
        ("Sign in", (10, 100, 60, 120), 0.90),
        ("Sign in", (400, 100, 460, 120), 0.90),
        ("Sign in", (10, 600, 60, 620), 0.95),
    )
    assert find_text(screen, "Sign in").box == (10, 600, 60, 620)  # the highest score
    tied = read(("Sign in", (500, 300, 560, 320), 0.9), ("Sign in", (400, 100, 460, 120), 0.9))
    assert find_text(tied, "Sign in").box == (400, 100, 460, 120)  # the same score: the higher line
    side = read(("Sign in", (400, 100, 460, 120), 0.9), ("Sign in", (10, 102, 60, 122), 0.9))
    assert find_text(side, "Sign in").box == (400, 100, 460, 120)  # higher by 2 px still wins over further left
    row = read(("Sign in", (400, 100, 460, 120), 0.9), ("Sign in", (10, 100, 60, 120), 0.9))
    assert find_text(row, "Sign in").box == (10, 100, 60, 120)  # the same row: the leftmost
    assert find_text(read(("Sign in now", (0, 0, 9, 9), 0.99), ("Sign in!", (0, 50, 9, 59), 0.5)), "sign in").line == ("Sign in!")


def test_a_miss_names_the_text_and_the_closest_lines() -> None:
    with pytest.raises(TextNotFound) as caught:
        find_text(SCREEN, "Publish")
    message = str(caught.value)
    assert isinstance(caught.value, StepError)
    assert message.startswith("no text on the screen reads 'Publish': OCR (stub) read 5 line(s); the closest: ")
    assert message.count("'") == 2 + 2 * 3  # the text and three lines, no more
    with pytest.raises(TextNotFound, match="the closest: 'Save draft'"):
        find_text(SCREEN, "Save drafts")
    with pytest.raises(TextNotFound, match=r"no text on the screen reads 'OK': OCR \(stub\) read no text at all"):
        find_text(read(), "OK")
    with pytest.raises(TextNotFound, match="needs some text"):
        find_text(SCREEN, "  ")


def test_the_locator_reads_the_screenshot_with_its_engine() -> None:
    seen: list[bytes] = []

    class Stub:
        name = "stub"

        def read(self, image: bytes) -> OcrResult:
            seen.append(image)
            return SCREEN

    match = OcrTextLocator(Stub())("Save", b"png bytes")
    assert seen == [b"png bytes"] and match.box == (300, 400, 360, 420)


def test_the_real_engine_finds_the_shop_button_the_recorded_click_landed_on(bundled_run, tmp_path) -> None:
    from tests.conftest import copy_bundled_run
    from tools.ocr import get_engine, ocr_available
    from tracer import read_steps

    if ocr_available() is not None:
        pytest.skip(f"needs the ocr extra: {ocr_available()}")
    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    steps = read_steps(result.run_dir)
    step = next(s for s in steps if s.element is not None and s.element.text == "Publish" and s.evidence is not None)
    locate = OcrTextLocator(get_engine())
    png = (result.run_dir / step.screenshot).read_bytes()
    found = locate("publish", png)
    assert (found.match, found.line, found.engine) == ("case-insensitive", "Publish", "rapidocr")
    left, top, right, bottom = found.box
    x, y = step.evidence.point  # where the browser's click on the DOM element landed
    assert left <= x <= right and top <= y <= bottom
    with pytest.raises(TextNotFound, match=r"no text on the screen reads 'Unpublish everything': OCR \(rapidocr\) read"):
        locate("Unpublish everything", png)
