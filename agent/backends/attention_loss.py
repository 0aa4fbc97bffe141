"""Attention guidance for fine-tuning: the share of the action tokens' attention to the screenshot that falls
inside the labelled element's box, differentiable, from the same rows the attention maps are made of.

The attention maps (:mod:`agent.backends.attention`, :func:`tracer.attention.AttentionMaps.from_rows`) take,
per decoder layer, each chosen token's attention to the current screenshot's image tokens, heads averaged;
then average the tokens, average the layers (the ``all`` group: every layer) and normalise over the image.
:func:`box_mass` is that map's mass inside the box (``mass_in_evidence`` in the figures), computed during a
training forward with gradients: ``glassbox train --attention-guidance W`` adds ``W * (1 - box_mass)``.

During the guided forward a custom attention function (registered with transformers' ``AttentionInterface``)
runs sdpa for the layer's output as usual and, for the few query rows that produce the action tokens, computes
their attention probabilities once more (small: rows x keys) to keep the image columns.

    spec = GuidanceSpec(query_positions=..., image_positions=..., inside=...)
    with guided(net, spec):
        out = net(...)
    loss = loss + weight * (1 - box_mass(spec))
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agent.backends.attention import register_attention, repeat_kv

GUIDED_IMPL = "glassbox_guided"

_active: contextvars.ContextVar["GuidanceSpec | None"] = contextvars.ContextVar("glassbox_attention_guidance", default=None)


@dataclass
class GuidanceSpec:
    """Which queries and keys a guided forward watches (positions in the one, unpadded sequence)."""

    query_positions: Any  # LongTensor: the queries that produce the action (coordinate) tokens
    image_positions: Any  # LongTensor: key positions of the current screenshot's image tokens, row-major
    inside: Any  # BoolTensor (n_image,): the image cells inside the labelled box
    layers: set[int] | None = None  # None: every layer, as the maps' "all" group
    rows: dict[int, Any] = field(default_factory=dict)  # layer -> (n_queries, n_image), heads averaged


def _guided_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> Any:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    out = sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    spec = _active.get()
    layer = getattr(module, "layer_idx", None)
    if spec is not None and layer is not None and query.shape[0] == 1 and (spec.layers is None or layer in spec.layers):
        # Only the forward whose queries include the watched ones (not the prompt's, run before into a cache).
        first, end = key.shape[2] - query.shape[2], key.shape[2]  # the positions this forward's queries hold
        if int(spec.query_positions.min()) >= first and int(spec.query_positions.max()) < end:
            spec.rows[layer] = _image_rows(query, key, spec, scaling)
    return out


def _image_rows(query: Any, key: Any, spec: GuidanceSpec, scaling: float | None) -> Any:
    """(n_queries, n_image): the watched queries' attention probabilities on the image keys, heads averaged."""
    import torch

    # The forward may cover only the sequence's tail (the prompt's keys in a cache): queries are indexed from it.
    offset = key.shape[2] - query.shape[2]
    q = query[0][:, spec.query_positions - offset].float()  # (heads, n_q, d)
    k = repeat_kv(key[0].float(), q.shape[0])
    scores = torch.matmul(q, k.transpose(-1, -2)) * (scaling if scaling is not None else q.shape[-1] ** -0.5)
    # Causal: a query sees the keys up to its own position (one unpadded sequence).
    keys = torch.arange(k.shape[1], device=q.device)
    scores = scores.masked_fill(keys[None, None, :] > spec.query_positions[None, :, None], float("-inf"))
    probs = scores.softmax(dim=-1)
    return probs[:, :, spec.image_positions].mean(0)


@contextlib.contextmanager
def guided(net: Any, spec: GuidanceSpec) -> Iterator[GuidanceSpec]:
    """Run forwards of ``net`` (a Qwen3-VL, or a PEFT model around one) recording ``spec``'s rows."""
    register_attention(GUIDED_IMPL, _guided_attention)
    config = net.config
    previous = config.text_config._attn_implementation
    vision = config.vision_config._attn_implementation
    token = _active.set(spec)
    spec.rows.clear()
    try:
        net.set_attn_implementation({"text_config": GUIDED_IMPL, "vision_config": vision})
        yield spec
    finally:
        _active.reset(token)
        net.set_attn_implementation({"text_config": previous, "vision_config": vision})


def box_mass(spec: GuidanceSpec) -> Any:
    """The map's share inside the box: rows averaged over queries and layers, normalised over the image."""
    import torch

    if not spec.rows:
        raise ValueError("no attention rows were recorded: run the forward inside guided()")
    per_cell = torch.stack([spec.rows[layer] for layer in sorted(spec.rows)]).mean(dim=(0, 1))  # (n_image,)
    total = per_cell.sum()
    return per_cell[spec.inside].sum() / total.clamp_min(1e-12)


def box_cells(grid: tuple[int, int], box: tuple[float, float, float, float]) -> list[bool]:
    """Which cells of the merged patch grid (rows, cols), row-major, have their centre inside ``box``.

    ``box`` is (left, top, right, bottom) on the 0..1000 grid over the screenshot. A box smaller than a cell
    keeps the one cell holding its centre, so the guidance always has a target.
    """
    rows, cols = grid
    left, top, right, bottom = box
    inside = []
    for r in range(rows):
        y = (r + 0.5) / rows * 1000
        for c in range(cols):
            x = (c + 0.5) / cols * 1000
            inside.append(left <= x <= right and top <= y <= bottom)
    if not any(inside):
        cx, cy = (left + right) / 2, (top + bottom) / 2
        r = min(rows - 1, max(0, int(cy / 1000 * rows)))
        c = min(cols - 1, max(0, int(cx / 1000 * cols)))
        inside[r * cols + c] = True
    return inside


__all__ = ["GUIDED_IMPL", "GuidanceSpec", "box_cells", "box_mass", "guided"]
