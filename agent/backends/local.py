"""Local transformers backend: ``Qwen3VLForConditionalGeneration`` (and the MoE variant) from a folder or hub id.

bf16 on CUDA, fp32 on CPU. Works without torchvision (image-only processor). Two decode paths: plain
(``generate``) and fast (static cache, compiled step, prefix reuse: :mod:`agent.backends.decoding`).
Attention is captured after either, never inside the decode loop.

This is the one place models load. A folder holding a LoRA adapter (``adapter_config.json``, written by
``glassbox train``) loads as its base model (the path the adapter records) with the adapter merged in, so
``--model ADAPTER_DIR`` works wherever ``--model`` does.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.backends.base import Backend, BackendError, Generation, Sampling, TokenLogprob
from agent.backends.decoding import fast_path_unsupported, plain_generate
from agent.prompt import Prompt
from tools.errors import UsageError
from tools.images import open_rgb
from tracer.logs import get_logger
from tracer.schema import DecodingInfo

log = get_logger("glassbox.backend")

DECODING_MODES = ("auto", "fast", "plain")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


class ModelUnavailable(UsageError, RuntimeError):
    """The model's files are not here; the message says what is missing and how to get it."""


class LocalQwen3VL(Backend):
    """Qwen3-VL through transformers, on this machine.

    Two decode paths give the same greedy tokens: ``plain`` (transformers' ``generate``) and ``fast`` (a
    static KV cache, the decode step compiled once per process, the unchanged prompt prefix reused
    between steps; see :mod:`agent.backends.decoding`). ``decoding="auto"`` picks fast on CUDA and plain on
    CPU. Loaded models (and their compiled decode step) are kept for the process: a second run reuses them.

        backend = LocalQwen3VL("models/Qwen3-VL-2B-Thinking")          # fast on CUDA, compiled at step 1
        backend = LocalQwen3VL(path, decoding="fast", compile=False)   # static cache + prefix reuse, eager
    """

    name = "local"

    def __init__(
        self,
        model: str,
        *,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        device: str | None = None,
        thinking: bool | None = None,
        attention_layers: list[int] | None = None,
        attention_heads: str = "mean",
        decoding: str = "auto",
        compile: bool | None = None,
    ) -> None:
        _check_available(model)
        import torch

        if decoding not in DECODING_MODES:
            raise ValueError(f"decoding must be one of {', '.join(DECODING_MODES)}, not {decoding!r}")
        self.model = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        cuda = self.device.startswith("cuda")
        self.decoding = "fast" if decoding == "fast" or (decoding == "auto" and cuda) else "plain"
        if self.decoding == "fast" and (why := fast_path_unsupported()):
            log.warning("fast decoding is not available; using transformers generate", reason=why)
            self.decoding = "plain"
        self.compile = (cuda if compile is None else compile) and self.decoding == "fast"
        try:
            loaded = _load(model, self.device, self.dtype)
            self.processor = _load_processor(model)
        except OSError as exc:
            raise ModelUnavailable(_missing_message(model, str(exc))) from None
        self.net = loaded.net
        set_pixel_limits(self.processor, min_pixels, max_pixels)
        self.tokenizer = self.processor.tokenizer
        self.attention_layers = attention_layers
        self.attention_heads = attention_heads
        self.image_token_id = self.net.config.image_token_id
        probe = self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "text", "text": "x"}]}], tokenize=False, add_generation_prompt=True
        )
        # Thinking models open the think block in the generation prompt.
        self.thinking = probe.rstrip().endswith("<think>") if thinking is None else thinking
        self.decoder = None
        if self.decoding == "fast":
            from agent.backends.decoding import FastDecoder

            # One decoder (static cache, compiled step) per loaded model and compile setting, for the process.
            self.decoder = loaded.decoders.get(self.compile)
            if self.decoder is None:
                self.decoder = loaded.decoders[self.compile] = FastDecoder(self.net, compile=self.compile, settings_key="")
        # The prefix cache key: the model and every setting that changes the tokens or the pixels.
        self.settings_key = f"{model}|{self.dtype}|{self.device}|{self.processor.image_processor.size}"

    def inputs(self, prompt: Prompt) -> Any:
        """Tokenised prompt with pixel values (and mm_token_type_ids, which multimodal RoPE needs)."""
        return encode_prompt(self.processor, prompt).to(self.device)

    def generate(
        self, prompt: Prompt, sampling: Sampling, *, step: int, attention: bool = False, deadline: float | None = None
    ) -> Generation:
        import torch

        inputs = self.inputs(prompt)
        prompt_len = inputs["input_ids"].shape[1]
        eos = set(self.net.generation_config.eos_token_id or [])
        seed = None if sampling.seed is None else sampling.seed + step
        try:
            with torch.inference_mode():
                if self.decoder is not None:
                    self.decoder.settings_key = self.settings_key
                    result = self.decoder.generate(inputs, sampling, image_hashes=_image_hashes(prompt), eos_ids=eos, seed=seed)
                    new_ids, logprobs, finish = result.new_ids, result.logprobs, result.finish_reason
                    stats = result.stats
                else:
                    started = time.perf_counter()
                    new_ids, logprobs, finish, past = plain_generate(self.net, inputs, sampling, eos_ids=eos, seed=seed)
                    elapsed = (time.perf_counter() - started) * 1000
                    stats = DecodingInfo(path="plain", prompt_tokens=prompt_len, prefilled=prompt_len, decode_ms=elapsed)
        except Exception as exc:
            if self.decoder is not None:
                self.decoder.invalidate()
            raise BackendError(f"generate failed: {type(exc).__name__}: {exc}") from exc
        # The step record keeps the same figures (step.decoding); the event puts them in the run's log.jsonl in order.
        log.debug(
            "decoded",
            step=step,
            path=stats.path,
            compiled=stats.compiled,
            prompt_tokens=prompt_len,
            prefix_reused=stats.prefix_reused,
            new_tokens=len(new_ids),
            finish=finish,
            decode_ms=round(stats.decode_ms or 0.0, 1),
            cache_tokens=stats.cache_tokens,
        )
        text, tokens = self._spans(new_ids, logprobs)
        captured, reason = None, None
        if attention and new_ids:
            from agent.backends.attention import capture_after_generate

            sequences = torch.cat([inputs["input_ids"][0], torch.tensor(new_ids, device=self.device)])[None, :]
            try:
                if self.decoder is not None:
                    self.decoder.prepare_capture(prompt_len - 1)
                    captured = capture_after_generate(
                        self.net,
                        inputs,
                        sequences,
                        self.decoder.cache,
                        image_token_id=self.image_token_id,
                        heads=self.attention_heads,  # type: ignore[arg-type]
                        layers=self.attention_layers,
                        position_ids=result.position_ids,
                    )
                else:
                    captured = capture_after_generate(
                        self.net,
                        inputs,
                        sequences,
                        past,
                        image_token_id=self.image_token_id,
                        heads=self.attention_heads,  # type: ignore[arg-type]
                        layers=self.attention_layers,
                        cache_keep=prompt_len - 1,
                    )
            except Exception as exc:  # maps are a bonus: a failure is recorded, the step goes on
                if self.decoder is not None:
                    self.decoder.invalidate()
                reason = f"attention capture failed: {type(exc).__name__}: {exc}"
                log.warning("attention capture failed; the step goes on without maps", step=step, error=reason)
        elif not attention:
            reason = "attention capture is off (policy.attention: false)"
        else:
            reason = "no generated token"
        return Generation(
            text=text,
            tokens=tokens,
            prompt_tokens=prompt_len,
            output_tokens=len(new_ids),
            image_tokens=int((inputs["input_ids"] == self.image_token_id).sum()),
            finish_reason=finish,
            attention=captured,
            attention_reason=reason,
            decoding=stats,
        )

    def _spans(self, ids: list[int], logprobs: list[float]) -> tuple[str, list[TokenLogprob]]:
        """Decode and give each token its character span (a prefix decode keeps multi-byte characters whole)."""
        tokens = []
        previous = ""
        for i, (_, lp) in enumerate(zip(ids, logprobs, strict=True)):
            text = self.tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
            if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: the character ends in a later token
                tokens.append(TokenLogprob(text="", start=len(previous), end=len(previous), logprob=lp))
                continue
            tokens.append(TokenLogprob(text=text[len(previous) :], start=len(previous), end=len(text), logprob=lp))
            previous = text
        return previous, tokens

    def close(self) -> None:
        """Drop this backend's references; the loaded model stays for the process (see ``unload_models``)."""
        self.net = None
        self.decoder = None


def set_pixel_limits(processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
    """The task's ``policy.min_pixels`` / ``max_pixels``: the size range screenshots are resized into."""
    if min_pixels is None and max_pixels is None:
        return
    size = dict(processor.image_processor.size)
    if min_pixels is not None:
        size["shortest_edge"] = min_pixels
    if max_pixels is not None:
        size["longest_edge"] = max_pixels
    processor.image_processor.size = size


def encode_prompt(processor: Any, prompt: Prompt) -> Any:
    """The prompt as the model reads it: chat template with the generation prompt, then the processor.

    Inference and training (``glassbox train``) both go through here, so a fine-tuned model is trained on
    exactly the tokens it will be asked with.
    """
    text = processor.apply_chat_template(prompt.hf_messages(), tokenize=False, add_generation_prompt=True)
    images = [open_rgb(p.png, what="the step's screenshot" if p.ref == "current" else p.ref) for p in prompt.images()]
    return processor(text=[text], images=images or None, return_tensors="pt")


@dataclass
class _Loaded:
    net: Any
    decoders: dict[bool, Any] = field(default_factory=dict)  # compile flag -> FastDecoder


_LOADED: dict[tuple[str, str, str], _Loaded] = {}


def _load(model: str, device: str, dtype: Any) -> _Loaded:
    """Load once per process (model, device, dtype): later runs reuse the weights and the compiled step."""
    key = (str(Path(model).expanduser().resolve()) if Path(model).expanduser().exists() else model, device, str(dtype))
    if key not in _LOADED:
        started = time.perf_counter()
        log.info("loading the model", model=model, device=device, dtype=str(dtype).removeprefix("torch."))
        net = _from_pretrained(model, dtype).to(device).eval()
        from agent.backends.attention import register

        # sdpa for generation (the compiled step needs it); capture switches to its own function briefly.
        register()
        net.set_attn_implementation({"text_config": "sdpa", "vision_config": net.config.vision_config._attn_implementation})
        _LOADED[key] = _Loaded(net)
        log.debug(
            "model loaded",
            model=model,
            seconds=round(time.perf_counter() - started, 2),
            parameters=sum(p.numel() for p in net.parameters()),
        )
    return _LOADED[key]


def _from_pretrained(model: str, dtype: Any) -> Any:
    """The network of ``model``; an adapter folder gives its base model with the adapter merged in."""
    from transformers import AutoConfig

    base = adapter_base(model)
    if base is None:
        config = AutoConfig.from_pretrained(model)
        return _model_class(config.model_type).from_pretrained(model, dtype=dtype)
    _check_available(base)
    from peft import PeftModel

    config = AutoConfig.from_pretrained(base)
    net = _model_class(config.model_type).from_pretrained(base, dtype=dtype)
    log.info("applying a LoRA adapter", adapter=model, base=base)
    # Merged: the decode paths and attention capture see a plain Qwen3-VL, with no adapter layers to route around.
    return PeftModel.from_pretrained(net, model).merge_and_unload()


def load_for_training(model: str, device: str) -> tuple[Any, Any]:
    """(network, processor) of ``model`` for fine-tuning: a fresh copy, never the one runs share in this process
    (training changes its weights), in fp32 on CPU and bf16 on CUDA like inference."""
    import torch

    _check_available(model)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        net = _from_pretrained(model, dtype).to(device)
        processor = _load_processor(model)
    except OSError as exc:
        raise ModelUnavailable(_missing_message(model, str(exc))) from None
    from agent.backends.attention import register

    register()
    net.set_attn_implementation({"text_config": "sdpa", "vision_config": net.config.vision_config._attn_implementation})
    return net, processor


def adapter_base(model: str) -> str | None:
    """The base model a LoRA adapter folder names (``base_model_name_or_path``), or None when ``model`` is no adapter."""
    config = Path(model).expanduser() / "adapter_config.json"
    if not config.is_file():
        return None
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        raise ModelUnavailable(f"{config} is not a readable adapter config") from None
    if not isinstance(base, str) or not base:
        raise ModelUnavailable(f"{config} names no base model (base_model_name_or_path)")
    return base


def unload_models() -> None:
    """Forget every loaded model (tests, long-lived processes that switch models)."""
    _LOADED.clear()


def _image_hashes(prompt: Prompt) -> list[str]:
    return [hashlib.sha256(image.png).hexdigest() for image in prompt.images()]


def _model_class(model_type: str) -> Any:
    import transformers

    if model_type == "qwen3_vl":
        return transformers.Qwen3VLForConditionalGeneration
    if model_type == "qwen3_vl_moe":
        return transformers.Qwen3VLMoeForConditionalGeneration
    raise ModelUnavailable(f"model type {model_type!r} is not Qwen3-VL (expected qwen3_vl or qwen3_vl_moe)")


def _load_processor(model: str) -> Any:
    from transformers import Qwen3VLProcessor

    base = adapter_base(model)
    if base is not None and not (Path(model).expanduser() / "preprocessor_config.json").is_file():
        model = base  # an adapter saved without its processor: the base model's

    try:
        return Qwen3VLProcessor.from_pretrained(model)
    except (OSError, ValueError, AttributeError, ImportError):
        # Without torchvision the video processor cannot be built; screenshots need only the image side.
        from agent.backends.processor import image_only_processor_class

        return image_only_processor_class().from_pretrained(model)


def _check_available(model: str) -> None:
    path = Path(model).expanduser()
    looks_local = path.exists() or model.startswith((".", "/", "~")) or os.sep in model and not _hub_id(model)
    if not looks_local:
        return  # a hub id: from_pretrained looks in the local cache and says what is missing
    if not path.is_dir():
        raise ModelUnavailable(f"model folder {model} does not exist")
    if (path / "adapter_config.json").is_file():
        if not any((path / f).is_file() for f in ADAPTER_FILES):
            raise ModelUnavailable(f"adapter folder {model} has no adapter weights ({' or '.join(ADAPTER_FILES)})")
        return  # the base model it names is checked when it loads
    missing = [name for name in ("config.json",) if not (path / name).is_file()]
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append("weights (model.safetensors or model.safetensors.index.json with its shards)")
    if not any((path / f).is_file() for f in ("tokenizer.json", "vocab.json")):
        missing.append("tokenizer (tokenizer.json or vocab.json + merges.txt)")
    if not (path / "preprocessor_config.json").is_file() and not (path / "processor_config.json").is_file():
        missing.append("preprocessor_config.json")
    if missing:
        raise ModelUnavailable(f"model folder {model} is missing: {', '.join(missing)}. " + _how_to_get())


def _hub_id(model: str) -> bool:
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not Path(model).exists()


def _missing_message(model: str, detail: str) -> str:
    first = detail.splitlines()[0] if detail else ""
    return (
        f"cannot load {model!r}: {first}. Its weights are not on this machine (no network, or not in the "
        f"Hugging Face cache). " + _how_to_get()
    )


def _how_to_get() -> str:
    return (
        "Download on a machine with network, e.g. `huggingface-cli download Qwen/Qwen3-VL-2B-Thinking "
        "--local-dir models/Qwen3-VL-2B-Thinking`, copy the folder here and pass --model models/Qwen3-VL-2B-Thinking "
        "(or run `glassbox dev tiny-model DIR` for a random-weight test model)."
    )


__all__ = [
    "DECODING_MODES",
    "LocalQwen3VL",
    "ModelUnavailable",
    "adapter_base",
    "encode_prompt",
    "load_for_training",
    "set_pixel_limits",
    "unload_models",
]
