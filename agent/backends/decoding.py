"""The two local decode paths. Plain: transformers' ``generate``. Fast: a static KV cache, one compiled
decode step, and prompt prefix reuse. Both give the same greedy tokens.

``generate`` (the plain path) re-allocates its cache every call, prefills the whole prompt
each step and runs the decode step eagerly. Here the cache is allocated once per loaded model, the
one-token decode step is ``torch.compile``d once per process (CUDA graphs on CUDA), and the tokens a step
shares with what the cache already holds -- system prompt, tools, the task, unchanged history -- are
not prefilled again. Attention capture never runs inside this loop: it is one teacher-forced forward
afterwards (:func:`agent.backends.attention.capture_after_generate`) over the same cache.

Usage (``LocalQwen3VL`` does this)::

    decoder = FastDecoder(net, compile=True, settings_key="Qwen3-VL-2B|bf16|cuda|pixels=...")
    decoder.warm_up()  # compiles once per process, logging "warming up: compiling the decode step"
    result = decoder.generate(inputs, sampling, image_hashes=[...], eos_ids={151645}, seed=7)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from agent.backends.attention import image_spans
from agent.backends.base import Sampling
from agent.backends.cache_name import cache_argument, returned_cache
from tracer.logs import get_logger
from tracer.schema import DecodingInfo

log = get_logger("glassbox.backend")

MIN_PREFIX_TOKENS = 32  # a shorter common prefix is just the chat template's header: not worth calling a hit
EOS_CHECK_EVERY = 16  # tokens decoded between reads of the chosen tokens (each read waits for the GPU)
CACHE_BLOCK = 2048  # the static cache grows in blocks (each new size compiles the decode step once more)
CACHE_HEADROOM = 1024  # room for the history text a run adds step by step, so the first size usually lasts
MIN_CACHE_TOKENS = 4096


@dataclass
class DecodeResult:
    new_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (an EOS token, dropped from new_ids) or "length"
    stats: DecodingInfo
    position_ids: Any  # (4, 1, prompt_len + len(new_ids)) positions, reused by attention capture


@dataclass
class _PrefixEntry:
    """What the static cache holds: the token ids whose KV is valid, and the images among them."""

    settings_key: str
    ids: list[int]
    image_hashes: list[str]


def fast_path_unsupported() -> str | None:
    """Why this transformers cannot run the fast path (built on 5.23: rewindable StaticCache, image features in), or None."""
    import inspect

    import transformers
    from transformers.cache_utils import StaticLayer
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

    if not hasattr(StaticLayer(max_cache_len=1), "cumulative_length"):
        return f"transformers {transformers.__version__}'s StaticCache cannot be rewound (5.23 can)"
    if "mm_encoder_outputs" not in inspect.signature(Qwen3VLModel.forward).parameters:
        return f"transformers {transformers.__version__}'s Qwen3-VL takes no precomputed image features (5.23 does)"
    return None


class FastDecoder:
    """Static-cache, compiled decoding with prefix reuse for one loaded Qwen3-VL model (batch 1)."""

    def __init__(self, net: Any, *, compile: bool, settings_key: str) -> None:
        import torch

        self.net = net
        self.compile = compile
        self.settings_key = settings_key
        self.device = next(net.parameters()).device
        self.image_token_id = int(net.config.image_token_id)
        self.cache: Any = None
        # Read once here: the compiled decode step should not trace a lookup (dynamo warns about the cached function).
        self.cache_name = cache_argument()
        self.cache_tokens = 0
        self.entry: _PrefixEntry | None = None
        self._step_fn: Callable[..., Any] | None = None
        self._compiled_sizes: set[int] = set()
        self._pending_compile_ms: float | None = None
        self._cuda = self.device.type == "cuda"
        # The step always reads these two buffers: same shapes, strides and addresses every call, so the
        # compiled graph never re-specialises and CUDA graphs need no input copies.
        self._token = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        self._position = torch.zeros((4, 1, 1), dtype=torch.long, device=self.device)
        if compile:
            # CUDA graphs replay the decode step without per-kernel launch overhead; on CPU plain inductor.
            mode = "reduce-overhead" if self._cuda else "default"
            self._step_fn = torch.compile(self._decode_step, mode=mode, dynamic=False, fullgraph=False)

    # -- the cache ------------------------------------------------------------------------------------------
    def _ensure_cache(self, needed: int) -> None:
        from transformers import StaticCache

        if self.cache is not None and needed <= self.cache_tokens:
            return
        size = max(MIN_CACHE_TOKENS, -(-(needed + CACHE_HEADROOM) // CACHE_BLOCK) * CACHE_BLOCK)
        if self.cache is not None:
            log.info(
                "static KV cache grows",
                from_tokens=self.cache_tokens,
                cache_tokens=size,
                **({"note": "the decode step compiles once more for the new size"} if self.compile else {}),
            )
        self.cache = StaticCache(config=self.net.config, max_cache_len=size)
        self._initialize_cache()
        self.cache_tokens = size
        self.entry = None

    def _initialize_cache(self) -> None:
        """Allocate every layer's keys and values now, outside any compiled region.

        Left lazy, the first decode step would allocate them inside the CUDA graph, from the graph's own
        memory pool: the next replay overwrites them ("accessing tensor output of CUDAGraphs that has been
        overwritten"). Allocated here they get fixed addresses that the graph reads and writes in place.
        """
        import torch

        text = self.net.config.get_text_config()
        dtype = self.net.get_input_embeddings().weight.dtype
        with torch.inference_mode():  # the same kind of tensor the eager prefill writes into
            self.cache.early_initialization(
                batch_size=1, num_heads=text.num_key_value_heads, head_dim=text.head_dim, dtype=dtype, device=self.device
            )

    def _set_length(self, n: int) -> None:
        """Write the next tokens at position ``n``: entries past it are stale and masked by causality."""
        import torch

        with torch.inference_mode():  # the cache's tensors are inference tensors
            for layer in self.cache.layers:
                if getattr(layer, "is_initialized", False):
                    layer.cumulative_length.fill_(n)

    # -- prefix reuse -----------------------------------------------------------------------------------------
    def reusable_prefix(self, ids: list[int], image_hashes: list[str], spans: list[tuple[int, int]] | None = None) -> int:
        """How many leading prompt tokens already have valid KV in the cache (0: a miss).

        The key is the model and its settings, the exact token ids, and the bytes of every image whose
        tokens are in the prefix (image tokens are all the same id; their KV depends on the pixels).
        """
        entry = self.entry
        if entry is None or entry.settings_key != self.settings_key or self.cache is None:
            return 0
        n = 0
        limit = min(len(entry.ids), len(ids) - 1)  # the last prompt token is always computed: its logits are needed
        while n < limit and entry.ids[n] == ids[n]:
            n += 1
        for k, (start, end) in enumerate(image_spans(ids, self.image_token_id) if spans is None else spans):
            if start >= n:
                break
            same_image = k < len(entry.image_hashes) and k < len(image_hashes) and entry.image_hashes[k] == image_hashes[k]
            if end > n or not same_image:
                n = start
                break
        return n if n >= MIN_PREFIX_TOKENS else 0

    # -- generation ------------------------------------------------------------------------------------------------
    def warm_up(self, tokens: int = MIN_CACHE_TOKENS) -> float | None:
        """Compile the decode step for a cache of at least ``tokens`` now, saying so; returns the ms it took.

        ``generate`` does this itself on its first call, once it knows the prompt's length (the cache size
        is part of the compiled graph), so callers need it only to keep the compile out of a timing.
        """
        if not self.compile:
            return None
        self._ensure_cache(tokens)
        return self._compile_current()

    def _compile_current(self) -> float | None:
        """Trace, compile (and on CUDA record the graph of) the decode step for the current cache size."""
        import torch

        if not self.compile or self.cache_tokens in self._compiled_sizes:
            return None
        log.info(
            "warming up: compiling the decode step",
            compiler="CUDA graphs" if self._cuda else "inductor, CPU",
            cache_tokens=self.cache_tokens,
            note="once per process, it can take a minute",
        )
        started = time.perf_counter()
        self.entry = None  # the warm-up writes garbage into the cache
        for i in range(3):  # the first calls trace and compile, the next ones record and replay the graph
            self._set_length(i)
            self._call_step(
                torch.zeros((), dtype=torch.long, device=self.device),
                torch.full((4, 1, 1), i, dtype=torch.long, device=self.device),
            )
        self._sync()
        elapsed = (time.perf_counter() - started) * 1000
        self._compiled_sizes.add(self.cache_tokens)
        self._pending_compile_ms = elapsed
        log.info("warm-up done", seconds=round(elapsed / 1000, 1), cache_tokens=self.cache_tokens)
        return elapsed

    def generate(
        self, inputs: Any, sampling: Sampling, *, image_hashes: list[str], eos_ids: set[int], seed: int | None = None
    ) -> DecodeResult:
        """Prefill what is new, then decode one token at a time through the (compiled) step."""
        import torch

        ids_tensor = inputs["input_ids"]
        prompt_len = int(ids_tensor.shape[1])
        ids = ids_tensor[0].tolist()
        self._ensure_cache(prompt_len + sampling.max_new_tokens)
        self._compile_current()
        positions = self._positions(inputs, sampling.max_new_tokens)
        spans = image_spans(ids, self.image_token_id)
        reused = self.reusable_prefix(ids, image_hashes, spans)
        self.entry = None  # until this step finishes, the cache holds nothing reusable
        self._set_length(reused)

        started = time.perf_counter()
        encoder, pixel_kwargs = self._vision(inputs, spans, reused)
        images_reused = sum(1 for start, _ in spans if start < reused)
        self._sync()
        vision_done = time.perf_counter()
        with torch.inference_mode():
            out = self.net(
                input_ids=ids_tensor[:, reused:],
                position_ids=positions[:, :, reused:prompt_len],
                mm_token_type_ids=inputs["mm_token_type_ids"][:, reused:] if "mm_token_type_ids" in inputs else None,
                **{self.cache_name: self.cache},
                use_cache=True,
                logits_to_keep=1,
                **encoder,
                **pixel_kwargs,
            )
        logits = out.logits[:, -1].float()
        self._sync()
        prefill_done = time.perf_counter()

        generator = None
        if not sampling.greedy:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(seed if seed is not None else int(torch.seed() % (2**63)))
        # Tokens stay on the device and are read back every EOS_CHECK_EVERY tokens, not one by one: a
        # per-token read makes the host wait for the GPU, then the GPU wait for the host's next launch.
        # Steps decoded past an EOS are dropped (their KV lies beyond what the cache entry claims).
        chosen: list[Any] = []
        chosen_logprobs: list[Any] = []
        new_ids: list[int] = []
        seen = torch.zeros(logits.shape[-1], dtype=torch.bool, device=self.device)
        finish = "length"
        with torch.inference_mode():
            for i in range(sampling.max_new_tokens):
                token = _choose(logits, sampling, generator, seen).view(1)
                chosen.append(token)
                chosen_logprobs.append(torch.log_softmax(logits[0], dim=-1).index_select(0, token))
                last = i + 1 == sampling.max_new_tokens
                if eos_ids and (last or len(chosen) % EOS_CHECK_EVERY == 0):
                    checked = len(new_ids)
                    for token_id in torch.cat(chosen[checked:]).tolist():
                        if token_id in eos_ids:
                            finish = "stop"
                            break
                        new_ids.append(token_id)
                    if finish == "stop":
                        break
                if last:
                    break
                seen.index_fill_(0, token, True)
                pos = prompt_len + i  # the cache's length is already pos: each step's update advanced it
                logits = self._call_step(token, positions[:, :, pos : pos + 1]).float()
        if not eos_ids:
            new_ids = torch.cat(chosen).tolist() if chosen else []
        logprobs = chosen_logprobs[: len(new_ids)]
        self._sync()
        decode_done = time.perf_counter()
        # The cache now holds the prompt and every generated token but the last (never fed back).
        fed = ids + new_ids[:-1] if finish == "length" else ids + new_ids
        self.entry = _PrefixEntry(self.settings_key, fed, list(image_hashes))
        decode_ms = (decode_done - prefill_done) * 1000
        stats = DecodingInfo(
            path="fast",
            compiled=self.compile,
            cache_tokens=self.cache_tokens,
            prompt_tokens=prompt_len,
            prefix_reused=reused,
            images_encoded=len(pixel_kwargs.get("image_grid_thw", [])),
            images_reused=images_reused,
            prefilled=prompt_len - reused,
            vision_ms=(vision_done - started) * 1000,
            prefill_ms=(prefill_done - vision_done) * 1000,
            decode_ms=decode_ms,
            ms_per_token=decode_ms / max(1, len(new_ids) - 1 + (finish == "stop")) if new_ids else None,
            compile_ms=self._pending_compile_ms,
        )
        self._pending_compile_ms = None
        values = torch.cat(logprobs).tolist() if logprobs else []
        return DecodeResult(
            new_ids=new_ids,
            logprobs=values,
            finish_reason=finish,
            stats=stats,
            position_ids=positions[:, :, : prompt_len + len(new_ids)],
        )

    def invalidate(self) -> None:
        """Forget what the cache holds (after something else wrote into it)."""
        self.entry = None

    def prepare_capture(self, keep: int) -> None:
        """Let a teacher-forced forward write from position ``keep`` (attention capture reuses the cache)."""
        self._set_length(keep)

    # -- pieces ------------------------------------------------------------------------------------------------
    def _decode_step(self, input_ids: Any, position_ids: Any) -> Any:
        out = self.net(input_ids=input_ids, position_ids=position_ids, use_cache=True, **{self.cache_name: self.cache})
        return out.logits[:, -1]

    def _call_step(self, token: Any, position: Any) -> Any:
        import torch

        fn = self._step_fn or self._decode_step
        with torch.inference_mode():
            self._token.copy_(token.view(1, 1))
            self._position.copy_(position)
            if self._cuda and self.compile:
                torch.compiler.cudagraph_mark_step_begin()
            # CUDA graphs reuse their output buffer on the next replay: copy it out.
            return fn(self._token, self._position).clone()

    def _positions(self, inputs: Any, max_new_tokens: int) -> Any:
        """Row 0: text positions (cache slots); rows 1-3: multimodal RoPE (t, h, w), extended over new tokens."""
        import torch

        ids = inputs["input_ids"]
        n = int(ids.shape[1])
        text = torch.arange(n + max_new_tokens, device=ids.device)
        if inputs.get("image_grid_thw") is not None and inputs.get("mm_token_type_ids") is not None:
            mrope, delta = self.net.model.get_rope_index(
                ids, mm_token_type_ids=inputs["mm_token_type_ids"], image_grid_thw=inputs["image_grid_thw"]
            )
            delta = int(delta.view(-1)[0])
        else:
            mrope, delta = text[:n].view(1, 1, -1).expand(3, 1, -1), 0
        tail = (text[n:] + delta).view(1, 1, -1).expand(3, 1, -1)
        mrope = torch.cat([mrope.to(ids.device), tail], dim=-1)
        return torch.cat([text.view(1, 1, -1), mrope], dim=0)

    def _vision(self, inputs: Any, spans: list[tuple[int, int]], reused: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Encode only the images after the reused prefix; the prefix's images are already in the cache."""
        grid = inputs.get("image_grid_thw")
        if grid is None or inputs.get("pixel_values") is None:
            return {}, {}
        first_new = sum(1 for start, _ in spans if start < reused)
        if first_new >= len(spans):
            return {}, {}
        rows = grid.prod(-1).tolist()
        offset = sum(rows[:first_new])
        pixels = inputs["pixel_values"][offset:]
        new_grid = grid[first_new:]
        features = self.net.model.get_image_features(pixels, new_grid, return_dict=True)
        return {"mm_encoder_outputs": {"image": features}}, {"image_grid_thw": new_grid}

    def _sync(self) -> None:
        if self._cuda:
            import torch

            torch.cuda.synchronize(self.device)


def plain_generate(
    net: Any, inputs: Any, sampling: Sampling, *, eos_ids: set[int], seed: int | None = None, min_new_tokens: int | None = None
) -> tuple[list[int], list[float], str, Any]:
    """transformers' ``generate`` with its dynamic cache: (new ids without EOS, log-probs, finish, the cache).

    The cache is returned for attention capture. ``min_new_tokens`` (benchmarks) forbids EOS before it.
    """
    import torch
    from transformers import LogitsProcessorList

    kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "output_logits": True, "return_dict_in_generate": True}
    if min_new_tokens:
        kwargs["min_new_tokens"] = min_new_tokens
    if sampling.greedy:
        kwargs["do_sample"] = False
    else:
        kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
    prompt_len = inputs["input_ids"].shape[1]
    if sampling.presence_penalty:
        # generate runs custom processors after its own warpers; at temperature 0 the order does not matter.
        kwargs["logits_processor"] = LogitsProcessorList([PresencePenalty(sampling.presence_penalty, prompt_len)])
    if seed is not None:
        torch.manual_seed(seed)
    with torch.inference_mode():
        out = net.generate(**inputs, **kwargs)
    new_ids = out.sequences[0, prompt_len:].tolist()
    finish = "stop" if new_ids and new_ids[-1] in eos_ids else "length"
    while new_ids and new_ids[-1] in eos_ids:
        new_ids.pop()
    # out.logits also covers the trailing EOS tokens popped above: zip stops at the kept ones.
    logprobs = [
        float(torch.log_softmax(logits[0].float(), dim=-1)[token_id])
        for logits, token_id in zip(out.logits, new_ids, strict=False)
    ]
    return new_ids, logprobs, finish, returned_cache(out)


class PresencePenalty:
    """Subtract ``penalty`` from the logits of every token generated so far (OpenAI / vLLM semantics)."""

    def __init__(self, penalty: float, prompt_len: int) -> None:
        self.penalty = penalty
        self.prompt_len = prompt_len

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        generated = input_ids[:, self.prompt_len :]
        if generated.shape[1] == 0:
            return scores
        seen = scores.new_zeros(scores.shape).scatter_(1, generated, 1.0)
        return scores - self.penalty * seen


def _choose(logits: Any, sampling: Sampling, generator: Any, seen: Any) -> Any:
    """The next token: greedy, or transformers' order of warpers (temperature, top-k, top-p) then a draw."""
    import torch

    scores = logits[0]
    if sampling.presence_penalty:
        scores = scores - sampling.presence_penalty * seen.to(scores.dtype)
    if sampling.greedy:
        return scores.argmax()
    scores = scores / sampling.temperature
    if sampling.top_k and sampling.top_k < scores.shape[-1]:
        threshold = torch.topk(scores, sampling.top_k).values[-1]
        scores = scores.masked_fill(scores < threshold, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(-1).cumsum(-1)
        remove = cumulative <= (1 - sampling.top_p)
        remove[-1] = False  # keep at least one token
        scores = scores.masked_fill(remove.scatter(0, order, remove), float("-inf"))
    return torch.multinomial(scores.softmax(-1), 1, generator=generator)[0]


__all__ = ["DecodeResult", "FastDecoder", "fast_path_unsupported", "PresencePenalty", "plain_generate"]
