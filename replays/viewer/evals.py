"""The eval pages: ``/evals`` (every eval), ``/evals/{id}`` (its figures and the tasks x episodes grid) and
``/evals/compare?a=&b=`` (two evals side by side: which episodes flipped, and where their runs first differ).

An eval folder (``RUNS_DIR/evals/<id>/``) is read through ``tracer.evals``; like a run folder it may come from
elsewhere: ids are checked before any path is built, the folder must be inside the runs folder, damaged lines
of ``episodes.jsonl`` are counted and shown as such, and a huge eval is shown a page of episodes at a time.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from tracer.evals import (
    EPISODES_FILE,
    EVALS_DIR,
    PLAN_FILE,
    SUMMARY_FILE,
    EpisodeResult,
    EvalPlan,
    EvalSummary,
    eval_dir,
    parse_summary,
    read_eval_events,
    read_plan,
    read_summary,
    task_key,
    task_titles,
)
from tracer.index import RunIndex
from tracer.store import read_steps

if TYPE_CHECKING:
    from replays.diff import RunDiff

GRID_PAGE = 2_000  # episodes on one eval page (and rows on one compare page)
MAX_DIFFS = 200  # flipped episodes whose runs are compared step by step on one compare page
MAX_LISTED = 1_000  # evals on the list page
_RUN_ID = re.compile(r"\w[\w.-]{0,199}")  # as app.py: no glob or path characters
_RUN_FILE = "run.json"

CellStatus = Literal["succeeded", "failed", "interrupted", "harness_error", "not_finished"]
STATUS_TEXT = {
    "succeeded": "succeeded",
    "failed": "failed",
    "interrupted": "interrupted",
    "harness_error": "harness error",
    "not_finished": "not finished",
}


@dataclass
class Cell:
    """One episode in the grid (or one side of a compared episode)."""

    episode_id: str
    task_name: str
    label: str
    status: CellStatus
    run_id: str | None  # a well-formed run id (``link_runs`` keeps it only where its folder exists)
    steps: int | None = None
    seconds: float | None = None
    end_reason: str = ""

    @property
    def title(self) -> str:
        parts = [self.episode_id, STATUS_TEXT[self.status]]
        if self.steps is not None:
            parts.append(f"{self.steps} step{'s' if self.steps != 1 else ''}")
        if self.seconds is not None:
            parts.append(f"{self.seconds:.1f} s")
        return " · ".join(parts) + (f"\n{self.end_reason[:300]}" if self.end_reason else "")


@dataclass
class GridRow:
    task_name: str
    cells: list[Cell]

    @property
    def succeeded(self) -> int:
        return sum(1 for c in self.cells if c.status == "succeeded")

    @property
    def ran(self) -> int:
        """Episodes whose run came to an outcome (the success rate's denominator)."""
        return sum(1 for c in self.cells if c.status in ("succeeded", "failed", "interrupted"))


@dataclass
class LoadedEval:
    eval_id: str
    folder: Path
    suite: str
    created_at: datetime | None
    plan: EvalPlan | None
    plan_problem: str | None  # plan.json is there but cannot be read
    summary: EvalSummary | None
    cells: list[Cell]  # every episode, plan order first
    unreadable: int  # damaged lines of episodes.jsonl
    finished: int  # episodes with a result line

    @property
    def summary_behind(self) -> bool:
        """The summary counts fewer finished episodes than episodes.jsonl holds (a running or stopped eval)."""
        return self.summary is not None and self.summary.episodes != self.finished


@dataclass
class ListedEval:
    eval_id: str
    suite: str
    updated_at: datetime | None
    summary: EvalSummary | None


@dataclass
class Compared:
    episode_id: str
    task_name: str
    a: Cell
    b: Cell
    change: Literal["fixed", "broke", "changed", "same"]
    diff: RunDiff | None = None
    diff_problem: str | None = None


@dataclass
class Comparison:
    rows: list[Compared] = field(default_factory=list)
    only_a: int = 0
    only_b: int = 0
    fixed: int = 0
    broke: int = 0
    changed: int = 0
    diffed: int = 0
    a_succeeded: int = 0  # of the episodes in both
    b_succeeded: int = 0


def eval_router(runs_dir: Path, templates: Jinja2Templates) -> APIRouter:
    """The eval pages over ``runs_dir`` (resolved), rendered with the viewer's templates."""
    router = APIRouter()
    templates.env.filters["pct"] = _pct
    templates.env.filters["num"] = _num
    templates.env.globals["status_text"] = STATUS_TEXT

    @router.get("/evals", response_class=HTMLResponse)
    def evals_page(request: Request) -> Response:
        listed = list_evals(runs_dir)
        return templates.TemplateResponse(
            request,
            "evals.html",
            {"evals": listed[:MAX_LISTED], "total": len(listed), "max_listed": MAX_LISTED, "runs_dir": str(runs_dir)},
        )

    # Declared before /evals/{eval_id}: "compare" is a page, not an eval.
    @router.get("/evals/compare", response_class=HTMLResponse)
    def compare_page(
        request: Request,
        a: str = Query(..., max_length=200),
        b: str = Query(..., max_length=200),
        page: int = Query(1, ge=1, le=100_000),
    ) -> Response:
        first, second = open_eval(runs_dir, a), open_eval(runs_dir, b)
        comparison = compare(runs_dir, first, second)
        start = (page - 1) * GRID_PAGE
        rows = comparison.rows[start : start + GRID_PAGE]
        link_runs(runs_dir, [cell for row in rows for cell in (row.a, row.b)])
        return templates.TemplateResponse(
            request,
            "eval_compare.html",
            {
                "a": first,
                "b": second,
                "cmp": comparison,
                "rows": rows,
                "first": start + 1,
                "page": page,
                "page_size": GRID_PAGE,
                "max_diffs": MAX_DIFFS,
            },
        )

    @router.get("/evals/{eval_id}", response_class=HTMLResponse)
    def eval_page(request: Request, eval_id: str, page: int = Query(1, ge=1, le=100_000)) -> Response:
        loaded = open_eval(runs_dir, eval_id)
        start = (page - 1) * GRID_PAGE
        shown = loaded.cells[start : start + GRID_PAGE]
        link_runs(runs_dir, shown)
        others = [e for e in list_evals(runs_dir) if e.eval_id != loaded.eval_id][:MAX_LISTED]
        return templates.TemplateResponse(
            request,
            "eval.html",
            {
                "ev": loaded,
                "s": loaded.summary,
                "rows": grid(shown),
                "counts": _counts(loaded.cells),
                "first": start + 1,
                "last": start + len(shown),
                "page": page,
                "page_size": GRID_PAGE,
                "others": others,
            },
        )

    return router


# -- reading -----------------------------------------------------------------------------------------------------
def list_evals(runs_dir: Path) -> list[ListedEval]:
    """Every eval, newest first: those the runs index knows, and eval folders it does not (an index rebuilt)."""
    index = RunIndex(runs_dir)
    try:
        rows = index.evals()
    finally:
        index.close()
    found: dict[str, ListedEval] = {}
    for row in rows:
        eval_id = str(row.get("eval_id", ""))
        try:
            eval_dir(runs_dir, eval_id)
        except ValueError:
            continue
        found[eval_id] = ListedEval(
            eval_id, str(row.get("suite", "")), _parse_time(row.get("updated_at")), parse_summary(row.get("summary"))
        )
    root = runs_dir / EVALS_DIR
    try:
        entries = list(os.scandir(root)) if root.is_dir() else []
    except OSError:
        entries = []
    for entry in entries:
        if entry.name in found or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            folder = eval_dir(runs_dir, entry.name)
        except ValueError:
            continue
        summary_file = folder / SUMMARY_FILE
        if not (folder / PLAN_FILE).is_file() and not summary_file.is_file():
            continue  # not an eval (e.g. miniwob-tasks, the built-in suite's task files)
        try:
            when: datetime | None = datetime.fromtimestamp(
                (summary_file if summary_file.is_file() else folder / PLAN_FILE).stat().st_mtime, timezone.utc
            )
        except OSError:
            when = None
        found[entry.name] = ListedEval(entry.name, "", when, read_summary(folder))
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(found.values(), key=lambda e: e.updated_at or oldest, reverse=True)


def open_eval(runs_dir: Path, eval_id: str) -> LoadedEval:
    """Eval ``eval_id`` read from its folder; HTTP 404 when the id is not one, or names no eval here."""
    try:
        folder = eval_dir(runs_dir, eval_id)
    except ValueError:
        raise HTTPException(404, f"{eval_id[:80]!r} is not an eval id") from None
    root = (runs_dir / EVALS_DIR).resolve()
    try:
        resolved = folder.resolve()
        is_eval = (
            resolved.is_relative_to(root)
            and resolved.is_dir()
            and ((resolved / PLAN_FILE).is_file() or (resolved / EPISODES_FILE).is_file())
        )
    except (OSError, ValueError):
        is_eval = False
    if not is_eval:
        raise HTTPException(404, f"no eval {eval_id!r} in the runs folder")
    plan, problem = None, None
    try:
        plan = read_plan(resolved)
    except (OSError, ValueError) as exc:
        problem = f"plan.json cannot be read ({type(exc).__name__}); the episodes below come from episodes.jsonl"
    events = read_eval_events(resolved)
    summary = read_summary(resolved)
    suite = plan.suite_name if plan is not None else ""
    if summary is None or not suite:
        listed = next((e for e in list_evals(runs_dir) if e.eval_id == eval_id), None)
        summary = summary or (listed.summary if listed else None)
        suite = suite or (listed.suite if listed else "")
    latest_attempt = {s.episode_id: s.run_id for s in events.started}  # the last line per episode wins
    cells: list[Cell] = []
    seen: set[str] = set()
    for episode in plan.episodes if plan is not None else []:
        if episode.id in seen:
            continue
        seen.add(episode.id)
        result = events.finished.get(episode.id)
        if result is not None:
            cells.append(_finished_cell(runs_dir, result))
        else:
            cells.append(Cell(episode.id, episode.task_name, "", "not_finished", _well_formed(latest_attempt.get(episode.id))))
    for episode_id, result in events.finished.items():  # without a plan (or not in it): in the order they finished
        if episode_id not in seen:
            seen.add(episode_id)
            cells.append(_finished_cell(runs_dir, result))
    return LoadedEval(
        eval_id=eval_id,
        folder=resolved,
        suite=suite,
        created_at=plan.created_at if plan is not None else None,
        plan=plan,
        plan_problem=problem,
        summary=summary,
        cells=cells,
        unreadable=events.unreadable,
        finished=len(events.finished),
    )


def _finished_cell(runs_dir: Path, result: EpisodeResult) -> Cell:
    return Cell(
        episode_id=result.episode_id,
        task_name=result.task_name,
        label="",
        status=result.status,
        run_id=_well_formed(result.run_id),
        steps=result.steps,
        seconds=result.seconds,
        end_reason=result.end_reason,
    )


def _well_formed(run_id: str | None) -> str | None:
    return run_id if run_id and _RUN_ID.fullmatch(run_id) else None


def link_runs(runs_dir: Path, cells: list[Cell]) -> None:
    """Keep the run ids of ``cells`` (the ones on the page) whose folders exist: a link only to a run there is."""
    for cell in cells:
        if _run_folder(runs_dir, cell.run_id) is None:
            cell.run_id = None


def _run_folder(runs_dir: Path, run_id: str | None) -> Path | None:
    if not run_id or _RUN_ID.fullmatch(run_id) is None:
        return None
    folder = runs_dir / run_id
    try:
        return folder if folder.resolve().is_relative_to(runs_dir) and (folder / _RUN_FILE).is_file() else None
    except (OSError, ValueError):
        return None


# -- the grid ------------------------------------------------------------------------------------------------------
def grid(cells: list[Cell]) -> list[GridRow]:
    """Rows of tasks (in the order they first appear), each with its episodes labelled briefly."""
    titles = task_titles((c.episode_id, c.task_name) for c in cells)
    rows: dict[str, GridRow] = {}
    for cell in cells:  # one row per task file: two files that share a task name are two rows
        key = task_key(cell.episode_id, cell.task_name)
        rows.setdefault(key, GridRow(titles[key], [])).cells.append(cell)
    for row in rows.values():
        for cell, label in zip(row.cells, short_labels([c.episode_id for c in row.cells]), strict=True):
            cell.label = label
    return list(rows.values())


def short_labels(ids: list[str]) -> list[str]:
    """What tells a row's episodes apart: ``click-test-s0.s-.r0``, ``click-test-s1.s-.r0`` -> ``s0``, ``s1``;
    ``shop.s3.r1`` -> ``s3.r1``. The suite's no-seed part (``.s-``) and an all-zero repeat are left out."""
    if len(set(ids)) == 1:  # one episode: nothing to tell apart, and a common prefix would cut into the task's name
        seed = ids[0].split(".")[-2] if ids[0].count(".") >= 2 else ""
        return [seed if seed.startswith("s") and seed != "s-" else "run" for _ in ids]
    cleaned = [i.replace(".s-.", ".") for i in ids]
    if cleaned and all(c.endswith(".r0") for c in cleaned):
        cleaned = [c[:-3] for c in cleaned]
    prefix = os.path.commonprefix(cleaned)
    cut = max(prefix.rfind("-"), prefix.rfind("."), prefix.rfind("_")) + 1
    return [c[cut:] or c for c in cleaned]


def _counts(cells: list[Cell]) -> dict[str, int]:
    counts = dict.fromkeys(STATUS_TEXT, 0)
    for cell in cells:
        counts[cell.status] += 1
    return counts


# -- comparing -----------------------------------------------------------------------------------------------------
_ORDER = {"broke": 0, "fixed": 1, "changed": 2, "same": 3}
_OUTCOMES = ("failed", "interrupted")  # the run came to an outcome that is not success


def compare(runs_dir: Path, a: LoadedEval, b: LoadedEval) -> Comparison:
    """Episodes in both evals: those that flipped first (succeeded in one, failed in the other), each with the
    first step where its two runs differ; then those whose status changed otherwise; then the rest."""
    in_b = {c.episode_id: c for c in b.cells}
    in_a = {c.episode_id for c in a.cells}
    result = Comparison(only_a=sum(1 for c in a.cells if c.episode_id not in in_b))
    result.only_b = sum(1 for c in b.cells if c.episode_id not in in_a)
    for cell_a in a.cells:
        cell_b = in_b.get(cell_a.episode_id)
        if cell_b is None:
            continue
        change = _change(cell_a.status, cell_b.status)
        result.a_succeeded += cell_a.status == "succeeded"
        result.b_succeeded += cell_b.status == "succeeded"
        result.rows.append(Compared(cell_a.episode_id, cell_a.task_name, cell_a, cell_b, change))
    result.rows.sort(key=lambda r: _ORDER[r.change])  # stable: plan order within each group
    for row in result.rows:
        if row.change in ("fixed", "broke"):
            setattr(result, row.change, getattr(result, row.change) + 1)
            if result.diffed < MAX_DIFFS:
                result.diffed += 1
                row.diff, row.diff_problem = _first_difference(runs_dir, row.a.run_id, row.b.run_id)
        elif row.change == "changed":
            result.changed += 1
    return result


def _change(a: CellStatus, b: CellStatus) -> Literal["fixed", "broke", "changed", "same"]:
    if a == "succeeded" and b in _OUTCOMES:
        return "broke"
    if b == "succeeded" and a in _OUTCOMES:
        return "fixed"
    return "same" if a == b else "changed"


def _first_difference(runs_dir: Path, a_run: str | None, b_run: str | None) -> tuple[RunDiff | None, str | None]:
    from replays.diff import first_step_difference  # on first use, as app.py's diff page: it loads numpy and PIL

    a_dir, b_dir = _run_folder(runs_dir, a_run), _run_folder(runs_dir, b_run)
    if a_dir is None or b_dir is None:
        return None, "a run folder is missing"
    try:
        return first_step_difference(read_steps(a_dir), read_steps(b_dir)), None
    except (OSError, ValueError) as exc:
        return None, f"the steps cannot be read ({type(exc).__name__})"


# -- formatting ------------------------------------------------------------------------------------------------------
def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _parse_time(value: object) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
