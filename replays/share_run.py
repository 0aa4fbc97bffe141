"""A run read back for sharing (``glassbox export html`` / ``gif``): its record, its steps with the points to
draw, and each screenshot shrunk (or a placeholder where the file is gone).

    shared = load_shared_run(run_dir, max_steps=500)
    for step in shared.steps:
        image, missing = step_image(shared.run_dir, step, max_width=960)

A run folder is untrusted input: files named by a record are read only inside the folder, and text from it is
passed through a scrubber built from any secret value an older or hand-made ``run.json`` still holds (runs
recorded now keep only the placeholder ``<secret>``), so an export cannot carry one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, ConfigDict

from replays.confidence import ConfidenceBand, band
from tools.errors import UsageError
from tools.images import open_rgb
from tracer.labels import current_labels, read_label_events
from tracer.run_files import MissingRunFile, read_step_file
from tracer.schema import RunRecord, StepRecord
from tracer.secrets import Scrubber
from tracer.store import UnreadableStep, read_run, read_step_entries, split_entries

SECRET_PLACEHOLDER = "<secret>"  # what agent.task.Task.public_dict() records in place of a secret input's value


class ShareError(UsageError, ValueError):
    """The run cannot be shared as asked (no steps, a bad limit, an output path that cannot be written)."""


class Point(BaseModel):
    model_config = ConfigDict(frozen=True)

    x: float
    y: float


class StepMarks(BaseModel):
    """What to draw on a step's screenshot, in that screenshot's pixels."""

    executed: Point | None = None  # where the executor acted
    model: Point | None = None  # where the model pointed (differs from executed when clamped or mapped)
    box: tuple[int, int, int, int] | None = None  # the evidence box: left, top, right, bottom


class StepLabel(BaseModel):
    verdict: str
    correction: str | None = None
    note: str | None = None
    point: Point | None = None  # a correction's point in screenshot pixels (labels use the 0..1000 grid)


class SharedStep(BaseModel):
    record: StepRecord
    action_text: str  # e.g. "left_click (500, 462)", 'type "admin"'
    band: ConfidenceBand
    marks: StepMarks
    labels: list[StepLabel]


class SharedRun(BaseModel):
    run: RunRecord
    run_dir: Path
    steps: list[SharedStep]
    total_steps: int  # steps recorded; more than len(steps) when --max-steps cut the export short
    unreadable: list[UnreadableStep] = []  # lines of steps.jsonl that cannot be read: left out, and said so


def load_shared_run(run_dir: Path, *, max_steps: int) -> SharedRun:
    """The run in ``run_dir`` with its first ``max_steps`` steps, text scrubbed of any secret value left in it."""
    if max_steps < 1:
        raise ShareError(f"--max-steps must be at least 1, not {max_steps}")
    try:
        run = read_run(run_dir)
        steps, unreadable = split_entries(read_step_entries(run_dir))
    except (FileNotFoundError, ValueError) as exc:
        raise ShareError(str(exc)) from None
    if not steps:
        raise ShareError(f"run {run.run_id} has no recorded step: nothing to share")
    scrubber = Scrubber.from_secrets(leftover_secrets(run.task))
    labels = _labels_by_step(run_dir, {s.index: s.screenshot_size for s in steps})
    shared = [
        SharedStep(
            record=step,
            action_text=action_text(step),
            band=band(step.confidence),
            marks=step_marks(step),
            labels=labels.get(step.index, []),
        )
        for step in steps[:max_steps]
    ]
    run, shared = scrubber.scrub(run), scrubber.scrub(shared)
    return SharedRun(run=run, run_dir=run_dir, steps=shared, total_steps=len(steps), unreadable=unreadable)


def leftover_secrets(task: dict[str, Any]) -> dict[str, str]:
    """``{name: value}`` of inputs marked secret whose value is not the placeholder: a run folder written by
    hand or by an old version. Nothing in an export may show them."""
    inputs = task.get("inputs")
    if not isinstance(inputs, dict):
        return {}
    found = {}
    for name, spec in inputs.items():
        if isinstance(spec, dict) and spec.get("secret") and isinstance(spec.get("value"), str):
            if spec["value"] and spec["value"] != SECRET_PLACEHOLDER:
                found[str(name)] = spec["value"]
    return found


def action_text(step: StepRecord) -> str:
    """The step's action in a few words, as the viewer's filmstrip writes it."""
    action = step.action
    if action is None:
        if step.unreadable_action is not None:
            return "unreadable action"
        return "parse error" if step.error_kind is not None and step.error_kind.value == "parse" else "no action"
    data = action.model_dump()
    extra = ""
    if isinstance(data.get("coordinate"), list):
        extra = " (" + ", ".join(str(round(v)) for v in data["coordinate"]) + ")"
    elif isinstance(data.get("text"), str):
        text = data["text"]
        extra = f" “{text[:24]}{'…' if len(text) > 24 else ''}”"
    elif isinstance(data.get("keys"), list):
        extra = " " + "+".join(str(k) for k in data["keys"])
    elif data.get("status"):
        extra = f" {data['status']}"
    elif data.get("url"):
        extra = f" {str(data['url'])[:60]}"
    return f"{action.action}{extra}"


def step_marks(step: StepRecord) -> StepMarks:
    c = step.coordinate
    if c is None:
        return StepMarks()
    width, height = c.screenshot_size
    executed = Point(x=c.css[0] * c.device_scale_factor, y=c.css[1] * c.device_scale_factor)
    model: Point | None = None
    if c.resized_size:  # absolute mode: pixels of the image the model saw
        model = Point(x=c.model[0] / c.resized_size[0] * width, y=c.model[1] / c.resized_size[1] * height)
    elif c.divisor:
        model = Point(x=c.model[0] / c.divisor * width, y=c.model[1] / c.divisor * height)
    box = step.evidence.box if step.evidence is not None else None
    # A crafted record may hold an infinite scale or a NaN coordinate: such a point is not drawn.
    return StepMarks(executed=_finite(executed), model=_finite(model), box=box)


def _finite(point: Point | None) -> Point | None:
    if point is None or not (math.isfinite(point.x) and math.isfinite(point.y)):
        return None
    return point


def step_image(run_dir: Path, step: SharedStep, *, max_width: int) -> tuple[Image.Image, str | None]:
    """The step's screenshot at most ``max_width`` wide (RGB), and None; or a placeholder of the recorded size
    and why the screenshot could not be used."""
    record = step.record
    try:
        rgb = open_rgb(read_step_file(run_dir, record.screenshot, record.index), what=record.screenshot)
    except MissingRunFile:
        return placeholder(record, max_width, "screenshot missing"), f"{record.screenshot} is missing"
    except (ValueError, OSError) as exc:  # UnreadableImage (corrupt, not an image, too large), a path outside the run
        return placeholder(record, max_width, "screenshot unreadable"), str(exc)  # it names the file
    return shrink(rgb, max_width), None


def shrink(image: Image.Image, max_width: int) -> Image.Image:
    if image.width <= max_width:
        return image
    height = max(1, round(image.height * max_width / image.width))
    return image.resize((max_width, height), Image.Resampling.LANCZOS)


def placeholder(record: StepRecord, max_width: int, text: str) -> Image.Image:
    """A grey frame of the screenshot's recorded shape saying what is missing, so marks still land in place."""
    width, height = record.screenshot_size
    if width < 1 or height < 1 or width > 20_000 or height > 20_000:
        width, height = 1280, 800
    scale = min(1.0, max_width / width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.new("RGB", size, (226, 226, 226))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, size[0] // 30))
    draw.text((size[0] / 2, size[1] / 2), f"step {record.index}: {text}", fill=(80, 80, 80), font=font, anchor="mm")
    return image


def _labels_by_step(run_dir: Path, sizes: dict[int, tuple[int, int]]) -> dict[int, list[StepLabel]]:
    events, _ = read_label_events(run_dir)
    found: dict[int, list[StepLabel]] = {}
    for current in current_labels(events):
        if current.deleted:
            continue
        label = current.label
        size = sizes.get(label.step, (1000, 1000))
        found.setdefault(label.step, []).append(
            StepLabel(
                verdict=label.verdict,
                correction=_correction_text(label.correction),
                note=label.note,
                point=_correction_point(label.correction, size),
            )
        )
    return found


def _correction_point(correction: dict[str, Any] | None, size: tuple[int, int]) -> Point | None:
    coordinate = (correction or {}).get("coordinate")
    if not (isinstance(coordinate, list) and len(coordinate) == 2):
        return None
    x, y = coordinate
    if not all(isinstance(v, (int, float)) and 0 <= v <= 1000 for v in (x, y)):
        return None
    return Point(x=x / 1000 * size[0], y=y / 1000 * size[1])


def _correction_text(correction: dict[str, Any] | None) -> str | None:
    if not correction:
        return None
    text = str(correction.get("action", "?"))
    coordinate = correction.get("coordinate")
    if isinstance(coordinate, list) and len(coordinate) == 2 and all(isinstance(v, (int, float)) for v in coordinate):
        text += f" ({round(coordinate[0])}, {round(coordinate[1])})"
    if isinstance(correction.get("text"), str):
        text += f" “{correction['text'][:40]}”"
    return text
