"""Replay's text check: is the text under a recorded step's point (its OCR file) still the text there now?

A screen can look alike pixel for pixel around a point and still say something else there ("Save" became
"Delete" in the same button), and a desktop has no element tree to ask. When the recorded step was read by OCR
(``RUN/ocr/step-NNNN.json``, a line under its point), the live screenshot is read with the same engine and the
line under the same point compared, ignoring case, spaces and punctuation (OCR of the same word varies there),
and how the text was cut into lines (a button and the words beside it may be one line or two).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tools.ocr import OcrLine, OcrResult, get_engine, ocr_available
from tools.ocr_views import point_text
from tracer.ocr_files import OcrStepFile, read_ocr_step
from tracer.secrets import MASK

ReadScreen = Callable[[str, bytes], "OcrResult | None"]  # (engine name, PNG) -> what it read; None: engine missing


def read_with_engine(engine: str, png: bytes) -> OcrResult | None:
    """The live screenshot read by the recording's engine; None when that engine cannot run here."""
    if ocr_available(engine) is not None:
        return None
    return get_engine(engine).read(png)


def recorded_text(source_dir: Path, step_index: int) -> OcrStepFile | None:
    """The step's OCR file when it holds a line under the executed point that a check can compare with (not one
    the scrubber masked)."""
    record = read_ocr_step(source_dir, step_index)
    if record is None or record.point is None or record.point.under is None or MASK in record.point.under.text:
        return None
    return record


def _words(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def text_check(recorded: OcrStepFile, now_png: bytes, read: ReadScreen) -> str | None:
    """ "" when the same text is under the recorded point now, a reason naming both texts when not, None when it
    cannot be told (the engine is missing here)."""
    assert recorded.point is not None and recorded.point.under is not None  # recorded_text
    now = read(recorded.engine, now_png)
    if now is None:
        return None
    point = recorded.point.point
    was = recorded.point.under.text
    under = point_text(now, point).under
    if under is None:
        return f"the text under {point} changed: the recording read {was!r} there, now OCR reads no text there"
    if _words(under.text) != _words(was) and not _resegmented(recorded.point.under, under):
        return f"the text under {point} changed: the recording read {was!r} there, now {under.text!r}"
    return ""


RESEGMENT_PX = 6  # how far a line's box may stick out of the other's and still be the same text cut otherwise


def _resegmented(was: OcrLine, now: OcrLine) -> bool:
    """The same text cut into lines otherwise: OCR may read a button and the words beside it as one line or as two
    ('Choose File' and 'No file chosen', or 'Choose FileNo file chosen', by the pixels around them, a hover or
    a focus ring). The shorter line's words are inside the longer's, and its box inside the longer's box."""
    short, long = sorted((was, now), key=lambda line: len(_words(line.text)))
    left, top, right, bottom = short.box
    outer_left, outer_top, outer_right, outer_bottom = long.box
    pad = RESEGMENT_PX
    inside = left >= outer_left - pad and top >= outer_top - pad and right <= outer_right + pad and bottom <= outer_bottom + pad
    return bool(_words(short.text)) and _words(short.text) in _words(long.text) and inside
