"""The KV cache's argument name, which transformers renamed: ``past_key_values`` up to 5.2x, ``cache`` since.

The old name still works in 5.24 with a deprecation warning and goes in 5.40; the new one does not exist in 5.17,
the oldest release the project supports. So the name is read off the installed model's ``forward`` once.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any


@functools.cache
def cache_argument() -> str:
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

    return "cache" if "cache" in inspect.signature(Qwen3VLModel.forward).parameters else "past_key_values"


def with_cache(cache: Any) -> dict[str, Any]:
    """``{name: cache}`` for a forward call, under the installed transformers' name."""
    return {cache_argument(): cache}


def returned_cache(out: Any) -> Any:
    """The cache a forward or ``generate`` returned (``out.cache``, or ``out.past_key_values`` before the rename)."""
    return out.cache if cache_argument() == "cache" else out.past_key_values
