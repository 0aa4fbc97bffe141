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
import re
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ValidationError

from evals.episode import EpisodeResult, EpisodeStarted
from evals.stats import EvalSummary, calibration, summarize
from evals.suite import Episode
from tracer.labels import current_labels, read_label_events
from tracer.run_files import atomic_write
from tracer.store import read_steps

EVALS_DIR = "evals"
PLAN_FILE = "plan.json"
EPISODES_FILE = "episodes.jsonl"
CSV_FILE = "results.csv"
SUMMARY_FILE = "summary.json"
EVAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
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


class EvalPlan(BaseModel):
    eval_id: str
    suite_name: str
    suite_source: str
    digest: str
    created_at: datetime
    policy: dict[str, object]
    limits: dict[str, object]
    episodes: list[Episode]


def eval_dir(runs_dir: Path, eval_id: str) -> Path:
    if not EVAL_ID.match(eval_id):
        raise ValueError(f"{eval_id!r} is not an eval id (letters, digits, '.', '_', '-'; at most 128; no leading '.')")
    return runs_dir / EVALS_DIR / eval_id


def read_plan(folder: Path) -> EvalPlan | None:
    path = folder / PLAN_FILE
    if not path.is_file():
        return None
    return EvalPlan.model_validate_json(path.read_text(encoding="utf-8"))


def write_plan(folder: Path, plan: EvalPlan) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / PLAN_FILE, plan.model_dump_json(indent=2).encode())


def read_events(folder: Path) -> tuple[dict[str, EpisodeResult], list[EpisodeStarted]]:
    """Finished episodes (the first line per episode counts) and every started attempt, from ``episodes.jsonl``."""
    path = folder / EPISODES_FILE
    finished: dict[str, EpisodeResult] = {}
    started: list[EpisodeStarted] = []
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError:
        data = b""
    for line in data.split(b"\n")[:-1]:  # after the last newline: a torn line, or nothing
        try:
            raw = json.loads(line)
            if raw.get("event") == "finished":
                result = EpisodeResult.model_validate(raw)
                finished.setdefault(result.episode_id, result)
            elif raw.get("event") == "started":
                started.append(EpisodeStarted.model_validate(raw))
        except (ValueError, AttributeError, ValidationError):
            continue
    return finished, started


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


def write_csv(folder: Path, results: list[EpisodeResult]) -> Path:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow(
            [
                r.episode_id,
                r.task_name,
                "" if r.seed is None else r.seed,
                r.repeat,
                r.run_id or "",
                r.status,
                r.end_reason,
                r.steps,
                f"{r.seconds:.2f}",
                r.parse_errors,
                r.harness_attempts,
                " | ".join(r.harness_errors),
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
