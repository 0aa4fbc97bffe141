"""The run page's OCR layer: a step's text lines with their boxes, and a search over every step's OCR text.

- ``GET /api/runs/{id}/ocr/steps/{n}``: the step's OCR status (``off``: the run had no OCR; ``done``,
  ``not_done``, ``error``, ``skipped`` with why) and, when done, its lines (text, box in screenshot pixels,
  score), the screenshot's size and the reasoning-action verdict.
- ``GET /api/runs/{id}/ocr/search?q=word``: the steps whose OCR text contains ``q`` (case-insensitive), each
  with the indices and texts of the matching lines; bounded in query length, steps read and hits returned.

Only ``RUN/ocr/step-NNNN.json`` and ``RUN/ocr/index.json`` are read (the file name is built from an integer;
an ``ocr`` folder that is a link is treated as no OCR). Every text is returned as JSON data: the page inserts it
as text, never as HTML, since a run folder may come from anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from tracer.ocr_files import OCR_DIR, OcrIndex, read_ocr_index, read_ocr_step, step_verdict
from tracer.schema import ConsistencyCheck, RunRecord, StepRecord

MAX_STEP = 1_000_000
MAX_QUERY = 100  # characters of a search
MAX_HITS = 200  # steps returned by one search
MAX_LINES_PER_HIT = 50

OpenRun = Callable[[str], tuple[Path, RunRecord, list[StepRecord]]]


class OcrLineView(BaseModel):
    text: str
    box: tuple[int, int, int, int]
    score: float


class OcrStepView(BaseModel):
    step: int
    status: Literal["off", "done", "not_done", "error", "skipped"]
    reason: str | None = None
    engine: str | None = None
    runtime: str | None = None  # what the engine computed on (ocr/index.json), e.g. "openvino 2026.4.1"
    size: tuple[int, int] | None = None
    lines: list[OcrLineView] = Field(default_factory=list)
    verdict: ConsistencyCheck | None = None


class OcrHit(BaseModel):
    step: int
    lines: list[int]  # indices into the step's lines
    texts: list[str]


class OcrSearch(BaseModel):
    query: str
    status: Literal["off", "searched"]
    hits: list[OcrHit] = Field(default_factory=list)
    steps_read: int = 0
    truncated: bool = False  # more steps matched than MAX_HITS


def ocr_enabled(run_dir: Path) -> bool:
    """Whether the run has an OCR folder of its own (not a link to somewhere else)."""
    folder = run_dir / OCR_DIR
    return folder.is_dir() and not folder.is_symlink()


def step_view(run_dir: Path, step: StepRecord | None, index: int, ocr_index: OcrIndex | None) -> OcrStepView:
    if not ocr_enabled(run_dir):
        return OcrStepView(step=index, status="off", reason="OCR was off for this run")
    record = read_ocr_step(run_dir, index)
    if record is None:
        listed = ocr_index.steps.get(index) if ocr_index is not None else None
        verdict = step.consistency if step is not None else None
        if listed is not None and listed.status != "done":
            return OcrStepView(step=index, status=listed.status, reason=listed.reason, verdict=verdict)
        why = "not read yet" if ocr_index is None else "no OCR file for this step (missing or damaged)"
        return OcrStepView(step=index, status="not_done", reason=why, verdict=verdict)
    lines = [OcrLineView(text=line.text, box=line.box, score=line.score) for line in record.lines]
    verdict = step_verdict(step, record) if step is not None else record.consistency
    runtime = ocr_index.runtime if ocr_index is not None else None
    return OcrStepView(
        step=index, status="done", engine=record.engine, runtime=runtime, size=record.size, lines=lines, verdict=verdict
    )


def step_verdicts(run_dir: Path, steps: list[StepRecord]) -> dict[int, ConsistencyCheck]:
    """Each step's verdict for the page: OCR's where its file has one, else the step's own."""
    enabled = ocr_enabled(run_dir)
    out = {}
    for step in steps:
        verdict = step_verdict(step, read_ocr_step(run_dir, step.index) if enabled else None)
        if verdict is not None:
            out[step.index] = verdict
    return out


def search(run_dir: Path, steps: list[StepRecord], query: str) -> OcrSearch:
    if not ocr_enabled(run_dir):
        return OcrSearch(query=query, status="off")
    needle = query.casefold()
    result = OcrSearch(query=query, status="searched")
    for step in steps:
        record = read_ocr_step(run_dir, step.index)
        if record is None:
            continue
        result.steps_read += 1
        found = [(n, line.text) for n, line in enumerate(record.lines) if needle in line.text.casefold()]
        if not found:
            continue
        if len(result.hits) == MAX_HITS:
            result.truncated = True
            break
        found = found[:MAX_LINES_PER_HIT]
        result.hits.append(OcrHit(step=step.index, lines=[n for n, _ in found], texts=[t for _, t in found]))
    return result


def ocr_router(open_run: OpenRun) -> APIRouter:
    router = APIRouter()

    @router.get("/api/runs/{run_id}/ocr/steps/{step}")
    def ocr_step(run_id: str, step: int = PathParam(ge=0, le=MAX_STEP)) -> Any:
        run_dir, _, steps = open_run(run_id)
        record = next((s for s in steps if s.index == step), None)
        return step_view(run_dir, record, step, read_ocr_index(run_dir) if ocr_enabled(run_dir) else None)

    @router.get("/api/runs/{run_id}/ocr/search")
    def ocr_search(run_id: str, q: str = Query(min_length=1, max_length=MAX_QUERY)) -> Any:
        run_dir, _, steps = open_run(run_id)
        return search(run_dir, steps, q.strip() or q)

    return router
