"""The eval folder's records and how to read them back: ``RUNS_DIR/evals/<eval_id>/``.

``glassbox eval`` (the ``evals`` package) writes these files; the viewer reads them. Both go through the models
here, so the models live below both (``replays`` may not import ``evals``):

- ``plan.json``: :class:`EvalPlan` (the suite as expanded when the eval started: its episodes, in order);
- ``episodes.jsonl``: one JSON line per event, :class:`EpisodeStarted` (an attempt handed to a worker) and
  :class:`EpisodeResult` (the episode's outcome); a torn last line (a kill mid-write) is ignored;
- ``summary.json``: :class:`EvalSummary` with ``eval_id``, also kept in the runs index.

Everything read here may come from elsewhere (a copied runs folder): ids are checked, damaged lines are
counted and skipped, never trusted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Iterable, Literal

from pydantic import BaseModel, Field, ValidationError

from tracer.run_files import whole_lines

EVALS_DIR = "evals"
PLAN_FILE = "plan.json"
EPISODES_FILE = "episodes.jsonl"
MAX_EPISODE_LINE = 2**20  # an episode's event is a few KB; a longer line is not one
CSV_FILE = "results.csv"
SUMMARY_FILE = "summary.json"
EVAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_SUMMARY_BYTES = 8_000_000  # a summary is small (per task and ten bins); anything bigger is not one

Status = Literal["succeeded", "failed", "interrupted", "harness_error"]


# -- the plan --------------------------------------------------------------------------------------------------
class Episode(BaseModel):
    """One task x seed x repeat. ``id`` is stable: the same suite always gives the same ids."""

    id: str
    task_file: Path  # absolute
    task_name: str
    seed: int | None  # the suite's seed for this episode (None: the suite gives none)
    layout_seed: int | None  # what the bundled site gets: the seed for a site task, else None (the task's own)
    repeat: int


class EvalPlan(BaseModel):
    eval_id: str
    suite_name: str
    suite_source: str
    digest: str
    created_at: datetime
    policy: dict[str, object]
    limits: dict[str, object]
    episodes: list[Episode]


# -- episodes.jsonl --------------------------------------------------------------------------------------------
class EpisodeResult(BaseModel):
    """An episode's final line in ``episodes.jsonl``."""

    event: Literal["finished"] = "finished"
    episode_id: str
    task_name: str
    task_file: str
    seed: int | None
    repeat: int
    status: Status
    run_id: str | None
    end_reason: str
    steps: int
    seconds: float
    parse_errors: int
    mismatches: int = 0  # steps whose point did not show what the reasoning named (absent: recorded before)
    harness_attempts: int  # attempts made (1 = no retry)
    harness_errors: list[str] = Field(default_factory=list)  # one per failed attempt
    earlier_runs: list[str] = Field(default_factory=list)  # run folders of attempts that did not count
    step_confidence: list[tuple[float, bool]] = Field(default_factory=list)
    finished_at: datetime


class EpisodeStarted(BaseModel):
    """Written before an attempt is handed to a worker: after a kill, its run folder is known to be abandoned."""

    event: Literal["started"] = "started"
    episode_id: str
    attempt: int
    run_id: str
    at: datetime


class EvalEvents(BaseModel):
    """What ``episodes.jsonl`` holds: finished episodes (the first line per episode counts), started attempts,
    and how many complete lines could not be read (damaged, or not an event)."""

    finished: dict[str, EpisodeResult] = Field(default_factory=dict)
    started: list[EpisodeStarted] = Field(default_factory=list)
    unreadable: int = 0


def read_eval_events(folder: Path) -> EvalEvents:
    path = folder / EPISODES_FILE
    events = EvalEvents()
    try:
        with open(path, "rb") as fh:
            for line in whole_lines(fh, MAX_EPISODE_LINE):  # a torn last line is left out
                if line is not None and not line.strip():
                    continue
                _read_event(line, events)
    except OSError:  # no episode yet, or unreadable
        pass
    return events


def _read_event(line: bytes | None, events: EvalEvents) -> None:
    if line is None:  # longer than any event: a crafted or damaged file
        events.unreadable += 1
        return
    try:
        raw = json.loads(line)
        kind = raw.get("event")
        if kind == "finished":
            result = EpisodeResult.model_validate(raw)
            events.finished.setdefault(result.episode_id, result)
        elif kind == "started":
            events.started.append(EpisodeStarted.model_validate(raw))
        else:
            events.unreadable += 1
    except (ValueError, AttributeError, ValidationError, RecursionError):
        events.unreadable += 1


# -- summary.json ----------------------------------------------------------------------------------------------
class Rate(BaseModel):
    successes: int
    n: int
    rate: float | None
    low: float | None  # 95 % Wilson interval
    high: float | None


class Spread(BaseModel):
    mean: float | None
    median: float | None


class ReliabilityBin(BaseModel):
    low: float
    high: float
    steps: int
    mean_confidence: float | None
    wrong_rate: float | None  # of the steps in this bin, the share that went wrong


class Calibration(BaseModel):
    """How well a step's confidence predicts that it goes wrong. ``steps`` 0: no data (say n/a)."""

    steps: int
    wrong: int
    source: str  # what "wrong" means here
    auroc: float | None  # of (1 - confidence) as a predictor of a wrong step; None: n/a
    bins: list[ReliabilityBin] = Field(default_factory=list)


class TaskSummary(BaseModel):
    task_name: str
    episodes: int
    success: Rate
    harness_errors: int


class EvalSummary(BaseModel):
    """What an eval came to: the JSON kept in the runs index and printed by ``glassbox eval``."""

    episodes: int  # finished episodes
    planned: int
    harness_errors: int
    success: Rate  # over the episodes the harness ran
    per_task: list[TaskSummary]
    steps: Spread
    seconds: Spread
    end_reasons: dict[str, int]
    parse_errors: int
    parse_error_rate: float | None  # parse errors per step
    mismatches: int = 0  # reasoning-action mismatches over all steps (tracer.ocr_files.mismatched_steps)
    mismatch_episodes: int = 0  # episodes with at least one
    retried_episodes: int  # episodes that needed more than one attempt
    calibration: Calibration


# -- the folder ------------------------------------------------------------------------------------------------
def eval_dir(runs_dir: Path, eval_id: str) -> Path:
    """Where eval ``eval_id`` lives; ValueError when ``eval_id`` is not an id (no path can be built from it)."""
    if not EVAL_ID.fullmatch(eval_id):
        raise ValueError(f"{eval_id!r} is not an eval id (letters, digits, '.', '_', '-'; at most 128; no leading '.')")
    return runs_dir / EVALS_DIR / eval_id


def read_plan(folder: Path) -> EvalPlan | None:
    """The plan, or None when there is none; ValueError / OSError when it cannot be read."""
    path = folder / PLAN_FILE
    if not path.is_file():
        return None
    return EvalPlan.model_validate_json(path.read_text(encoding="utf-8"))


def read_summary(folder: Path) -> EvalSummary | None:
    """``summary.json``, or None when it is missing or cannot be read (the summary is derived, never the truth)."""
    path = folder / SUMMARY_FILE
    try:
        if not path.is_file() or path.stat().st_size > MAX_SUMMARY_BYTES:
            return None
        return EvalSummary.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None


def parse_summary(value: object) -> EvalSummary | None:
    """A summary as kept in the runs index (a dict), or None when it is not one."""
    try:
        return EvalSummary.model_validate(value)
    except ValidationError:
        return None


_EPISODE_ID = re.compile(r"(.+)\.s(?:\d+|-)\.r\d+")


def task_key(episode_id: str, task_name: str) -> str:
    """The task file an episode comes from, as its id names it: ``publish-product.s3.r0`` -> ``publish-product``
    (a suite gives each task file a slug of its own, even when two files share a task name); the task's name
    for an id of another form (a hand-written results file)."""
    found = _EPISODE_ID.fullmatch(episode_id)
    return found.group(1) if found else task_name


def task_titles(episodes: Iterable[tuple[str, str]]) -> dict[str, str]:
    """(episode id, task name) pairs -> what to call each task file (:func:`task_key`): its task's name, or where
    files share a name, the name with the file's slug, so that different files never count as one task."""
    names: dict[str, str] = {}
    for episode_id, name in episodes:
        names.setdefault(task_key(episode_id, name), name)
    shared = Counter(names.values())
    return {key: name if shared[name] == 1 or key == name else f"{name} ({key})" for key, name in names.items()}
