"""Local transformers backend: ``Qwen3VLForConditionalGeneration`` (and the MoE variant) from a folder or hub id.

bf16 on CUDA, fp32 on CPU. Works without torchvision (image-only processor). Two decode paths: plain
(``generate``) and fast (static cache, compiled step, prefix reuse: :mod:`agent.backends.decoding`).
Attention is captured after either, never inside the decode loop.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.backends.base import Backend, BackendError, Generation, Sampling, TokenLogprob
from agent.backends.decoding import fast_path_unsupported, plain_generate
from agent.prompt import Prompt
from tools.errors import UsageError
from tracer.logs import get_logger
from tracer.schema import DecodingInfo

log = get_logger("glassbox.backend")

DECODING_MODES = ("auto", "fast", "plain")
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
        if min_pixels is not None or max_pixels is not None:
            size = dict(self.processor.image_processor.size)
            if min_pixels is not None:
                size["shortest_edge"] = min_pixels
            if max_pixels is not None:
                size["longest_edge"] = max_pixels
            self.processor.image_processor.size = size
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
        from PIL import Image

        text = self.processor.apply_chat_template(prompt.hf_messages(), tokenize=False, add_generation_prompt=True)
        images = [Image.open(io.BytesIO(p.png)).convert("RGB") for p in prompt.images()]
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt")
        return inputs.to(self.device)

    def generate(self, prompt: Prompt, sampling: Sampling, *, step: int, attention: bool = False) -> Generation:
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


@dataclass
class _Loaded:
    net: Any
    decoders: dict[bool, Any] = field(default_factory=dict)  # compile flag -> FastDecoder


_LOADED: dict[tuple[str, str, str], _Loaded] = {}


def _load(model: str, device: str, dtype: Any) -> _Loaded:
    """Load once per process (model, device, dtype): later runs reuse the weights and the compiled step."""
    from transformers import AutoConfig

    key = (str(Path(model).expanduser().resolve()) if Path(model).expanduser().exists() else model, device, str(dtype))
    if key not in _LOADED:
        started = time.perf_counter()
        log.info("loading the model", model=model, device=device, dtype=str(dtype).removeprefix("torch."))
        config = AutoConfig.from_pretrained(model)
        net = _model_class(config.model_type).from_pretrained(model, dtype=dtype).to(device).eval()
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


__all__ = ["DECODING_MODES", "LocalQwen3VL", "ModelUnavailable", "unload_models"]
