"""The viewer web app (FastAPI + server-rendered pages + a little JavaScript).

It serves only the runs directory: pages, run/step JSON, files inside run folders, live events
(server-sent events), and label writes (JSON, same-origin only).
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from replays.labels import LabelError, LabelIn, Labels
from replays.viewer.graph_svg import graph_svg
from tracer.follow import RunFollower
from tracer.graph import run_graph
from tracer.index import RunIndex
from tracer.schema import RunStatus
from tracer.store import RunStore, new_run_id, read_run, read_steps

_HERE = Path(__file__).parent
PAGE_SIZE = 50


def create_viewer(runs_dir: Path, *, poll_interval: float = 0.1) -> FastAPI:
    """Build the viewer app for ``runs_dir``."""
    runs_dir = runs_dir.resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore(runs_dir)
    launches: dict[str, tuple[subprocess.Popen[bytes], Any]] = {}  # runs this viewer started: process, stderr file
    labels = Labels(runs_dir)
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    app = FastAPI(title="Glassbox viewer", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    index = RunIndex(runs_dir)
    index.sync()
    index.close()

    def run_dir_or_404(run_id: str) -> Path:
        try:
            return store.run_dir(run_id)
        except FileNotFoundError:
            raise HTTPException(404, f"no run {run_id}") from None

    @app.get("/", response_class=HTMLResponse)
    def runs_page(
        request: Request, task: str | None = None, status: str | None = None, policy: str | None = None,
        q: str | None = None, page: int = Query(1, ge=1),
    ) -> Response:
        status = status if status in {s.value for s in RunStatus} else None
        idx = RunIndex(runs_dir)
        try:
            rows = idx.runs(task=task or None, status=status, policy=policy or None, search=q or None,
                            limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
            total = idx.count()
            tasks, policies = idx.distinct("task_name"), idx.distinct("policy")
        finally:
            idx.close()
        return templates.TemplateResponse(request, "runs.html", {
            "rows": rows[:PAGE_SIZE], "has_next": len(rows) > PAGE_SIZE, "page": page, "total": total,
            "filters": {"task": task or "", "status": status or "", "policy": policy or "", "q": q or ""},
            "tasks": tasks, "policies": policies, "statuses": [s.value for s in RunStatus], "runs_dir": str(runs_dir),
        })

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str) -> Response:
        run_dir = run_dir_or_404(run_id)
        run, steps = read_run(run_dir), read_steps(run_dir)
        svg = graph_svg(run_graph(run, steps), link="#step-{step}")
        return templates.TemplateResponse(request, "run.html", {
            "run": run, "steps": steps, "graph_svg": svg,
            "initial": json.dumps(_run_payload(run_dir, labels), ensure_ascii=False).replace("</", "<\\/"),
        })

    @app.get("/diff", response_class=HTMLResponse)
    def diff_page(request: Request, a: str, b: str) -> Response:
        from replays.diff import diff_runs

        a_dir, b_dir = run_dir_or_404(a), run_dir_or_404(b)
        result = diff_runs(a_dir, b_dir)
        sides = []
        for run_dir, text in ((a_dir, result.a), (b_dir, result.b)):
            steps = {s.index: s for s in read_steps(run_dir)}
            shot = steps[result.step].screenshot if result.step is not None and result.step in steps else None
            sides.append((run_dir.name, text, shot))
        return templates.TemplateResponse(request, "diff.html", {"a": a_dir.name, "b": b_dir.name, "result": result,
                                                                 "sides": sides})

    @app.get("/api/runs")
    def api_runs(task: str | None = None, status: str | None = None, policy: str | None = None,
                 q: str | None = None, limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0)) -> Any:
        idx = RunIndex(runs_dir)
        try:
            rows = idx.runs(task=task, status=status, policy=policy, search=q, limit=limit, offset=offset)
        finally:
            idx.close()
        return [r.model_dump(mode="json") for r in rows]

    @app.get("/api/runs/{run_id}")
    def api_run(run_id: str) -> Any:
        return _run_payload(run_dir_or_404(run_id), labels)

    @app.get("/api/runs/{run_id}/graph", response_class=HTMLResponse)
    def api_graph(run_id: str) -> Response:
        run_dir = run_dir_or_404(run_id)
        return HTMLResponse(graph_svg(run_graph(read_run(run_dir), read_steps(run_dir))), media_type="image/svg+xml")

    @app.get("/api/runs/{run_id}/events")
    async def api_events(request: Request, run_id: str, after: int = Query(-1, ge=-1)) -> StreamingResponse:
        run_dir = run_dir_or_404(run_id)

        async def stream() -> AsyncIterator[str]:
            follower = RunFollower(run_dir, from_step=after + 1)
            yield "retry: 1000\n\n"
            while True:
                for step in await asyncio.to_thread(follower.poll_steps):
                    yield f"event: step\ndata: {step.model_dump_json()}\n\n"
                run = await asyncio.to_thread(follower.poll_run)
                if run is not None:
                    yield f"event: run\ndata: {run.model_dump_json()}\n\n"
                if follower.run is not None and follower.run.status is not RunStatus.running:
                    for step in await asyncio.to_thread(follower.poll_steps):
                        yield f"event: step\ndata: {step.model_dump_json()}\n\n"
                    yield "event: end\ndata: {}\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(poll_interval)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/runs/{run_id}/files/{path:path}")
    def run_file(run_id: str, path: str) -> Response:
        run_dir = run_dir_or_404(run_id).resolve()
        target = (run_dir / path).resolve()
        # Only regular files inside this run's folder; anything else (.., absolute, links out) is a 404.
        if not target.is_relative_to(run_dir) or not target.is_file() or target.name.startswith("."):
            raise HTTPException(404)
        return FileResponse(target, headers={"Cache-Control": "max-age=3600"})

    @app.get("/runs/{run_id}/steps/{step}/attention.png")
    def attention_png(run_id: str, step: int, key: str = Query(..., pattern=r"^[\w -]{1,64}/(shallow|middle|deep|all)$")) -> Response:
        from tracer.attention import AttentionMaps, heat_png

        run_dir = run_dir_or_404(run_id).resolve()
        record = next((s for s in read_steps(run_dir) if s.index == step), None)
        ref = next((a for a in record.attention if a.key == key), None) if record else None
        if record is None or ref is None:
            raise HTTPException(404, f"no attention map {key!r} for step {step}")
        path = (run_dir / ref.path).resolve()
        if not path.is_relative_to(run_dir) or not path.is_file():
            raise HTTPException(404)
        maps = AttentionMaps.load(path)
        return Response(heat_png(maps.maps[key], record.screenshot_size), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/runs/{run_id}/steps/{step}/labels")
    async def add_label(request: Request, run_id: str, step: int) -> Response:
        _same_origin(request)
        try:
            body = LabelIn.model_validate(await _json_body(request))
            label = labels.add(run_id, step, body)
        except ValidationError as exc:
            return JSONResponse({"error": _validation_message(exc)}, status_code=422)
        except LabelError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse(label.model_dump(mode="json"), status_code=201)

    @app.post("/api/runs/{run_id}/replay")
    async def start_replay(request: Request, run_id: str) -> Response:
        """Start ``glassbox replay`` (or ``resume`` with ``from_step``) in the background; answer the new run's URL."""
        _same_origin(request)
        run_dir = run_dir_or_404(run_id)
        body = await _json_body(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "send a JSON object"}, status_code=422)
        from_step = body.get("from_step")
        fallback = body.get("fallback", "none")
        if fallback not in ("none", "policy"):
            return JSONResponse({"error": "fallback must be none or policy"}, status_code=422)
        steps = read_steps(run_dir)
        if from_step is not None and (not isinstance(from_step, int) or not any(s.index == from_step for s in steps)):
            return JSONResponse({"error": f"from_step must be a step of the run (0..{len(steps) - 1})"}, status_code=422)
        run = read_run(run_dir)
        new_id = new_run_id(run.task_name)
        command = [sys.executable, "-m", "agent.cli"]
        command += (["resume", run.run_id, "--from-step", str(from_step)] if from_step is not None
                    else ["replay", run.run_id, "--fallback", fallback])
        command += ["--runs-dir", str(runs_dir), "--new-run-id", new_id]
        errors = tempfile.TemporaryFile()  # what the process says if it cannot start: shown by /wait
        launches[new_id] = (subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                                             start_new_session=True), errors)
        return JSONResponse({"run_id": new_id, "url": f"/runs/{new_id}/wait"}, status_code=202)

    @app.get("/runs/{run_id}/wait", response_class=HTMLResponse)
    def wait_for_run(request: Request, run_id: str) -> Response:
        """A run started from the viewer appears after its process has set up the browser and the site."""
        if re.fullmatch(r"[\w.-]{1,120}", run_id) is None:
            raise HTTPException(404)
        try:
            store.run_dir(run_id)
            return RedirectResponse(f"/runs/{run_id}", status_code=303)
        except FileNotFoundError:
            pass
        launch = launches.get(run_id)
        if launch is None:
            raise HTTPException(404, f"no run {run_id}, and this viewer is not starting one")
        process, errors = launch
        code = process.poll()
        if code is None:
            return HTMLResponse(f"<!doctype html><meta http-equiv='refresh' content='0.5'><title>Starting…</title>"
                                f"<p style='font-family:sans-serif'>Starting {html.escape(run_id)}… (setting up the "
                                f"browser and the site; loading a local model can take a minute)</p>")
        errors.seek(0)
        said = errors.read()[-4000:].decode(errors="replace").strip() or "(it printed nothing)"
        return HTMLResponse(f"<!doctype html><title>Could not start</title><div style='font-family:sans-serif'>"
                            f"<h1>{html.escape(run_id)} could not start</h1><p>The process exited with code {code} "
                            f"before recording anything. It said:</p><pre>{html.escape(said)}</pre>"
                            f"<p><a href='/'>Back to the runs</a></p></div>", status_code=500)

    @app.delete("/api/labels/{label_id}")
    def undo_label(request: Request, label_id: int) -> Response:
        _same_origin(request)
        if not labels.undo(label_id):
            raise HTTPException(404, f"no label {label_id}")
        return Response(status_code=204)

    return app


def _run_payload(run_dir: Path, labels: Labels) -> dict[str, Any]:
    run = read_run(run_dir)
    return {
        "run": run.model_dump(mode="json"),
        "steps": [s.model_dump(mode="json") for s in read_steps(run_dir)],
        "labels": [lbl.model_dump(mode="json") for lbl in labels.list(run.run_id)],
    }


async def _json_body(request: Request) -> Any:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send the label as application/json")
    raw = await request.body()
    if len(raw) > 64_000:
        raise HTTPException(413, "label too large")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"invalid JSON: {exc.msg} at position {exc.pos}") from None


def _same_origin(request: Request) -> None:
    """Refuse writes from other origins (a page elsewhere must not label your runs)."""
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if origin is not None and origin.split("://", 1)[-1] != host:
        raise HTTPException(403, "cross-origin request refused")
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site not in (None, "same-origin", "none"):
        raise HTTPException(403, "cross-site request refused")


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


__all__ = ["create_viewer"]
