"""OCR files of a run folder: what the screen said at each step, written off the loop's critical path.

::

    RUN/ocr/step-0003.json   OcrStepFile: the step's text lines (boxes in screenshot pixels, scores), layout
                             regions, the text at the executed point, the reasoning-action verdict, and how
                             the screenshot was read (full, partial: the rectangles read, or reused)
    RUN/ocr/index.json       OcrIndex, written when the run ends: every step's OCR status (done, not done, error,
                             skipped), the mismatches, and how long after the run's end OCR finished

No ``ocr/`` folder: OCR was off for the run. Every text in these files went through the run's scrubber before
it was written (a secret typed into a field is on the screen, so OCR reads it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from tools.ocr import OcrLine
from tools.ocr_incremental import ReadInfo
from tools.ocr_views import Layout, PointText
from tracer.run_files import atomic_write
from tracer.schema import ConsistencyCheck, StepRecord
from tracer.secrets import MASK, Scrubber

OCR_DIR = "ocr"
INDEX_FILE = "index.json"
MAX_FILE = 5_000_000  # an OCR file larger than this is not ours

OcrStatus = Literal["done", "not_done", "error", "skipped"]


class OcrStepFile(BaseModel):
    """``ocr/step-NNNN.json``."""

    step: int
    screenshot: str  # the image read, relative to the run folder
    engine: str
    size: tuple[int, int]
    ms: float  # the engine's time for this image
    lines: list[OcrLine] = Field(default_factory=list)
    layout: Layout = Field(default_factory=Layout)
    point: PointText | None = None  # the executed point's text (acting steps with a point)
    consistency: ConsistencyCheck | None = None  # with the OCR text and the DOM element's
    read: ReadInfo | None = None  # how the screenshot was read: full, partial (the crops) or reused (None: full)


class OcrStepStatus(BaseModel):
    status: OcrStatus
    file: str | None = None  # relative to the run folder, when done
    reason: str | None = None  # not done, error, skipped: why
    verdict: Literal["match", "mismatch", "unknown"] | None = None


class OcrIndex(BaseModel):
    """``ocr/index.json``: written once, when the run has ended and OCR caught up (or the wait ran out)."""

    engine: str
    # What the engine computed on, e.g. "openvino 2026.4.1" (rapidocr runs the same models on either runtime; the
    # text is the same, the time is not); None: not said (an engine of another kind, or recorded before).
    runtime: str | None = Field(default=None, max_length=200)
    steps_setting: Literal["all", "acting"]
    steps: dict[int, OcrStepStatus] = Field(default_factory=dict)
    mismatches: list[int] = Field(default_factory=list)  # steps whose verdict (OCR's, else the step's) is mismatch
    caught_up_after_end_s: float | None = None  # None: it had not caught up when the wait ran out
    waited_s: float = 0.0
    not_done: int = 0
    reads: dict[str, int] = Field(default_factory=dict)  # how many steps were read in full, partly, or reused
    # How the steps still queued at the run's end were read: "all cores" (the machine was otherwise idle) or "one
    # thread" (it was busy, or the engine has no all-cores copy); None: nothing was left to read at the end.
    catch_up_on: Literal["all cores", "one thread"] | None = None
    read_after_run: list[int] = Field(default_factory=list)  # steps read later by `glassbox runs ocr`


def ocr_step_path(index: int) -> str:
    return f"{OCR_DIR}/step-{index:04d}.json"


def scrub_lines(lines: list[OcrLine], scrubber: Scrubber) -> list[OcrLine]:
    """The lines with every secret masked; a line that shows a secret (or a long fragment of one) in another
    case or spacing (OCR may read ``XQ7-TULIP 4821``, a page may draw it so) is masked whole."""
    if not scrubber:
        return lines
    out = []
    for line in lines:
        text = MASK if scrubber.shows_in_any_case(line.text) else scrubber.scrub_text(line.text)
        out.append(line if text == line.text else line.model_copy(update={"text": text}))
    return out


def write_ocr_step(run_dir: Path, record: OcrStepFile, scrubber: Scrubber) -> str:
    """Write the step's OCR file (scrubbed, atomically); returns its path relative to the run folder."""
    record = record.model_copy(update={"lines": scrub_lines(record.lines, scrubber)})
    if record.point is not None:
        point = record.point
        fixed = {k: scrub_lines([v], scrubber)[0] for k in ("under", "nearest") if (v := getattr(point, k)) is not None}
        record = record.model_copy(update={"point": point.model_copy(update=fixed)})
    record = scrubber.scrub(record)  # region labels, the description, the verdict's strings
    relative = ocr_step_path(record.step)
    (run_dir / OCR_DIR).mkdir(exist_ok=True)
    atomic_write(run_dir / relative, record.model_dump_json().encode())
    return relative


def write_ocr_index(run_dir: Path, index: OcrIndex) -> None:
    (run_dir / OCR_DIR).mkdir(exist_ok=True)
    atomic_write(run_dir / OCR_DIR / INDEX_FILE, index.model_dump_json(indent=1).encode())


def _read(path: Path) -> bytes | None:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FILE:
            return None
        return path.read_bytes()
    except OSError:
        return None


def read_ocr_index(run_dir: Path) -> OcrIndex | None:
    """The run's OCR index; None when OCR was off, the run has not ended, or the file is damaged."""
    data = _read(run_dir / OCR_DIR / INDEX_FILE)
    if data is None:
        return None
    try:
        return OcrIndex.model_validate_json(data)
    except ValidationError:
        return None


def read_ocr_step(run_dir: Path, index: int) -> OcrStepFile | None:
    """Step ``index``'s OCR file; None when it was not read (yet), or the file is damaged."""
    data = _read(run_dir / ocr_step_path(index))
    if data is None:
        return None
    try:
        return OcrStepFile.model_validate_json(data)
    except ValidationError:
        return None


def step_verdict(step: StepRecord, ocr: OcrStepFile | None) -> ConsistencyCheck | None:
    """The step's reasoning-action verdict: OCR's (which also weighs the DOM element) when there is one and it
    is not unknown, else the one recorded with the step."""
    if ocr is not None and ocr.consistency is not None and ocr.consistency.verdict != "unknown":
        return ocr.consistency
    return step.consistency or (ocr.consistency if ocr is not None else None)


def mismatched_steps(run_dir: Path, steps: list[StepRecord]) -> list[int]:
    """Indices of the steps whose verdict is mismatch (OCR files read where they exist)."""
    index = read_ocr_index(run_dir)
    if index is not None:  # the OCR worker judged every step it was told about, the step's verdict included
        return sorted(index.mismatches)
    found = []
    for step in steps:
        verdict = step_verdict(step, read_ocr_step(run_dir, step.index) if (run_dir / OCR_DIR).is_dir() else None)
        if verdict is not None and verdict.verdict == "mismatch":
            found.append(step.index)
    return found
