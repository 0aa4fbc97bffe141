"""``glassbox export gif``: an animated GIF of a run, one frame per step, the click marked on each.

    info = export_gif(run_dir, Path("run.gif"), options=GifOptions(width=800, frame_ms=1000))

Each frame is the step's screenshot shrunk to ``width``, a ring where the executor acted with the step's
number beside it, and a caption bar (step, action, confidence, outcome; the last frame adds how the run
ended). Pillow only. Each frame gets its own palette of the screenshot's colours plus a few reserved entries
for the marks, so the marker keeps its exact colour after quantizing.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, Field

from replays.share_output import check_out_path, write_atomically
from replays.share_run import SharedRun, SharedStep, load_shared_run, step_image
from tracer.run_files import UnreadableStep

MARKER = (239, 68, 68)  # the viewer's executed-point red
HALO = (255, 255, 255)
CAPTION_BG = (17, 24, 39)
CAPTION_INK = (243, 244, 246)
_RESERVED = (MARKER, HALO, CAPTION_BG, CAPTION_INK)
_SHOT_COLOURS = 256 - len(_RESERVED)  # palette entries left for the screenshot itself
_FONT_FILES = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "Arial.ttf")


class GifOptions(BaseModel):
    width: int = Field(default=800, ge=160, le=1920)  # frames wider than this are shrunk to it
    frame_ms: int = Field(default=1000, ge=20, le=60_000)  # how long each step shows
    last_frame_ms: int | None = Field(default=None, ge=20, le=60_000)  # None: three frames' worth
    max_steps: int = Field(default=200, ge=1)


class GifExportInfo(BaseModel):
    out: Path
    bytes: int
    frames: int
    total_steps: int
    size: tuple[int, int]
    missing: dict[int, str]
    unreadable: list[UnreadableStep] = []  # lines of steps.jsonl left out


def caption_line_height(width: int) -> int:
    return max(18, width // 36)


def caption_height(width: int) -> int:
    """Two lines under the screenshot: the step and its action; the reasoning (the last frame: how the run ended)."""
    return 2 * caption_line_height(width) + 6


def ring_radius(width: int) -> int:
    """The marker ring's radius in frame pixels (the ring is drawn ``ring_width`` thick, centred on it)."""
    return max(9, width // 55)


def ring_width(width: int) -> int:
    return max(3, width // 220)


def export_gif(run_dir: Path, out: Path, *, options: GifOptions | None = None) -> GifExportInfo:
    options = options or GifOptions()
    check_out_path(out)
    shared = load_shared_run(run_dir, max_steps=options.max_steps)
    frames: list[Image.Image] = []
    missing: dict[int, str] = {}
    for position, step in enumerate(shared.steps):
        image, why = step_image(shared.run_dir, step, max_width=options.width)
        if why is not None:
            missing[step.record.index] = why
        last = position == len(shared.steps) - 1
        frames.append(frame(image, step, shared, caption=_caption(step, shared, position, last, why)))
    size = _common_size(frames)
    frames = [f if f.size == size else _pad(f, size) for f in frames]
    durations = [options.frame_ms] * len(frames)
    durations[-1] = options.last_frame_ms or options.frame_ms * 3
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0, disposal=1)
    data = buffer.getvalue()
    write_atomically(out, data)
    return GifExportInfo(
        out=out,
        bytes=len(data),
        frames=len(frames),
        total_steps=shared.total_steps,
        size=size,
        missing=missing,
        unreadable=shared.unreadable,
    )


def frame(shot: Image.Image, step: SharedStep, shared: SharedRun, *, caption: tuple[str, str]) -> Image.Image:
    """One palette frame: the screenshot (quantized), the click ring and number, the caption bar."""
    width = shot.width
    bar = caption_height(width)
    quantized = shot.quantize(colors=_SHOT_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = (quantized.getpalette() or [])[: _SHOT_COLOURS * 3]
    palette += [0] * (_SHOT_COLOURS * 3 - len(palette))
    for colour in _RESERVED:
        palette += list(colour)
    canvas = Image.new("P", (width, shot.height + bar), _index(CAPTION_BG))
    canvas.putpalette(palette)
    canvas.paste(quantized, (0, 0))
    draw = ImageDraw.Draw(canvas)
    point = step.marks.executed
    if point is not None:
        recorded_width = _recorded_width(step)
        scale = width / recorded_width if recorded_width else 1.0
        _draw_marker(draw, (point.x * scale, point.y * scale), step.record.index, width)
    line = caption_line_height(width)
    font = _font(max(10, line * 3 // 4))
    for row, text in enumerate(caption):
        y = shot.height + 3 + line * row + line / 2
        draw.text((8, y), _fit(draw, text, font, width - 16), fill=_index(CAPTION_INK), font=font, anchor="lm")
    return canvas


def _draw_marker(draw: ImageDraw.ImageDraw, centre: tuple[float, float], number: int, width: int) -> None:
    x, y = centre
    r, w = ring_radius(width), ring_width(width)
    halo = w + 4
    draw.ellipse((x - r - halo / 2, y - r - halo / 2, x + r + halo / 2, y + r + halo / 2), outline=_index(HALO), width=halo)
    draw.ellipse((x - r - w / 2, y - r - w / 2, x + r + w / 2, y + r + w / 2), outline=_index(MARKER), width=w)
    font = _font(max(11, r))
    label = str(number)
    left, top = x + r * 0.8, y - r * 1.9
    box = draw.textbbox((left, top), label, font=font)
    pad = 3
    draw.rectangle((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), fill=_index(MARKER), outline=_index(HALO))
    draw.text((left, top), label, fill=_index(HALO), font=font)


def _caption(step: SharedStep, shared: SharedRun, position: int, last: bool, missing: str | None) -> tuple[str, str]:
    record = step.record
    conf = f"confidence {record.confidence:.2f} {step.band.value}" if record.confidence is not None else "confidence unknown"
    parts = [f"step {record.index} ({position + 1}/{len(shared.steps)})", step.action_text.replace("“", '"').replace("”", '"')]
    parts += [conf, record.outcome]
    if missing:
        parts.append("screenshot missing")
    if last:
        run = shared.run
        second = f"run {run.status.value}" + (f": {run.end_reason}" if run.end_reason else "")
        if run.checks:
            second += f" · checks {sum(c.passed for c in run.checks)}/{len(run.checks)} passed"
    elif record.error:
        second = f"error: {record.error}"
    else:
        second = " ".join((record.reasoning or "").split())
    return " · ".join(parts), second


def _recorded_width(step: SharedStep) -> int:
    if step.record.coordinate is not None:
        return step.record.coordinate.screenshot_size[0]
    return step.record.screenshot_size[0]


def _index(colour: tuple[int, int, int]) -> int:
    return _SHOT_COLOURS + _RESERVED.index(colour)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, room: float) -> str:
    """``text`` cut (with an ellipsis) to fit ``room`` pixels."""
    if draw.textlength(text, font=font) <= room:
        return text
    while text and draw.textlength(text + "…", font=font) > room:
        text = text[:-1]
    return text + "…"


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in _FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _common_size(frames: list[Image.Image]) -> tuple[int, int]:
    """A GIF has one canvas: as wide and as tall as the largest frame (screens of one run are one size)."""
    return max(f.width for f in frames), max(f.height for f in frames)


def _pad(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    canvas = Image.new("P", size, _index(CAPTION_BG))
    canvas.putpalette(image.getpalette() or [])
    canvas.paste(image, (0, 0))
    return canvas
