"""The viewer web app (FastAPI + server-rendered pages + a little JavaScript).

It serves only the runs directory: pages, run/step JSON, files inside run folders, live events
(server-sent events), and label writes. Who may ask, and how writes are checked: ``guard.py``;
how errors look: ``errors.py``; how recorded text goes into pages: ``safe.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import tempfile
import weakref
from datetime import datetime, timezone
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Literal
from urllib.parse import urlencode

import jinja2
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictInt, ValidationError

from agent.approval import (
    AnswerRefused,
    ApprovalAnswer,
    ApprovalIn,
    correction_action,
    give_answer,
    pause_state,
    read_pending,
    set_paused,
)
from replays import confidence
from replays.labels import LabelError, LabelIn, Labels
from replays.launch import Launch, start
from replays.policy_plan import PolicyPlan, plan_policy
from replays.viewer.attention_panel import attention_router
from replays.viewer.errors import install_error_handlers
from replays.viewer.evals import eval_router
from replays.viewer.graph_svg import graph_svg
from replays.viewer.guard import MAX_BODY, HostGuard, check_write
from replays.viewer.ocr_panel import ocr_router, step_verdicts
from replays.viewer.safe import json_for_script, url_path
from tracer.attention_picture import css_gradient
from tracer.decisions import read_decisions
from tracer.follow import RunFollower
from tracer.graph import attach_counterfactuals, run_graph
from tracer.index import RunIndex, RunOrder
from tracer.schema import RunRecord, RunStatus, StepRecord
from tracer.store import RunStore, UnreadableStep, new_run_id, read_run, read_step_entries, read_steps

_HERE = Path(__file__).parent
PAGE_SIZE = 50
MAX_STEP = 1_000_000  # bounds on numbers from the URL: past these nothing exists, and SQLite needs 64-bit ints
MAX_ID = 2**62
_RUN_ID = re.compile(r"\w[\w.-]{0,199}")  # what new_run_id makes (and copies of it); no glob or path characters
# Files from a run folder are shown as what they are only when that is inert; anything else downloads.
_INLINE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".json": "application/json",
    ".jsonl": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
}


class RunsFilter(BaseModel):
    """The runs page's query: filters, order and page (the page and its live rows API read the same one)."""

    task: str | None = None
    status: str | None = None
    policy: str | None = None
    q: str | None = None
    order: str | None = None
    page: int = Field(1, ge=1, le=MAX_STEP)


class PauseIn(BaseModel):
    """Body of POST /api/runs/{id}/pause: pause (the run holds before its next step) or resume."""

    model_config = ConfigDict(extra="forbid")
    paused: bool


class ReplayIn(BaseModel):
    """Body of POST /api/runs/{id}/replay: replay the run, or resume it from one of its steps."""

    model_config = ConfigDict(extra="forbid")
    from_step: StrictInt | None = Field(default=None, ge=0, le=MAX_STEP)
    fallback: Literal["none", "policy"] = "none"
    # What the replay form asks for when the run did not record it (a served model's server and name) ...
    base_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://\S+$")
    model: str | None = Field(default=None, min_length=1, max_length=500)
    # ... and a served model's API key when its environment variable is not set here ("": the server needs none).
    api_key: SecretStr | None = Field(default=None, max_length=4000)


def create_viewer(runs_dir: Path, *, host: str = "127.0.0.1", poll_interval: float = 0.1) -> FastAPI:
    """Build the viewer app for ``runs_dir``, answering requests addressed to ``host`` (and loopback names)."""
    runs_dir = runs_dir.resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore(runs_dir)
    launches: dict[str, tuple[BaseProcess, Path, str]] = {}  # runs this viewer started: process, stderr file, source run
    labels = Labels(runs_dir)
    launch_files = Path(tempfile.mkdtemp(prefix="glassbox-viewer-"))  # the stderr of the runs this viewer starts
    token = secrets.token_urlsafe(32)  # carried by this server's pages; required on every write
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_HERE / "templates")), autoescape=True)
    env.filters["urlpath"] = url_path
    env.globals["token"] = token
    env.globals.update(
        confidence_css=confidence.css_variables(),
        confidence_styles=list(confidence.STYLES.values()),
        conf_low=confidence.LOW_BELOW,
        conf_high=confidence.HIGH_FROM,
        attention_gradient=css_gradient(),
    )
    env.filters["conf_band"] = lambda value: confidence.band(value).value
    env.filters["conf_number"] = confidence.number
    templates = Jinja2Templates(env=env)
    app = FastAPI(title="Glassbox viewer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token = token
    app.add_middleware(HostGuard, listen_host=host)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    index = RunIndex(runs_dir)
    index.sync()
    index.close()
    app.include_router(eval_router(runs_dir, templates))  # /evals, /evals/{id}, /evals/compare

    def run_dir_or_404(run_id: str) -> Path:
        if _RUN_ID.fullmatch(run_id) is None:
            raise HTTPException(404, f"{run_id[:80]!r} is not a run id")
        try:
            return store.run_dir(run_id)
        except FileNotFoundError as exc:
            raise HTTPException(404, str(exc).replace(str(runs_dir), "the runs folder")) from None

    def open_run(run_id: str) -> tuple[Path, RunRecord, list[StepRecord]]:
        run_dir = run_dir_or_404(run_id)
        try:
            return run_dir, read_run(run_dir), read_steps(run_dir)
        except (ValueError, OSError) as exc:  # a damaged or hand-made run folder
            raise HTTPException(422, f"run {run_dir.name} cannot be read: {exc}") from None

    app.include_router(attention_router(open_run))  # the attention panel: maps, pictures, explain results
    app.include_router(ocr_router(open_run))  # the OCR layer: a step's lines, search over every step

    def open_run_entries(run_id: str) -> tuple[Path, RunRecord, list[StepRecord | UnreadableStep]]:
        """Like open_run, with each unreadable line of steps.jsonl in its place (the run page keeps indices)."""
        run_dir = run_dir_or_404(run_id)
        try:
            return run_dir, read_run(run_dir), read_step_entries(run_dir)
        except (ValueError, OSError) as exc:
            raise HTTPException(422, f"run {run_dir.name} cannot be read: {exc}") from None

    def run_payload(run_dir: Path, run: RunRecord, entries: list[StepRecord | UnreadableStep]) -> dict[str, Any]:
        running = run.status is RunStatus.running
        pending = read_pending(run_dir) if running else None
        return {
            "run": run.model_dump(mode="json"),
            # Steps in file order, an unreadable line as {"index", "line", "unreadable"} in its place.
            "steps": [s.model_dump(mode="json") for s in entries],
            "labels": [lbl.model_dump(mode="json") for lbl in labels.list(run_dir.name)],
            # what a model said it would do at a step, asked afterwards (glassbox decide), oldest first
            "decisions": [d.model_dump(mode="json", exclude={"raw_output"}) for d in read_decisions(run_dir)],
            # each step's reasoning-action verdict (OCR's where read, else the step's own)
            "verdicts": {
                i: v.model_dump(mode="json")
                for i, v in step_verdicts(run_dir, [s for s in entries if isinstance(s, StepRecord)]).items()
            },
            "pending": pending.model_dump(mode="json") if pending else None,
            "pause": pause_state(run_dir).model_dump(mode="json") if running else None,
        }

    def run_graph_svg(run_dir: Path, run: RunRecord, steps: list[StepRecord]) -> str:
        """The decision graph with the run's labels: each step's latest verdict, and the steps given a correction."""
        verdicts: dict[int, str] = {}
        corrected: set[int] = set()
        for label in labels.list(run_dir.name):  # oldest first: the latest verdict wins
            verdicts[label.step] = label.verdict
            if label.correction is not None:
                corrected.add(label.step)
        link = f"/runs/{url_path(run_dir.name)}".replace("{", "{{").replace("}", "}}") + "#step-{step}"
        mismatched = {i for i, v in step_verdicts(run_dir, steps).items() if v.verdict == "mismatch"}
        graph = attach_counterfactuals(run_graph(run, steps), read_decisions(run_dir))  # glassbox decide's answers
        return graph_svg(graph, link=link, verdicts=verdicts, corrected=corrected, mismatched=mismatched)

    def running_run_dir(run_id: str) -> Path:
        run_dir, run, _ = open_run(run_id)
        if run.status is not RunStatus.running:
            raise HTTPException(409, f"run {run_dir.name} is not running (it is {run.status.value})")
        return run_dir

    def runs_listing(f: RunsFilter, *, menus: bool = True) -> dict[str, Any]:
        """One page of the runs list as the runs page shows it (``menus``: with the filter menus' values)."""
        task, policy, q, order, page = f.task, f.policy, f.q, f.order, f.page
        status = f.status if f.status in {s.value for s in RunStatus} else None
        run_order: RunOrder = "least_confident" if order == "least_confident" else "newest"
        idx = RunIndex(runs_dir)
        try:
            rows = idx.runs(
                task=task or None,
                status=status,
                policy=policy or None,
                search=q or None,
                order=run_order,
                limit=PAGE_SIZE + 1,
                offset=(page - 1) * PAGE_SIZE,
            )
            total = idx.count()
            tasks, policies = (idx.distinct("task_name"), idx.distinct("policy")) if menus else ([], [])
        finally:
            idx.close()
        filters = {"task": task or "", "status": status or "", "policy": policy or "", "q": q or "", "order": run_order}
        query = {k: v for k, v in filters.items() if v and not (k == "order" and v == "newest")}
        waiting = {}  # running runs of this page with a step held for a person: said in the list, not only on the run
        for row in rows[:PAGE_SIZE]:
            if row.status is RunStatus.running and (held := read_pending(runs_dir / row.run_id)) is not None:
                waiting[row.run_id] = held.step
        return {
            "rows": rows[:PAGE_SIZE],
            "waiting": waiting,
            "has_next": len(rows) > PAGE_SIZE,
            "page": page,
            "total": total,
            "filters": filters,
            "tasks": tasks,
            "policies": policies,
            "statuses": [s.value for s in RunStatus],
            "runs_dir": str(runs_dir),
            "rows_query": urlencode({**query, "page": page}),
            "newer_url": "?" + urlencode({**query, "page": page - 1}),
            "older_url": "?" + urlencode({**query, "page": page + 1}),
        }

    @app.get("/", response_class=HTMLResponse)
    def runs_page(request: Request, f: Annotated[RunsFilter, Query()]) -> Response:
        return templates.TemplateResponse(request, "runs.html", runs_listing(f))

    @app.get("/api/runs/rows")
    def api_runs_rows(f: Annotated[RunsFilter, Query()]) -> Any:
        """The runs page's table rows, rendered as on the page, for its live refresh; and the number of runs."""
        listing = runs_listing(f, menus=False)
        html_rows = env.get_template("_runs_rows.html").render(listing)
        return JSONResponse({"html": html_rows, "total": listing["total"]}, headers={"Cache-Control": "no-store"})

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str) -> Response:
        run_dir, run, entries = open_run_entries(run_id)
        steps = [e for e in entries if isinstance(e, StepRecord)]
        svg = run_graph_svg(run_dir, run, steps)
        idx = RunIndex(runs_dir)
        try:
            branches = idx.branches(run.run_id)  # replays and resumes of this run, each linked to /diff
        finally:
            idx.close()
        return templates.TemplateResponse(
            request,
            "run.html",
            {
                "run": run,
                "steps": entries,
                "graph_svg": svg,
                "branches": branches,
                "initial": json_for_script(run_payload(run_dir, run, entries)),
            },
        )

    @app.get("/diff", response_class=HTMLResponse)
    def diff_page(request: Request, a: str, b: str) -> Response:
        """Two runs step by step: step N of A beside step N of B, the first difference (as ``glassbox diff``
        finds it) highlighted and jumped to."""
        from replays.diff import diff_runs, line_up  # on first use: it loads numpy and PIL

        (a_dir, a_run, a_steps), (b_dir, b_run, b_steps) = open_run(a), open_run(b)
        try:
            result = diff_runs(a_dir, b_dir)
        except (ValueError, OSError) as exc:
            raise HTTPException(422, f"cannot compare {a_dir.name} and {b_dir.name}: {exc}") from None
        rows = line_up(a_steps, b_steps, result)
        # Both screenshots of a row are drawn in boxes of one shape (the first step's), so they show at one size.
        first = next((side for row in rows for side in (row.a, row.b) if side is not None), None)
        ratio = first.size if first is not None and min(first.size) > 0 else (16, 10)
        return templates.TemplateResponse(
            request,
            "diff.html",
            {"a": a_run, "b": b_run, "result": result, "rows": rows, "ratio": ratio, "mark": max(8, round(ratio[0] / 90))},
        )

    @app.get("/api/runs")
    def api_runs(
        task: str | None = None,
        status: str | None = None,
        policy: str | None = None,
        q: str | None = None,
        order: Literal["newest", "least_confident"] = "newest",
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=MAX_ID),
    ) -> Any:
        idx = RunIndex(runs_dir)
        try:
            rows = idx.runs(task=task, status=status, policy=policy, search=q, order=order, limit=limit, offset=offset)
        finally:
            idx.close()
        return [r.model_dump(mode="json") for r in rows]

    @app.get("/api/runs/{run_id}")
    def api_run(run_id: str) -> Any:
        run_dir, run, entries = open_run_entries(run_id)
        return run_payload(run_dir, run, entries)

    @app.get("/api/runs/{run_id}/graph", response_class=HTMLResponse)
    def api_graph(run_id: str) -> Response:
        run_dir, run, steps = open_run(run_id)
        return HTMLResponse(run_graph_svg(run_dir, run, steps), media_type="image/svg+xml")

    @app.get("/api/runs/{run_id}/events")
    async def api_events(request: Request, run_id: str, after: int = Query(-1, ge=-1, le=MAX_STEP)) -> StreamingResponse:
        run_dir = run_dir_or_404(run_id)

        def person() -> tuple[str, str]:
            """A step waiting for a person and the pause state, as the page gets them (JSON)."""
            pending = read_pending(run_dir)
            return (
                pending.model_dump_json() if pending else "null",
                pause_state(run_dir).model_dump_json(),
            )

        async def stream() -> AsyncIterator[str]:
            follower = RunFollower(run_dir, from_step=after + 1)
            shown: tuple[str, str] | None = None
            yield "retry: 1000\n\n"
            while True:
                # A step's line is written once its files exist (tracer.store), so the page can show them at once.
                for step in await asyncio.to_thread(follower.poll_entries):
                    yield f"event: step\ndata: {step.model_dump_json()}\n\n"
                run = await asyncio.to_thread(follower.poll_run)
                if run is not None:
                    yield f"event: run\ndata: {run.model_dump_json()}\n\n"
                if follower.run is not None and follower.run.status is not RunStatus.running:
                    for step in await asyncio.to_thread(follower.poll_entries):
                        yield f"event: step\ndata: {step.model_dump_json()}\n\n"
                    yield "event: pending\ndata: null\n\n"
                    yield "event: end\ndata: {}\n\n"
                    return
                now = await asyncio.to_thread(person)
                if shown is None or now[0] != shown[0]:
                    yield f"event: pending\ndata: {now[0]}\n\n"
                if shown is None or now[1] != shown[1]:
                    yield f"event: pause\ndata: {now[1]}\n\n"
                shown = now
                if await request.is_disconnected():
                    return
                await asyncio.sleep(poll_interval)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    @app.get("/runs/{run_id}/files/{path:path}")
    def run_file(run_id: str, path: str) -> Response:
        return _serve_run_file(run_dir_or_404(run_id), path)

    @app.get("/runs/{run_id}/steps/{step}/attention.png")
    def attention_png(
        run_id: str,
        step: int = PathParam(ge=0, le=MAX_STEP),
        key: str = Query(..., pattern=r"^[\w -]{1,64}/(shallow|middle|deep|all)$"),
    ) -> Response:
        from tracer.attention import AttentionMaps, heat_png

        run_dir, _, steps = open_run(run_id)
        run_dir = run_dir.resolve()
        record = next((s for s in steps if s.index == step), None)
        ref = next((a for a in record.attention if a.key == key), None) if record else None
        if record is None or ref is None:
            raise HTTPException(404, f"no attention map {key!r} for step {step}")
        path = (run_dir / ref.path).resolve()
        if not path.is_relative_to(run_dir) or not path.is_file():
            raise HTTPException(404, f"the attention maps of step {step} are not in the run folder")
        try:
            maps = AttentionMaps.load(path)
            image = heat_png(maps.maps[key], record.screenshot_size)
        except (ValueError, OSError, KeyError) as exc:
            raise HTTPException(422, f"the attention maps of step {step} cannot be read: {exc}") from None
        return Response(image, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/runs/{run_id}/steps/{step}/labels")
    async def add_label(request: Request, run_id: str, step: int = PathParam(ge=0, le=MAX_STEP)) -> Response:
        check_write(request, token)
        try:
            body = LabelIn.model_validate(await _json_body(request))
        except ValidationError as exc:
            return JSONResponse({"error": _validation_message(exc)}, status_code=422)
        run_dir_or_404(run_id)
        try:
            label = labels.add(run_id, step, body)
        except LabelError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse(label.model_dump(mode="json"), status_code=201)

    @app.post("/api/runs/{run_id}/approval")
    async def answer_step(request: Request, run_id: str) -> Response:
        """A person's answer to the step the run holds: approve, correct (with an action), skip, stop."""
        check_write(request, token)
        try:
            body = ApprovalIn.model_validate(await _json_body(request))
        except ValidationError as exc:
            return JSONResponse({"error": _validation_message(exc)}, status_code=422)
        run_dir = running_run_dir(run_id)
        pending = read_pending(run_dir)
        if pending is not None and body.correction is not None and pending.id == body.id:
            try:
                correction_action(body.correction, pending)
            except AnswerRefused as exc:
                return JSONResponse({"error": str(exc)}, status_code=422)
        answer = ApprovalAnswer(**body.model_dump(), by="viewer", answered_at=datetime.now(timezone.utc))
        try:
            answered = await asyncio.to_thread(give_answer, run_dir, answer)
        except AnswerRefused as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse({"step": answered.step, "choice": body.choice}, status_code=202)

    @app.post("/api/runs/{run_id}/pause")
    async def pause_run(request: Request, run_id: str) -> Response:
        """Pause a running run (it holds before its next step) or resume it."""
        check_write(request, token)
        try:
            body = PauseIn.model_validate(await _json_body(request))
        except ValidationError as exc:
            return JSONResponse({"error": _validation_message(exc)}, status_code=422)
        run_dir = running_run_dir(run_id)
        state = await asyncio.to_thread(set_paused, run_dir, body.paused)
        return JSONResponse(state.model_dump(mode="json"))

    def plan_payload(plan: PolicyPlan | None) -> dict[str, Any]:
        if plan is None:  # a replay without fallback: no policy decides, nothing to ask
            return {"policy": None, "missing": [], "message": ""}
        return {**plan.model_dump(mode="json"), "served": plan.served, "message": plan.message()}

    @app.get("/api/runs/{run_id}/replay-plan")
    def replay_plan(
        run_id: str,
        fallback: Literal["none", "policy"] = "none",
        from_step: int | None = Query(None, ge=0, le=MAX_STEP),
    ) -> Any:
        """Which policy a replay with fallback (or a resume) hands over to, with what, and what is missing."""
        _, run, steps = open_run(run_id)
        needs_policy = fallback == "policy" or from_step is not None
        return plan_payload(plan_policy(run, steps) if needs_policy else None)

    @app.post("/api/runs/{run_id}/replay")
    async def start_replay(request: Request, run_id: str) -> Response:
        """Start a replay (or a resume with ``from_step``) in a process of its own; answer the new run's URL.
        A served model's recorded server and model are used again; what is missing (the key, when its variable
        is not set here) is refused with ``missing`` naming it, and the page's form asks for exactly that."""
        check_write(request, token)
        try:
            body = ReplayIn.model_validate(await _json_body(request))
        except ValidationError as exc:
            return JSONResponse({"error": _validation_message(exc)}, status_code=422)
        _, run, steps = open_run(run_id)
        if body.from_step is not None and not any(s.index == body.from_step for s in steps):
            return JSONResponse({"error": f"from_step must be a step of the run (0..{len(steps) - 1})"}, status_code=422)
        overrides: dict[str, str] = {}
        key_env = None
        if body.fallback == "policy" or body.from_step is not None:
            plan = plan_policy(run, steps, base_url=body.base_url, model=body.model, key_answered=body.api_key is not None)
            if plan.missing:
                return JSONResponse(
                    {"error": f"to start {plan.policy} this needs {plan.message()}", **plan_payload(plan)}, status_code=422
                )
            recorded = plan_policy(run, steps, environ={})  # what the run itself recorded, without the form's values
            overrides = {k: v for k, v in plan.overrides().items() if k in ("base_url", "model") and not getattr(recorded, k)}
            key_env = plan.api_key_env if plan.served and body.api_key is not None else None
        new_id = new_run_id(run.task_name)
        launch = Launch(
            runs_dir=runs_dir,
            run_id=run.run_id,
            new_run_id=new_id,
            from_step=body.from_step,
            fallback=body.fallback,
            policy_overrides=overrides,
            api_key=body.api_key if key_env else None,
            api_key_env=key_env,
        )
        errors = launch_files / f"{new_id}.stderr"  # what the process says if it cannot start: shown by /wait
        launches[new_id] = (start(launch, errors=errors), errors, run.run_id)
        return JSONResponse({"run_id": new_id, "url": f"/runs/{new_id}/wait"}, status_code=202)

    @app.get("/runs/{run_id}/wait", response_class=HTMLResponse)
    def wait_for_run(request: Request, run_id: str) -> Response:
        """A run started from the viewer appears after its process has set up the browser and the site."""
        if _RUN_ID.fullmatch(run_id) is None:
            raise HTTPException(404, f"{run_id[:80]!r} is not a run id")
        try:
            store.run_dir(run_id)
            return RedirectResponse(f"/runs/{url_path(run_id)}", status_code=303)
        except FileNotFoundError:
            pass
        launch = launches.get(run_id)
        if launch is None:
            raise HTTPException(404, f"no run {run_id}, and this viewer is not starting one")
        process, errors, source = launch
        code = process.exitcode
        context = {"run_id": run_id, "source": source}
        if code is None:
            return templates.TemplateResponse(request, "wait.html", {**context, "failed": False})
        said = _tail(errors, 4000).decode(errors="replace").strip() or "(it printed nothing)"
        # 422: the run cannot be replayed as it stands (its task moved, a screenshot is gone...), and the page says why.
        return templates.TemplateResponse(
            request, "wait.html", {**context, "failed": True, "code": code, "said": said}, status_code=422
        )

    @app.delete("/api/labels/{label_id}")
    def undo_label(request: Request, label_id: int = PathParam(ge=0, le=MAX_ID)) -> Response:
        check_write(request, token)
        if not labels.undo(label_id):
            raise HTTPException(404, f"no label {label_id}")
        return Response(status_code=204)

    weakref.finalize(app, shutil.rmtree, launch_files, ignore_errors=True)  # at exit at the latest
    return app


def _tail(path: Path, size: int) -> bytes:
    """The last ``size`` bytes of ``path`` (empty when it is not there)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - size))
            return fh.read()
    except OSError:
        return b""


def _serve_run_file(run_dir: Path, path: str) -> Response:
    """A regular file inside ``run_dir`` (links followed, then checked), served so that it cannot run script."""
    root = run_dir.resolve()
    try:
        target = (root / path).resolve()
        inside = target.is_relative_to(root) and target.is_file()
    except (OSError, ValueError):  # NUL bytes, loops, names too long
        inside = False
    # Hidden files (temporaries, .git) are not part of a run.
    if not inside or any(part.startswith(".") for part in target.relative_to(root).parts):
        raise HTTPException(404, f"no file {path[:120]!r} in run {run_dir.name}")
    media_type = _INLINE_TYPES.get(target.suffix.lower())
    headers = {"Cache-Control": "max-age=3600", "Content-Security-Policy": "default-src 'none'; sandbox"}
    if media_type is None:  # e.g. .html or .svg from a crafted folder: a download, never a page on this origin
        return FileResponse(
            target,
            media_type="application/octet-stream",
            headers=headers,
            filename=target.name,
            content_disposition_type="attachment",
        )
    return FileResponse(target, media_type=media_type, headers=headers)


async def _json_body(request: Request) -> Any:
    """The request's JSON body, read up to MAX_BODY bytes (413 past that, without reading the rest)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, "send the body as application/json")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPException(413, f"request body over the limit of {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"invalid JSON: {exc.msg} at position {exc.pos}") from None
    except (ValueError, RecursionError) as exc:  # bad UTF-8, absurd numbers, nesting deeper than Python's stack
        raise HTTPException(400, f"invalid JSON: {type(exc).__name__}") from None


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


__all__ = ["create_viewer"]
