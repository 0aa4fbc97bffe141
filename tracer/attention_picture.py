"""Attention maps drawn for a person: the screenshot dimmed, the map in a perceptual colour scale (viridis) and
its top region outlined, plus the scale as CSS for a legend.

    png = attention_picture(screenshot_png, maps.maps["action/deep"], max_width=480)
    box = top_region(maps.maps["action/deep"], (1280, 800))  # (left, top, right, bottom) in screenshot pixels
"""

from __future__ import annotations

import io

import numpy as np
from pydantic import BaseModel

from tools.images import open_rgb

# Matplotlib's viridis sampled at nine even points (perceptually uniform, readable in grey and by colour-blind
# eyes); the lookup table interpolates between them.
_VIRIDIS_STOPS = (
    (68, 1, 84),
    (72, 40, 120),
    (62, 73, 137),
    (49, 104, 142),
    (38, 130, 142),
    (31, 158, 137),
    (53, 183, 121),
    (110, 206, 88),
    (253, 231, 37),
)
TOP_COLOUR = _VIRIDIS_STOPS[-1]
DIM = 0.4  # the screenshot's brightness under the map: dark enough for the colours to read, light enough to see
TOP_SHARE = 0.5  # the top region: cells with at least half the peak's weight above an even spread, touching the peak


def _lookup_table() -> np.ndarray:
    stops = np.array(_VIRIDIS_STOPS, dtype=np.float64)
    pos = np.linspace(0, len(stops) - 1, 256)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - lo)[:, None]
    return np.round(stops[lo] * (1 - frac) + stops[lo + 1] * frac).astype(np.uint8)


LUT = _lookup_table()  # (256, 3) uint8: LUT[0] is the lowest weight, LUT[255] the peak


def colormap(x: np.ndarray) -> np.ndarray:
    """Colours (uint8 RGB, shape ``x.shape + (3,)``) of weights in [0, 1] (clipped)."""
    return LUT[np.round(np.clip(np.asarray(x, dtype=np.float64), 0, 1) * 255).astype(int)]


def css_gradient() -> str:
    """The colour scale as a CSS ``linear-gradient`` (left: low, right: the peak) for a legend."""
    stops = ", ".join(
        f"rgb({r} {g} {b}) {i * 100 / (len(_VIRIDIS_STOPS) - 1):.1f}%" for i, (r, g, b) in enumerate(_VIRIDIS_STOPS)
    )
    return f"linear-gradient(to right, {stops})"


class TopRegion(BaseModel):
    """The box around the map's top region, in screenshot pixels, and the share of the mass inside the region."""

    box: tuple[int, int, int, int]  # left, top, right, bottom
    mass: float  # share of the map's mass in the region's cells, in [0, 1]


def _normalised(m: np.ndarray) -> np.ndarray:
    """Each cell's attention above an even spread, as a share of the peak's: 0 at or below an even spread, 1 at
    the peak. A near-even map (a model that looked nowhere in particular) then stays mostly dark instead of
    lighting up everywhere; an exactly even one stays dark."""
    m = np.nan_to_num(np.asarray(m, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    total = float(m.sum()) if m.size else 0.0
    if total <= 0:
        return np.zeros_like(m)
    excess = (m / total - 1 / m.size).clip(min=0)
    peak = float(excess.max())
    return excess / peak if peak > 0 else np.zeros_like(m)


def _top_cells(norm: np.ndarray) -> np.ndarray:
    """Boolean mask: the cells >= TOP_SHARE of the peak (above an even spread) that reach the peak cell through
    such cells (4-neighbours)."""
    strong = norm >= TOP_SHARE
    mask = np.zeros_like(strong)
    start = np.unravel_index(int(norm.argmax()), norm.shape)
    if not strong[start]:
        return mask
    stack = [start]
    mask[start] = True
    rows, cols = norm.shape
    while stack:
        r, c = stack.pop()
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < rows and 0 <= nc < cols and strong[nr, nc] and not mask[nr, nc]:
                mask[nr, nc] = True
                stack.append((nr, nc))
    return mask


def top_region(m: np.ndarray, size: tuple[int, int]) -> TopRegion | None:
    """The top region of ``m`` (a grid over a screenshot of ``size`` = width, height); None for an even map."""
    norm = _normalised(m)
    if norm.ndim != 2 or not norm.size or float(norm.max()) <= 0:
        return None
    mask = _top_cells(norm)
    rows, cols = norm.shape
    ys, xs = np.nonzero(mask)
    width, height = size
    box = (
        int(xs.min() * width // cols),
        int(ys.min() * height // rows),
        int(-(-(xs.max() + 1) * width // cols)),
        int(-(-(ys.max() + 1) * height // rows)),
    )
    values = np.asarray(m, dtype=np.float64).clip(min=0)
    total = float(values.sum())
    return TopRegion(box=box, mass=round(float(values[mask].sum()) / total, 6) if total > 0 else 0.0)


def attention_picture(screenshot_png: bytes, m: np.ndarray, *, max_width: int | None = None) -> bytes:
    """The screenshot dimmed, ``m``'s attention above an even spread laid over it in viridis (opacity rising
    with it, the peak in the top colour), and the top region outlined; a PNG at screenshot size, or ``max_width`` wide."""
    from PIL import Image, ImageDraw

    base = open_rgb(screenshot_png, what="the step's screenshot")
    full_size = base.size
    if max_width and base.width > max_width:
        size = (max_width, max(1, round(base.height * max_width / base.width)))
        base = base.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)  # a box reduce first: fast, still sharp
    norm = _normalised(m)
    if norm.ndim != 2 or not norm.size:
        raise ValueError(f"an attention map is a 2-D grid, not shape {norm.shape}")
    # One colour per cell, as the model saw the screen (one merged patch per cell): colour and opacity are worked
    # out per cell and only then enlarged (nearest), so every pixel's colour is on the scale, the peak cell is the
    # top colour, and the work is per cell, not per pixel.
    colours = Image.fromarray(colormap(norm), "RGB").resize(base.size, Image.Resampling.NEAREST)
    opacity = np.round(norm**0.75 * 255).astype(np.uint8)  # mid weights stay visible, faint ones barely tint
    mask = Image.fromarray(opacity, "L").resize(base.size, Image.Resampling.NEAREST)
    dimmed = base.point([round(i * DIM) for i in range(256)] * 3)
    out = Image.composite(colours, dimmed, mask)
    region = top_region(m, full_size)
    if region is not None:
        sx, sy = base.width / full_size[0], base.height / full_size[1]
        left, top, right, bottom = region.box
        line = max(2, round(base.width / 400))
        pad = line + 2  # the outline goes around the region, leaving its colours visible
        box = (
            max(0, round(left * sx) - pad),
            max(0, round(top * sy) - pad),
            min(out.width - 1, round(right * sx) - 1 + pad),
            min(out.height - 1, round(bottom * sy) - 1 + pad),
        )
        draw = ImageDraw.Draw(out)
        draw.rectangle(box, outline=(0, 0, 0), width=line + 2)  # a dark edge keeps the white line visible on yellow
        draw.rectangle((box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1), outline=(255, 255, 255), width=line)
    buffer = io.BytesIO()
    out.save(buffer, "PNG")
    return buffer.getvalue()


__all__ = ["DIM", "LUT", "TOP_COLOUR", "TopRegion", "attention_picture", "colormap", "css_gradient", "top_region"]
