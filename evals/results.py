"""The eval folder: ``RUNS_DIR/evals/<eval_id>/``, beside the runs it is made of.

- ``plan.json``: the suite as expanded when the eval started (episodes, policy, limits, a digest); a resumed
  eval must expand to the same plan.
- ``episodes.jsonl``: append-only, one JSON line per event: ``started`` (an attempt handed to a worker, with the
  run id it will write) and ``finished`` (the episode's result). Only the eval process writes it. After a kill,
  every episode with a ``finished`` line is done; a torn last line is ignored.
- ``results.csv``: one row per finished episode (rewritten as results arrive).
- ``summary.json``: :class:`evals.stats.EvalSummary`, also kept in the runs index (``evals`` table).

Each episode's run is an ordinary run folder in ``RUNS_DIR`` whose ``run.json`` carries ``eval_id`` and
``episode_id``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from evals.stats import EvalSummary, calibration, summarize
from tracer.evals import CSV_FILE as CSV_FILE
from tracer.evals import EPISODES_FILE as EPISODES_FILE
from tracer.evals import EVAL_ID as EVAL_ID
from tracer.evals import EVALS_DIR as EVALS_DIR
from tracer.evals import PLAN_FILE as PLAN_FILE
from tracer.evals import SUMMARY_FILE as SUMMARY_FILE
from tracer.evals import EpisodeResult, EpisodeStarted, read_eval_events
from tracer.evals import EvalPlan as EvalPlan
from tracer.evals import eval_dir as eval_dir
from tracer.evals import read_plan as read_plan
from tracer.labels import current_labels, read_label_events
from tracer.run_files import atomic_write
from tracer.store import read_steps

CSV_COLUMNS = (
    "episode_id",
    "task",
    "seed",
    "repeat",
    "run_id",
    "status",
    "end_reason",
    "steps",
    "seconds",
    "parse_errors",
    "harness_attempts",
    "harness_errors",
)


def write_plan(folder: Path, plan: EvalPlan) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / PLAN_FILE, plan.model_dump_json(indent=2).encode())


def read_events(folder: Path) -> tuple[dict[str, EpisodeResult], list[EpisodeStarted]]:
    """Finished episodes (the first line per episode counts) and every started attempt, from ``episodes.jsonl``."""
    events = read_eval_events(folder)
    return events.finished, events.started


def append_event(folder: Path, event: EpisodeResult | EpisodeStarted) -> None:
    """One line, one write, made durable; a torn line left by a kill is closed off first."""
    line = event.model_dump_json().encode() + b"\n"
    fd = os.open(folder / EPISODES_FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as the start of a formula


def text_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: task names and end reasons come from task files, pages and models,
    and a cell such as ``=HYPERLINK(...)`` would otherwise run as a formula where results.csv is opened."""
    return "'" + text if text.startswith(FORMULA_START) else text


def write_csv(folder: Path, results: list[EpisodeResult]) -> Path:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow(
            [
                text_cell(r.episode_id),
                text_cell(r.task_name),
                "" if r.seed is None else r.seed,
                r.repeat,
                text_cell(r.run_id or ""),
                text_cell(r.status),
                text_cell(r.end_reason),
                r.steps,
                f"{r.seconds:.2f}",
                r.parse_errors,
                r.harness_attempts,
                text_cell(" | ".join(r.harness_errors)),
            ]
        )
    path = folder / CSV_FILE
    atomic_write(path, out.getvalue().encode("utf-8"))
    return path


def build_summary(runs_dir: Path, results: list[EpisodeResult], planned: int) -> EvalSummary:
    """The summary; where people labelled steps of these runs, their labels say which steps were wrong."""
    summary = summarize(results, planned)
    labelled = _labelled_confidence(runs_dir, results)
    if labelled:
        summary.calibration = calibration(labelled, source="step labels (wrong)")
    return summary


def write_summary(folder: Path, eval_id: str, summary: EvalSummary) -> None:
    atomic_write(folder / SUMMARY_FILE, json.dumps({"eval_id": eval_id, **summary.model_dump(mode="json")}, indent=2).encode())


def now() -> datetime:
    return datetime.now(timezone.utc)


def _labelled_confidence(runs_dir: Path, results: list[EpisodeResult]) -> list[tuple[float, bool]]:
    pairs: list[tuple[float, bool]] = []
    for r in results:
        if not r.run_id or not EVAL_ID.match(r.run_id):
            continue
        run_dir = runs_dir / r.run_id
        events, size = read_label_events(run_dir)
        if not size:
            continue
        verdicts = {c.label.step: c.label.verdict for c in current_labels(events) if not c.deleted}
        if not verdicts:
            continue
        try:
            steps = read_steps(run_dir)
        except (OSError, ValueError):
            continue
        pairs += [(s.confidence, verdicts[s.index] == "wrong") for s in steps if s.confidence is not None and s.index in verdicts]
    return pairs
