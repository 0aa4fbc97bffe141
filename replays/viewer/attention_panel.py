"""The run page's attention panel: what it shows for a step (JSON), its pictures, and the step's explain results.

- ``GET /api/runs/{id}/steps/{n}/attention``: the step's maps by target, each as shallow / middle / deep small
  multiples with human names, figures and the top region; or why there are none; and the explain results.
- ``GET /runs/{id}/steps/{n}/attention-view.png?key=action/deep&width=480``: a map drawn for reading
  (tracer.attention_picture: the screenshot dimmed, viridis, the top region outlined).
- ``GET /runs/{id}/explain/{name}``: a file directly inside the run's explain folder, nothing else.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel

from tracer.attention import GROUPS, AttentionMaps
from tracer.attention_picture import TopRegion, attention_picture, top_region
from tracer.explain_files import ExplainListing, explain_file, explain_results
from tracer.run_files import MissingRunFile, read_step_file
from tracer.schema import RunRecord, StepRecord

MAX_STEP = 1_000_000
KEY_PATTERN = r"^[\w -]{1,64}/(shallow|middle|deep|all)$"

GROUP_NAMES = {
    "shallow": ("Early layers", "the first third of the model's layers: closest to the pixels"),
    "middle": ("Middle layers", "the middle third of the layers"),
    "deep": ("Late layers", "the last third of the layers: closest to the answer"),
    "all": ("All layers", "every layer, averaged"),
    "gradcam": ("Grad-CAM", "gradient-weighted vision features"),
}
TARGET_NAMES = {
    "action": "the action",
    "reasoning": "the reasoning",
    "text": "the typed text",
    "output": "the whole answer",
}


def target_name(target: str) -> str:
    return TARGET_NAMES.get(target, f"“{target}”")


class MapView(BaseModel):
    """One small multiple: a layer group's map for a target, with its figures (see tracer.attention.figures)."""

    key: str
    group: str
    name: str
    about: str
    image: str
    peak_px: tuple[int, int]
    concentration: float
    entropy: float
    peak_to_click_px: float | None
    mass_in_evidence: float | None
    top: TopRegion | None


class TargetView(BaseModel):
    target: str
    name: str
    maps: list[MapView]


class ExplainMapView(BaseModel):
    name: str  # e.g. "the action · Late layers"
    picture: str  # URL
    peak_px: tuple[int, int] | None = None
    concentration: float | None = None
    mass_in_evidence: float | None = None


class ExplainView(BaseModel):
    title: str
    created_at: str | None
    model: str | None
    maps: list[ExplainMapView]
    problem: str | None = None


class AttentionPanel(BaseModel):
    step: int
    screenshot_size: tuple[int, int]
    reason: str | None  # why the step has no maps (None when it has some)
    targets: list[TargetView]
    explain: list[ExplainView]


def _run_url(run_dir: Path) -> str:
    return "/runs/" + quote(run_dir.name, safe="")


def step_panel(run_dir: Path, step: StepRecord) -> AttentionPanel:
    refs = [a for a in step.attention if a.group in GROUPS]
    grids: dict[str, object] = {}
    maps_file = {a.path for a in refs}
    if len(maps_file) == 1:
        try:
            grids = dict(_load_maps(run_dir, step, refs[0].path).maps)
        except HTTPException:
            grids = {}  # the figures still show; the pictures will say what is wrong
    targets: dict[str, list[MapView]] = {}
    base = f"{_run_url(run_dir)}/steps/{step.index}/attention-view.png?key="
    for ref in sorted(refs, key=lambda a: GROUPS.index(a.group)):
        name, about = GROUP_NAMES[ref.group]
        grid = grids.get(ref.key)
        targets.setdefault(ref.target, []).append(
            MapView(
                key=ref.key,
                group=ref.group,
                name=name,
                about=about,
                image=base + quote(ref.key, safe=""),
                peak_px=ref.peak_px,
                concentration=ref.concentration,
                entropy=ref.entropy,
                peak_to_click_px=ref.peak_to_click_px,
                mass_in_evidence=ref.mass_in_evidence,
                top=top_region(grid, step.screenshot_size) if grid is not None else None,  # type: ignore[arg-type]
            )
        )
    order = list(TARGET_NAMES)
    views = [
        TargetView(target=t, name=target_name(t), maps=maps)
        for t, maps in sorted(targets.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))
    ]
    reason = None
    if not views:
        reason = step.unavailable.get("attention") or "no attention maps were recorded for this step"
    return AttentionPanel(
        step=step.index,
        screenshot_size=step.screenshot_size,
        reason=reason,
        targets=views,
        explain=[_explain_view(run_dir, listing) for listing in explain_results(run_dir, step.index)],
    )


def _explain_view(run_dir: Path, listing: ExplainListing) -> ExplainView:
    base = f"{_run_url(run_dir)}/explain/"
    maps = []
    for item in listing.maps:
        if isinstance(item, str):
            maps.append(ExplainMapView(name=item, picture=base + quote(item, safe="")))
            continue
        group = GROUP_NAMES.get(item.group, (item.group, ""))[0]
        maps.append(
            ExplainMapView(
                name=f"{target_name(item.target)} · {group}",
                picture=base + quote(item.picture, safe=""),
                peak_px=item.peak_px,
                concentration=item.concentration,
                mass_in_evidence=item.mass_in_evidence,
            )
        )
    what = ", ".join(target_name(t) for t in listing.targets) or "the action, reasoning and answer"
    title = f"{listing.method} for {what}" if listing.record else f"{listing.method} pictures (no record of how)"
    return ExplainView(
        title=title,
        created_at=_when(listing.created_at),
        model=listing.model,
        maps=maps,
        problem=listing.problem,
    )


def _when(at: datetime | None) -> str | None:
    if at is None:
        return None
    return (at.astimezone(timezone.utc) if at.tzinfo else at).strftime("%Y-%m-%d %H:%M UTC")


def _load_maps(run_dir: Path, step: StepRecord, relative: str) -> AttentionMaps:
    root = run_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, f"the attention maps of step {step.index} are not in the run folder")
    try:
        return AttentionMaps.load(path)
    except (ValueError, OSError, KeyError) as exc:
        raise HTTPException(422, f"the attention maps of step {step.index} cannot be read: {exc}") from None


def attention_router(open_run: Callable[[str], tuple[Path, RunRecord, list[StepRecord]]]) -> APIRouter:
    """The panel's routes; ``open_run`` finds a run by id (404 for none, 422 for an unreadable one)."""
    router = APIRouter()

    def find_step(run_id: str, index: int) -> tuple[Path, StepRecord]:
        run_dir, _, steps = open_run(run_id)
        record = next((s for s in steps if s.index == index), None)
        if record is None:
            raise HTTPException(404, f"run {run_dir.name} has no step {index}")
        return run_dir, record

    @router.get("/api/runs/{run_id}/steps/{step}/attention")
    def api_attention(run_id: str, step: int = PathParam(ge=0, le=MAX_STEP)) -> AttentionPanel:
        return step_panel(*find_step(run_id, step))

    @router.get("/runs/{run_id}/steps/{step}/attention-view.png")
    def attention_view_png(
        run_id: str,
        step: int = PathParam(ge=0, le=MAX_STEP),
        key: str = Query(..., pattern=KEY_PATTERN),
        width: int = Query(480, ge=64, le=4096),
    ) -> Response:
        run_dir, record = find_step(run_id, step)
        ref = next((a for a in record.attention if a.key == key), None)
        if ref is None:
            raise HTTPException(404, f"no attention map {key!r} for step {step}")
        maps = _load_maps(run_dir, record, ref.path)
        if key not in maps.maps:
            raise HTTPException(422, f"the attention maps of step {step} have no {key!r}")
        try:
            shot = read_step_file(run_dir, record.screenshot, step)
            image = attention_picture(shot, maps.maps[key], max_width=width)
        except (MissingRunFile, ValueError, OSError) as exc:
            raise HTTPException(422, f"the attention picture of step {step} cannot be drawn: {exc}") from None
        return Response(image, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @router.get("/runs/{run_id}/explain/{name}")
    def explain_picture(run_id: str, name: str) -> Response:
        run_dir, _, _ = open_run(run_id)
        path = explain_file(run_dir, name)
        media = {".png": "image/png", ".json": "application/json"}.get(path.suffix.lower()) if path else None
        if path is None or media is None:
            raise HTTPException(404, f"no explain file {name[:120]!r} in run {run_dir.name}")
        headers = {"Cache-Control": "no-cache", "Content-Security-Policy": "default-src 'none'; sandbox"}
        return FileResponse(path, media_type=media, headers=headers)

    return router


__all__ = ["AttentionPanel", "attention_router", "step_panel"]
