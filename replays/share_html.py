"""``glassbox export html``: one self-contained HTML file of a run that opens from disk and asks for nothing.

    info = export_html(run_dir, Path("run.html"), options=HtmlOptions(max_width=960))

Screenshots are shrunk and embedded as ``data:`` URIs; the stylesheet and the small keyboard script are inline.
A Content-Security-Policy meta tag allows images only from ``data:`` and scripts only with the hash of our
own script, so neither an image nor an injected tag can reach the network. Recorded text (reasoning, page
titles, check details) is untrusted: the template autoescapes all of it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Literal

import jinja2
from markupsafe import Markup
from PIL import Image
from pydantic import BaseModel, Field

from replays import confidence
from replays.share_output import check_out_path, write_atomically
from replays.share_run import SharedRun, SharedStep, load_shared_run, step_image
from tracer.run_files import UnreadableStep

_HERE = Path(__file__).resolve().parent
_TEMPLATES = _HERE / "templates"
_VIEWER_TEMPLATES = _HERE / "viewer" / "templates"  # the confidence legend macro, shared with the viewer
_VIEWER_CONFIDENCE_CSS = _HERE / "viewer" / "static" / "confidence.css"
THUMB_WIDTH = 120

ImageFormat = Literal["webp", "jpeg"]


class HtmlOptions(BaseModel):
    max_width: int = Field(default=960, ge=160, le=3840)  # screenshots wider than this are shrunk to it
    quality: int = Field(default=70, ge=10, le=100)
    image_format: ImageFormat = "webp"
    max_steps: int = Field(default=200, ge=1)


class HtmlExportInfo(BaseModel):
    out: Path
    bytes: int
    steps: int
    total_steps: int
    missing: dict[int, str]  # step index -> why its screenshot is a placeholder
    unreadable: list[UnreadableStep] = []  # lines of steps.jsonl left out (the page says how many)


class _StepView(BaseModel):
    step: SharedStep
    image: str  # data: URI
    thumb: str
    missing: str | None
    tool_calls: str
    view_box: tuple[int, int]


def export_html(run_dir: Path, out: Path, *, options: HtmlOptions | None = None) -> HtmlExportInfo:
    options = options or HtmlOptions()
    check_out_path(out)  # before the work: a wrong --out is a usage error, not a late surprise
    shared = load_shared_run(run_dir, max_steps=options.max_steps)
    views, missing = _step_views(shared, options)
    html = render(shared, views, options)
    data = html.encode("utf-8")
    write_atomically(out, data)
    return HtmlExportInfo(
        out=out,
        bytes=len(data),
        steps=len(views),
        total_steps=shared.total_steps,
        missing=missing,
        unreadable=shared.unreadable,
    )


def render(shared: SharedRun, views: list[_StepView], options: HtmlOptions) -> str:
    script = (_TEMPLATES / "share_run.js").read_text(encoding="utf-8")
    styles = (
        confidence.css_variables()
        + "\n"
        + _VIEWER_CONFIDENCE_CSS.read_text(encoding="utf-8")
        + "\n"
        + (_TEMPLATES / "share_run.css").read_text(encoding="utf-8")
    )
    script_hash = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(_TEMPLATES), str(_VIEWER_TEMPLATES)]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["confidence_styles"] = list(confidence.STYLES.values())  # the legend macro reads it
    run = shared.run
    return env.get_template("share_run.html").render(
        run=run,
        goal=run.goal or str(run.task.get("goal") or ""),
        views=views,
        total_steps=shared.total_steps,
        unreadable_lines=[entry.line + 1 for entry in shared.unreadable],  # numbers only: the reasons stay home
        csp=csp,
        styles=Markup(styles),  # our own files, not recorded text
        script=Markup(script),
        conf_low=confidence.LOW_BELOW,
        conf_high=confidence.HIGH_FROM,
        options=options,
    )


def _step_views(shared: SharedRun, options: HtmlOptions) -> tuple[list[_StepView], dict[int, str]]:
    views: list[_StepView] = []
    missing: dict[int, str] = {}
    for step in shared.steps:
        image, why = step_image(shared.run_dir, step, max_width=options.max_width)
        if why is not None:
            missing[step.record.index] = why
        thumb = image.copy()
        thumb.thumbnail((THUMB_WIDTH, THUMB_WIDTH))
        views.append(
            _StepView(
                step=step,
                image=data_uri(image, options.image_format, options.quality),
                thumb=data_uri(thumb, options.image_format, max(30, options.quality - 20)),
                missing=why,
                tool_calls="\n".join(json.dumps(c.model_dump(), ensure_ascii=False) for c in step.record.tool_calls),
                view_box=_view_box(step),
            )
        )
    return views, missing


def _view_box(step: SharedStep) -> tuple[int, int]:
    """The overlay's coordinate space: the screenshot's own pixels, where the marks are."""
    if step.record.coordinate is not None:
        return step.record.coordinate.screenshot_size
    return step.record.screenshot_size


def data_uri(image: Image.Image, fmt: ImageFormat, quality: int) -> str:
    buffer = io.BytesIO()
    if fmt == "webp":
        image.save(buffer, "WEBP", quality=quality, method=4)
    else:
        image.save(buffer, "JPEG", quality=quality, optimize=True, progressive=True)
    return f"data:image/{fmt};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
