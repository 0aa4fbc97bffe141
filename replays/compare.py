"""Does the screen still look like the recorded one? A perceptual comparison robust to rendering noise.

The whole screens are shrunk (which averages away anti-aliasing and sub-pixel shifts) and compared by mean
absolute colour difference in [0, 1]; the region around the acting point (the evidence box) is compared at
full resolution with a 1-pixel blur, because a moved button changes little of the whole screen but most of
its neighbourhood, and another word in the same place must count.

    verdict = compare_screens(recorded_png, current_png, point=(640, 400), box=(600, 380, 700, 420))
    verdict.matches, verdict.screen_diff, verdict.region_diff
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pydantic import BaseModel

from tools.images import open_rgb

SCREEN_SIZE = (96, 60)
REGION_SIZE = (48, 48)
REGION_HALF = 60  # screenshot pixels around the point when there is no evidence box


class ScreenDiff(BaseModel):
    screen_diff: float  # mean absolute colour difference of the shrunk screen, 0..1
    region_diff: float | None  # mean absolute colour difference around the acting point, full resolution
    matches: bool
    reason: str | None = None


class Thresholds(BaseModel):
    screen: float = 0.08
    region: float = 0.06


def _rgb(png: bytes, what: str = "a screenshot to compare") -> Image.Image:
    return open_rgb(png, what=what)


def _small(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    # A box filter averages every source pixel into the small image: the blur comes with the shrink.
    return np.asarray(image.resize(size, Image.Resampling.BOX), dtype=np.float32) / 255.0


def screen_signature(png: bytes, what: str = "the recorded screenshot") -> np.ndarray:
    """The shrunk screen used for the whole-screen comparison (compute once per recorded screenshot)."""
    return _small(_rgb(png, what), SCREEN_SIZE)


def _native(image: Image.Image) -> np.ndarray:
    # Full resolution with a 1-pixel blur: anti-aliasing noise fades, a different word does not.
    return np.asarray(image.filter(ImageFilter.BoxBlur(1)), dtype=np.float32) / 255.0


def compare_screens(
    recorded: bytes,
    current: bytes,
    *,
    point: tuple[int, int] | None = None,
    box: tuple[int, int, int, int] | None = None,
    thresholds: Thresholds | None = None,
    recorded_signature: np.ndarray | None = None,
    names: tuple[str, str] = ("the recorded screenshot", "the current screenshot"),
) -> ScreenDiff:
    """Compare the screens; the region around ``point`` / ``box`` only when one is given. ``names``: what each is,
    for the error (:class:`tools.images.UnreadableImage`) when one cannot be read."""
    t = thresholds or Thresholds()
    b = _rgb(current, names[1])
    need_region = point is not None or box is not None
    a = _rgb(recorded, names[0]) if need_region or recorded_signature is None else None
    if a is not None and a.size != b.size:
        return ScreenDiff(
            screen_diff=1.0, region_diff=None, matches=False, reason=f"screen size changed from {a.size} to {b.size}"
        )
    signature = recorded_signature if recorded_signature is not None else _small(a, SCREEN_SIZE)  # type: ignore[arg-type]
    screen = float(np.abs(signature - _small(b, SCREEN_SIZE)).mean())
    region = None
    if need_region and a is not None:
        if box is None:
            x, y = point  # type: ignore[misc]
            box = (x - REGION_HALF, y - REGION_HALF, x + REGION_HALF, y + REGION_HALF)
        left, top, right, bottom = (max(0, box[0]), max(0, box[1]), min(a.width, box[2]), min(a.height, box[3]))
        if right > left and bottom > top:
            region = float(
                np.abs(_native(a.crop((left, top, right, bottom))) - _native(b.crop((left, top, right, bottom)))).mean()
            )
    reasons = []
    if screen > t.screen:
        reasons.append(f"the screen differs by {screen:.3f} (threshold {t.screen})")
    if region is not None and region > t.region:
        reasons.append(f"the region around the target differs by {region:.3f} (threshold {t.region})")
    return ScreenDiff(
        screen_diff=round(screen, 4),
        region_diff=None if region is None else round(region, 4),
        matches=not reasons,
        reason="; ".join(reasons) or None,
    )


def side_by_side(
    recorded: bytes,
    current: bytes,
    *,
    box: tuple[int, int, int, int] | None = None,
    labels: tuple[str, str] = ("recorded", "now"),
) -> bytes:
    """The two screens next to each other (the target box outlined), as PNG, for a person to see the change."""
    a, b = open_rgb(recorded, what="the recorded screenshot"), open_rgb(current, what="the current screenshot")
    width = max(a.width, b.width)
    out = Image.new("RGB", (width * 2 + 12, max(a.height, b.height) + 28), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for i, (image, label) in enumerate(((a, labels[0]), (b, labels[1]))):
        x0 = i * (width + 12)
        out.paste(image, (x0, 28))
        draw.text((x0 + 6, 8), label, fill=(17, 24, 39))
        if box is not None:
            draw.rectangle((x0 + box[0], 28 + box[1], x0 + box[2], 28 + box[3]), outline=(239, 68, 68), width=3)
    buffer = io.BytesIO()
    out.save(buffer, "PNG")
    return buffer.getvalue()
