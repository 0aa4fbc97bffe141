"""Attention capture for the local Qwen3-VL backend: exact, after generation, never inside the decode loop.

After ``generate``, one teacher-forced forward over the generated tokens, reusing the prompt's KV cache,
replays the queries that produced each token. A custom attention function (registered with
transformers' ``AttentionInterface``; it delegates to sdpa, so the model is never switched to eager and no
full attention matrix is kept) records, per decoder layer, each query row's attention to the current
screenshot's image tokens, heads reduced. Causal attention makes these rows identical to what the decode
loop computed.

Row ``j`` of the result is the attention of the query that *produced* generated token ``j``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.backends.cache_name import with_cache

CAPTURE_IMPL = "glassbox_capture"
HeadReduction = Literal["mean", "max"]

_active: contextvars.ContextVar["_Capture | None"] = contextvars.ContextVar("glassbox_attention_capture", default=None)


@dataclass
class _Capture:
    image_positions: Any  # LongTensor of key positions of the current screenshot's image tokens
    heads: HeadReduction
    layers: set[int] | None
    rows: dict[int, Any] = field(default_factory=dict)  # layer -> (q_len, n_image) float32
    key_limit: int | None = None  # a static cache: keys past this are stale (masked); skip them


def register_attention(name: str, attention: Callable[..., Any]) -> None:
    """Register a custom attention function under ``name`` (and sdpa's mask builder with it) once per process."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if name in AttentionInterface._global_mapping:
        return
    AttentionInterface.register(name, attention)
    # Without a mask function under the same name transformers would pass no mask at all.
    AttentionMaskInterface.register(name, sdpa_mask)


def register() -> None:
    """Register the capturing attention once per process."""
    register_attention(CAPTURE_IMPL, _capture_attention)


def _capture_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> Any:
    capture = _active.get()
    layer = getattr(module, "layer_idx", None)
    if capture is not None and layer is not None and query.shape[0] == 1:
        # The capture forward: compute the probabilities once, keep the image rows, and use the same
        # probabilities for the layer's output (no second attention pass).
        if capture.key_limit is not None:
            key, value = key[:, :, : capture.key_limit], value[:, :, : capture.key_limit]
            if attention_mask is not None:
                attention_mask = attention_mask[..., : capture.key_limit]
        probs = _probabilities(query, key, attention_mask, scaling)  # (heads, q_len, k_len), float32
        if capture.layers is None or layer in capture.layers:
            image = probs[:, :, capture.image_positions]
            capture.rows[layer] = image.mean(0) if capture.heads == "mean" else image.amax(0)
        v = repeat_kv(value[0].float(), probs.shape[0])
        out = (probs @ v).to(query.dtype)  # (heads, q_len, d)
        return out.transpose(0, 1).unsqueeze(0).contiguous(), None
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)


def repeat_kv(x: Any, heads: int) -> Any:
    """Grouped-query attention: each of ``x``'s key/value heads serves several query heads."""
    return x if x.shape[0] == heads else x.repeat_interleave(heads // x.shape[0], dim=0)


def _probabilities(query: Any, key: Any, attention_mask: Any, scaling: float | None) -> Any:
    import torch

    q = query[0].float()  # (heads, q_len, d)
    k = repeat_kv(key[0].float(), q.shape[0])  # (heads, k_len, d)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (scaling if scaling is not None else q.shape[-1] ** -0.5)
    q_len, k_len = scores.shape[-2], scores.shape[-1]
    if attention_mask is None:  # a single unpadded sequence: causal over the cache + the new queries
        allowed = torch.arange(k_len, device=scores.device)[None, :] <= (
            torch.arange(q_len, device=scores.device)[:, None] + (k_len - q_len)
        )
        scores = scores.masked_fill(~allowed, float("-inf"))
    elif attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask[0, :, -q_len:, :k_len], float("-inf"))
    else:
        scores = scores + attention_mask[0, :, -q_len:, :k_len].float()
    return scores.softmax(dim=-1)


@dataclass
class CapturedAttention:
    """Per layer, each generated token's attention to the current screenshot's image tokens."""

    rows: Any  # float32 tensor (layers, n_generated, n_image)
    grid: tuple[int, int]  # merged patch grid (rows, cols) of the current screenshot, e.g. (25, 40)
    resized_size: tuple[int, int]  # (width, height) of the image the model saw
    layers: list[int]


def image_spans(input_ids: Any, image_token_id: int) -> list[tuple[int, int]]:
    """[start, end) of each run of image tokens in a 1-D sequence (a tensor or a list of ids)."""
    ids = input_ids if isinstance(input_ids, list) else input_ids.tolist()
    spans, start = [], None
    for i, token in enumerate(ids + [None]):
        if token == image_token_id and start is None:
            start = i
        elif token != image_token_id and start is not None:
            spans.append((start, i))
            start = None
    return spans


def capture_after_generate(
    model: Any,
    inputs: Any,
    sequences: Any,
    past_key_values: Any,
    *,
    image_token_id: int,
    heads: HeadReduction = "mean",
    layers: list[int] | None = None,
    cache_keep: int | None = None,
    position_ids: Any | None = None,
) -> CapturedAttention:
    """Replay the queries that produced the generated tokens over the prompt's KV cache and keep image rows.

    ``sequences``: prompt + generated tokens (batch 1). ``past_key_values`` must hold at least the first
    ``prompt_len - 1`` positions of the prompt. ``generate``'s dynamic cache is cropped to that. A static
    cache (the fast path) comes ready to write at ``prompt_len - 1``, with ``position_ids``, the
    ``(4, 1, n)`` positions of the whole sequence (text row, then multimodal RoPE).
    """
    import torch

    register()
    prompt_len = inputs["input_ids"].shape[1]
    generated = sequences[0, prompt_len:]
    n_new = int(generated.shape[0])
    spans = image_spans(inputs["input_ids"][0], image_token_id)
    if not spans or n_new == 0:
        raise ValueError("nothing to capture: no image in the prompt or no generated token")
    start, end = spans[-1]  # the current screenshot is the last image of the prompt
    # Queries: the last prompt token and every generated token but the last (each produced the next one).
    query_ids = torch.cat([inputs["input_ids"][0, prompt_len - 1 : prompt_len], generated[:-1]])[None, :]
    # Keep the cache up to (not including) the last prompt token, whose query produced the first token.
    keep = prompt_len - 1 if cache_keep is None else cache_keep
    query_positions = None
    if position_ids is not None:  # a static cache: the caller set its write position
        query_positions = position_ids[:, :, keep : keep + query_ids.shape[1]]
    else:
        extra = past_key_values.get_seq_length() - keep
        if extra < 0:
            raise ValueError(f"the KV cache holds {past_key_values.get_seq_length()} positions, fewer than {keep}")
        if extra:
            past_key_values.crop(-extra)
    capture = _Capture(
        image_positions=torch.arange(start, end, device=sequences.device),
        heads=heads,
        key_limit=keep + int(query_ids.shape[1]) if position_ids is not None else None,
        layers=set(layers) if layers is not None else None,
    )
    token = _active.set(capture)
    previous = model.config.text_config._attn_implementation
    vision = model.config.vision_config._attn_implementation
    try:
        if previous != CAPTURE_IMPL:
            model.set_attn_implementation({"text_config": CAPTURE_IMPL, "vision_config": vision})
        with torch.inference_mode():
            # The language model without its head: only the attention rows are wanted, not the logits.
            model.model(input_ids=query_ids, use_cache=True, position_ids=query_positions, **with_cache(past_key_values))
    finally:
        _active.reset(token)
        if previous != CAPTURE_IMPL:
            model.set_attn_implementation({"text_config": previous, "vision_config": vision})
    kept = sorted(capture.rows)
    grid_thw = inputs["image_grid_thw"][-1].tolist()
    merge = 2
    grid = (int(grid_thw[1]) // merge, int(grid_thw[2]) // merge)
    patch = 16
    resized = (int(grid_thw[2]) * patch, int(grid_thw[1]) * patch)
    rows = torch.stack([capture.rows[layer] for layer in kept]) if kept else torch.zeros((0, n_new, end - start))
    return CapturedAttention(rows=rows.cpu(), grid=grid, resized_size=resized, layers=kept)
