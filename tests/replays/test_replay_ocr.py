"""Replay's text check: the OCR text under a recorded point against the text there now (a stub reader here)."""

from __future__ import annotations

from pathlib import Path

from replays.ocr_check import recorded_text, text_check
from tools.ocr import OcrLine, OcrResult
from tools.ocr_views import PointText
from tracer.ocr_files import OcrStepFile, write_ocr_step
from tracer.secrets import Scrubber

SAVE = OcrLine(text="Save", box=(218, 311, 285, 344), score=0.99)


def record(run_dir: Path, under: OcrLine | None, *, secrets: tuple[str, ...] = (), step: int = 7) -> None:
    point = PointText(point=(252, 327), under=under, nearest=under or SAVE, description="clicked it")
    lines = [under] if under is not None else [SAVE]
    file = OcrStepFile(step=step, screenshot="s.png", engine="stub", size=(1024, 768), ms=1.0, lines=lines, point=point)
    write_ocr_step(run_dir, file, Scrubber(secrets))


def screen(*lines: OcrLine) -> OcrResult:
    return OcrResult(engine="stub", size=(1024, 768), lines=list(lines))


def reader(result: OcrResult | None, asked: list[tuple[str, bytes]] | None = None):
    def read(engine: str, png: bytes) -> OcrResult | None:
        if asked is not None:
            asked.append((engine, png))
        return result

    return read


def test_the_same_text_under_the_point_passes(tmp_path: Path) -> None:
    record(tmp_path, SAVE)
    recorded = recorded_text(tmp_path, 7)
    assert recorded is not None
    asked: list[tuple[str, bytes]] = []
    assert text_check(recorded, b"now.png", reader(screen(SAVE), asked)) == ""
    assert asked == [("stub", b"now.png")]  # the recording's engine, on the live screenshot
    # case, spaces and punctuation vary between reads of the same word: not a change
    moved = OcrLine(text=" save.", box=(220, 312, 280, 340), score=0.9)
    assert text_check(recorded, b"now.png", reader(screen(moved))) == ""


def test_a_different_word_under_the_point_names_both_texts(tmp_path: Path) -> None:
    record(tmp_path, SAVE)
    recorded = recorded_text(tmp_path, 7)
    assert recorded is not None
    delete = OcrLine(text="Delete", box=(218, 311, 285, 344), score=0.99)
    assert text_check(recorded, b"now.png", reader(screen(delete))) == (
        "the text under (252, 327) changed: the recording read 'Save' there, now 'Delete'"
    )
    elsewhere = OcrLine(text="Save", box=(600, 311, 667, 344), score=0.99)  # the word moved away from the point
    assert text_check(recorded, b"now.png", reader(screen(elsewhere))) == (
        "the text under (252, 327) changed: the recording read 'Save' there, now OCR reads no text there"
    )


def test_the_same_text_cut_into_lines_otherwise_is_not_a_change(tmp_path: Path) -> None:
    """Seen in CI: the recording read the file input as 'Choose File' and '|No file chosen', the replay (the mouse
    now over the input) as one line 'Choose FileNo file chosen'; the replay diverged there."""
    apart = OcrLine(text="|No file chosen", box=(351, 504, 447, 521), score=0.98)
    point = PointText(point=(396, 513), under=apart, nearest=apart, description="clicked it")
    file = OcrStepFile(step=18, screenshot="s.png", engine="stub", size=(1280, 800), ms=1.0, lines=[apart], point=point)
    write_ocr_step(tmp_path, file, Scrubber([]))
    recorded = recorded_text(tmp_path, 18)
    assert recorded is not None
    merged = OcrLine(text="Choose FileNo file chosen", box=(270, 502, 447, 522), score=0.97)
    assert text_check(recorded, b"now.png", reader(screen(merged))) == ""
    # other words in a box around it, or the same words in a box that does not hold the recorded one, are a change
    other = OcrLine(text="Choose File Upload", box=(270, 502, 447, 522), score=0.97)
    assert "now 'Choose File Upload'" in (text_check(recorded, b"now.png", reader(screen(other))) or "")
    shifted = OcrLine(text="Choose FileNo file chosen", box=(380, 502, 560, 522), score=0.97)
    assert "now 'Choose FileNo file chosen'" in (text_check(recorded, b"now.png", reader(screen(shifted))) or "")


def test_no_comparison_without_a_recorded_line_or_an_engine(tmp_path: Path) -> None:
    assert recorded_text(tmp_path, 7) is None  # no OCR recorded: the check is not made
    record(tmp_path, None)
    assert recorded_text(tmp_path, 7) is None  # the point was on no text
    record(tmp_path, OcrLine(text="pw Xq7-tulip-4821", box=(0, 0, 50, 20), score=0.9), secrets=("Xq7-tulip-4821",))
    assert recorded_text(tmp_path, 7) is None  # masked by the scrubber: nothing to compare with
    record(tmp_path, SAVE)
    recorded = recorded_text(tmp_path, 7)
    assert recorded is not None and text_check(recorded, b"now.png", reader(None)) is None  # engine missing here
