"""Attention maps of a step: small float16 grids per target (action, reasoning, a word) and layer group,
their figures (peak, concentration, entropy, agreement with the executed click), and heat overlays
rendered on demand (never stored at full size).

    maps = AttentionMaps.from_rows(rows, grid=(25, 40), resized_size=(1280, 800),
                                   targets={"action": [40, 41, 43], "reasoning": range(0, 30)})
    maps.save(step_dir / "attention.npz")
    overlay_png(screenshot_png, maps.maps["action/deep"])
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from pydantic import BaseModel

from tools.images import open_rgb
from tracer.run_files import atomic_write

GROUPS = ("shallow", "middle", "deep")

# A run folder may come from elsewhere: what a maps file may hold before anything of it is decoded. A real one is
# tens of KB (a 25x40 float16 grid per target and group); a crafted one must not make the viewer allocate GBs.
MAX_MAPS_FILE = 16 * 2**20
MAX_MAPS = 256  # arrays in one file
MAX_GRID_SIDE = 1024  # cells a side (a 32 px patch grid of an 8192 px screenshot is 256)
MAX_HEAT_SIDE = 4096  # px: a heat layer for a larger screenshot is drawn smaller (a browser scales it up)


def layer_groups(n_layers: int) -> dict[str, list[int]]:
    """First, middle and last third of the decoder layers (every layer in exactly one group)."""
    bounds = [round(i * n_layers / 3) for i in range(4)]
    groups = {name: list(range(bounds[i], bounds[i + 1])) for i, name in enumerate(GROUPS)}
    return {k: v for k, v in groups.items() if v} or {"deep": list(range(n_layers))}


class MapFigures(BaseModel):
    """Figures of one map; fractions are in [0, 1]."""

    peak_px: tuple[int, int]  # screenshot pixels
    concentration: float  # share of the mass in the top 5 % of cells
    entropy: float  # normalised: 0 = one cell, 1 = uniform
    peak_to_click_px: float | None = None
    mass_in_evidence: float | None = None


class AttentionMaps:
    """Named maps (``target/group``) on the merged patch grid, normalised to sum to 1."""

    def __init__(self, maps: dict[str, np.ndarray], resized_size: tuple[int, int]) -> None:
        self.maps = maps
        self.resized_size = resized_size

    @classmethod
    def from_rows(
        cls,
        rows: np.ndarray,
        *,
        grid: tuple[int, int],
        resized_size: tuple[int, int],
        targets: Mapping[str, Iterable[int]],
        groups: Mapping[str, list[int]] | None = None,
    ) -> "AttentionMaps":
        """``rows``: (layers, tokens, image cells). Each target averages its tokens' rows, each group its layers."""
        rows = np.asarray(rows, dtype=np.float32)
        groups = groups or layer_groups(rows.shape[0])
        maps: dict[str, np.ndarray] = {}
        for target, token_idx in targets.items():
            idx = [i for i in token_idx if 0 <= i < rows.shape[1]]
            if not idx:
                continue
            per_layer = rows[:, idx, :].mean(axis=1)  # (layers, cells)
            for group, layers in {**groups, "all": list(range(rows.shape[0]))}.items():
                m = per_layer[layers].mean(axis=0).reshape(grid)
                total = float(m.sum())
                maps[f"{target}/{group}"] = (m / total if total > 0 else m).astype(np.float16)
        return cls(maps, resized_size)

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        arrays = {k.replace("/", "__"): v for k, v in self.maps.items()}
        # Plain numeric arrays only (load reads without pickle too); naming allow_pickle also keeps it out of **arrays.
        np.savez_compressed(buffer, resized_size=np.array(self.resized_size), allow_pickle=False, **arrays)
        atomic_write(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "AttentionMaps":
        """Read maps saved by :meth:`save`. ValueError (saying what is wrong) for a file that is not such maps:
        too large, not an .npz, or arrays that are not small finite 2-D grids; no array is decoded before its
        header was checked, so a small file that would expand to GBs is refused first."""
        if path.stat().st_size > MAX_MAPS_FILE:
            raise ValueError(f"{path.name} is larger than {MAX_MAPS_FILE // 2**20} MB")
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n.removesuffix(".npy") for n in archive.namelist()]
                if len(names) > MAX_MAPS or "resized_size" not in names:
                    raise ValueError(f"{path.name} holds {len(names)} arrays, not attention maps")
                for name in names:
                    _check_header(archive, name)
        except zipfile.BadZipFile:
            raise ValueError(f"{path.name} is not an .npz file") from None
        with np.load(path, allow_pickle=False) as data:
            size = data["resized_size"]
            if size.shape != (2,) or not all(0 < int(x) <= 16384 for x in size):
                raise ValueError(f"{path.name}: resized_size is not (width, height)")
            width, height = (int(x) for x in size)
            maps = {k.replace("__", "/"): data[k] for k in data.files if k != "resized_size"}
        for key, grid in maps.items():
            if not np.isfinite(grid).all():
                raise ValueError(f"{path.name}: the map {key!r} holds values that are not finite numbers")
        return cls(maps, (width, height))


def _check_header(archive: zipfile.ZipFile, name: str) -> None:
    """Refuse an array of an npz by its header alone: not a number, or not a grid of at most MAX_GRID_SIDE a side."""
    with archive.open(name + ".npy") as member:
        try:
            version = np.lib.format.read_magic(member)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"format version {version}")
            shape, _, dtype = read(member)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"the array {name!r} has no valid header: {exc}") from None
    if dtype.kind not in "fiu":
        raise ValueError(f"the array {name!r} holds {dtype}, not numbers")
    wanted = 1 if name == "resized_size" else 2
    if len(shape) != wanted or not all(0 < side <= MAX_GRID_SIDE for side in shape):
        raise ValueError(f"the array {name!r} has shape {shape}, not a grid of 1 to {MAX_GRID_SIDE} cells a side")


def cell_centers(grid: tuple[int, int], screenshot_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = grid
    xs = (np.arange(cols) + 0.5) / cols * screenshot_size[0]
    ys = (np.arange(rows) + 0.5) / rows * screenshot_size[1]
    return xs, ys


def figures(
    m: np.ndarray,
    screenshot_size: tuple[int, int],
    *,
    click_px: tuple[float, float] | None = None,
    evidence_box: tuple[int, int, int, int] | None = None,
) -> MapFigures:
    m = np.asarray(m, dtype=np.float64)
    total = m.sum()
    p = m / total if total > 0 else np.full(m.shape, 1 / m.size)
    flat = p.ravel()
    r, c = np.unravel_index(int(flat.argmax()), p.shape)
    xs, ys = cell_centers(p.shape, screenshot_size)  # type: ignore[arg-type]
    peak = (int(round(xs[c])), int(round(ys[r])))
    k = max(1, int(np.ceil(flat.size * 0.05)))
    concentration = float(np.sort(flat)[-k:].sum())
    nz = flat[flat > 0]
    entropy = float(-(nz * np.log(nz)).sum() / np.log(flat.size)) if flat.size > 1 else 0.0
    fig = MapFigures(peak_px=peak, concentration=round(min(1.0, concentration), 6), entropy=round(min(1.0, max(0.0, entropy)), 6))
    if click_px is not None:
        fig.peak_to_click_px = round(float(np.hypot(peak[0] - click_px[0], peak[1] - click_px[1])), 1)
    if evidence_box is not None:
        left, top, right, bottom = evidence_box
        inside = (xs[None, :] >= left) & (xs[None, :] <= right) & (ys[:, None] >= top) & (ys[:, None] <= bottom)
        fig.mass_in_evidence = round(float(p[inside].sum()), 6)
    return fig


def overlay_png(screenshot_png: bytes, m: np.ndarray, *, alpha: float = 0.55, max_width: int | None = None) -> bytes:
    """A heat overlay (viridis) of ``m`` over the screenshot, as PNG, at screenshot size (or ``max_width``)."""
    from PIL import Image

    base = open_rgb(screenshot_png, what="the step's screenshot")
    if max_width and base.width > max_width:
        base = base.resize((max_width, round(base.height * max_width / base.width)))
    m = np.asarray(m, dtype=np.float32)
    peak = float(m.max())
    norm = m / peak if peak > 0 else m
    heat = Image.fromarray((_colormap(norm) * 255).astype(np.uint8), "RGB").resize(base.size, Image.Resampling.BILINEAR)
    weight = Image.fromarray((np.clip(norm, 0, 1) * alpha * 255).astype(np.uint8), "L")
    weight = weight.resize(base.size, Image.Resampling.BILINEAR)
    out = Image.composite(heat, base, weight)
    buffer = io.BytesIO()
    out.save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def heat_png(m: np.ndarray, size: tuple[int, int], *, alpha: float = 0.6) -> bytes:
    """A transparent heat layer of ``m`` at ``size`` (to lay over the screenshot in a browser; at most
    MAX_HEAT_SIDE pixels a side), as PNG."""
    from PIL import Image

    m = np.asarray(m, dtype=np.float32)
    peak = float(m.max())
    norm = np.clip(m / peak if peak > 0 else m, 0, 1)
    rgba = np.dstack([_colormap(norm), norm * alpha])
    width, height = size
    shrink = max(width, height) / MAX_HEAT_SIDE
    if shrink > 1:  # a screenshot this large (or a record that says so) gets a smaller layer, the same shape
        width, height = max(1, round(width / shrink)), max(1, round(height / shrink))
    image = Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").resize((width, height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _colormap(x: np.ndarray) -> np.ndarray:
    """The viewer's perceptual scale (viridis, see attention_picture), as floats in [0, 1]."""
    from tracer.attention_picture import colormap

    return colormap(x) / 255.0
