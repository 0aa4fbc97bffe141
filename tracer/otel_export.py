"""A recorded run as one trace (``glassbox export otel``): its run, steps, checks, labels and OCR verdicts, with the
times they were recorded. The live export (:mod:`agent.otel`) sends the same spans as the run goes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from tracer.labels import current_labels, read_label_events
from tracer.ocr_files import OCR_DIR, read_ocr_step, step_verdict
from tracer.otel_sdk import SpanTree
from tracer.otel_spans import Conventions, MediaRef, finish_run_span, run_span, scrub_span, step_spans
from tracer.secrets import Scrubber
from tracer.store import UnreadableStep, read_run, read_step_entries, split_entries


class RunExport(BaseModel):
    """What :func:`export_run` sent of one run: its spans, and the lines of its steps.jsonl it could not read."""

    spans: int
    unreadable: list[UnreadableStep]


def export_run(
    run_dir: Path,
    tree: SpanTree,
    conv: Conventions,
    *,
    scrubber: Scrubber | None = None,
    media: MediaRef | None = None,
) -> RunExport:
    """Emit ``run_dir`` into ``tree``. A run still going (or one that crashed without ending) is closed at its last
    step's end. Lines of steps.jsonl that cannot be read are left out, counted on the run's span
    (``glassbox.run.unreadable_step_lines``) and returned, so that the trace does not pass for the whole run."""
    scrub = scrubber or Scrubber([])
    run = read_run(run_dir)
    steps, damaged = split_entries(read_step_entries(run_dir))
    labels = current_labels(read_label_events(run_dir)[0]) if (run_dir / "labels.jsonl").is_file() else []
    media = media or MediaRef(run_dir=str(run_dir.resolve()))
    root = run_span(run, conv)
    tree.emit(scrub_span(root.model_copy(deep=True), scrub))
    count = 1
    last_end = root.start
    has_ocr = (run_dir / OCR_DIR).is_dir()
    for step in steps:
        verdict = step_verdict(step, read_ocr_step(run_dir, step.index) if has_ocr else None)
        for span in step_spans(run, step, conv, media=media, verdict=verdict, labels=labels):
            if span.end is not None:
                last_end = max(last_end, span.end)
            tree.emit(scrub_span(span, scrub))
            count += 1
    finish_run_span(root, run, end=run.ended_at or last_end)
    if damaged:
        root.attributes["glassbox.run.unreadable_step_lines"] = len(damaged)
    tree.emit(scrub_span(root, scrub))
    return RunExport(spans=count, unreadable=damaged)
