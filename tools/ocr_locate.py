"""Finding a named text on a screenshot by OCR: how a desktop script's ``target: {text: ...}`` resolves.

::

    match = find_text(get_engine().read(png), "Save")   # TextMatch: the line, its box, score, how it matched
    x, y = match.center

The best line is the first tier that has any: the line reads exactly the text, then the same ignoring case,
then it contains the text (ignoring case). Inside a tier, a higher OCR score wins, then the line higher up,
then further left; in the ``contains`` tier a line with fewer extra characters comes first ("Save" finds
"Save" before "Save draft"). Nothing found is a :class:`TextNotFound` naming the text and the closest lines read.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tools.errors import StepError
from tools.ocr import OcrEngine, OcrLine, OcrResult

MatchKind = Literal["exact", "case-insensitive", "contains"]
CLOSEST_SHOWN = 3


class TextNotFound(StepError):
    """No line read on the screen matches the text a target names."""


class TextMatch(BaseModel):
    """How a text target was resolved: recorded with the step (``policy_state["target"]``) as its evidence."""

    model_config = ConfigDict(frozen=True)

    by: Literal["ocr"] = "ocr"
    engine: str
    text: str  # the text the target named
    match: MatchKind
    line: str  # the line OCR read
    box: tuple[int, int, int, int]  # the line's box in screenshot pixels: left, top, right, bottom
    score: float
    ocr_ms: float = 0.0

    @property
    def center(self) -> tuple[float, float]:
        left, top, right, bottom = self.box
        return (left + right) / 2, (top + bottom) / 2


def _normal(text: str) -> str:
    return " ".join(text.split())


def _rank(kind: MatchKind, wanted: str, line: OcrLine) -> tuple[float, ...]:
    extra = len(_normal(line.text)) - len(wanted) if kind == "contains" else 0
    return (extra, -line.score, line.box[1], line.box[0])


def find_text(result: OcrResult, text: str) -> TextMatch:
    """The line of ``result`` that best matches ``text`` (see the module's doc); :class:`TextNotFound` if none."""
    wanted = _normal(text)
    if not wanted:
        raise TextNotFound("a text target needs some text to look for, not an empty string")
    folded = wanted.casefold()
    tiers: list[tuple[MatchKind, Any]] = [
        ("exact", lambda line: line == wanted),
        ("case-insensitive", lambda line: line.casefold() == folded),
        ("contains", lambda line: folded in line.casefold()),
    ]
    for kind, test in tiers:
        hits = [line for line in result.lines if test(_normal(line.text))]
        if hits:
            best = min(hits, key=lambda line: _rank(kind, wanted, line))
            return TextMatch(
                engine=result.engine, text=text, match=kind, line=best.text, box=best.box, score=best.score, ocr_ms=result.ms
            )
    raise TextNotFound(_not_found(result, wanted))


def _not_found(result: OcrResult, wanted: str) -> str:
    if not result.lines:
        return f"no text on the screen reads {wanted!r}: OCR ({result.engine}) read no text at all"
    folded = wanted.casefold()
    scored = sorted(
        result.lines,
        key=lambda line: -difflib.SequenceMatcher(None, folded, _normal(line.text).casefold()).ratio(),
    )
    closest = ", ".join(repr(line.text) for line in scored[:CLOSEST_SHOWN])
    return (
        f"no text on the screen reads {wanted!r}: OCR ({result.engine}) read {len(result.lines)} line(s); the closest: {closest}"
    )


class OcrTextLocator:
    """Resolves text targets on screenshots with one OCR engine (the ``tools.ocr`` interface)."""

    def __init__(self, engine: OcrEngine) -> None:
        self.engine = engine

    def __call__(self, text: str, screenshot_png: bytes) -> TextMatch:
        return find_text(self.engine.read(screenshot_png), text)
