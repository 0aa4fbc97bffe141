"""Local transformers backend: ``Qwen3VLForConditionalGeneration`` (and the MoE variant) from a folder or hub id.

bf16 on CUDA, fp32 on CPU. Works without torchvision (image-only processor). Per-token log-probabilities
come from ``output_logits``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from agent.backends.base import Backend, BackendError, Generation, Sampling, TokenLogprob
from agent.prompt import Prompt

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


class ModelUnavailable(RuntimeError):
    """The model's files are not here; the message says what is missing and how to get it."""


class LocalQwen3VL(Backend):
    name = "local"

    def __init__(self, model: str, *, min_pixels: int | None = None, max_pixels: int | None = None,
                 device: str | None = None, thinking: bool | None = None, attention_layers: list[int] | None = None,
                 attention_heads: str = "mean") -> None:
        _check_available(model)
        import torch
        from transformers import AutoConfig

        self.model = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        try:
            config = AutoConfig.from_pretrained(model)
            model_cls = _model_class(config.model_type)
            self.net = model_cls.from_pretrained(model, dtype=self.dtype).to(self.device).eval()
            self.processor = _load_processor(model)
        except OSError as exc:
            raise ModelUnavailable(_missing_message(model, str(exc))) from None
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
        from agent.backends.attention import CAPTURE_IMPL, register

        # The capturing attention delegates to sdpa and is idle during generate: set it once, not per step.
        register()
        self.net.set_attn_implementation({"text_config": CAPTURE_IMPL,
                                          "vision_config": self.net.config.vision_config._attn_implementation})
        self.image_token_id = self.net.config.image_token_id
        probe = self.processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "x"}]}],
                                                   tokenize=False, add_generation_prompt=True)
        # Thinking models open the think block in the generation prompt.
        self.thinking = probe.rstrip().endswith("<think>") if thinking is None else thinking

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
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "output_logits": True,
                                  "return_dict_in_generate": True}
        if sampling.greedy:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        notes = []
        if sampling.presence_penalty:
            notes.append(f"presence_penalty {sampling.presence_penalty} is not supported by transformers generate; ignored")
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed + step)
        try:
            with torch.inference_mode():
                out = self.net.generate(**inputs, **kwargs)
        except Exception as exc:
            raise BackendError(f"generate failed: {type(exc).__name__}: {exc}") from exc
        prompt_len = inputs["input_ids"].shape[1]
        new_ids = out.sequences[0, prompt_len:].tolist()
        eos = set(self.net.generation_config.eos_token_id or [])
        finish = "stop" if new_ids and new_ids[-1] in eos else "length"
        while new_ids and new_ids[-1] in eos:
            new_ids.pop()
        logprobs = [
            float(torch.log_softmax(logits[0].float(), dim=-1)[token_id]) for logits, token_id in zip(out.logits, new_ids)
        ]
        text, tokens = self._spans(new_ids, logprobs)
        captured, reason = None, None
        if attention and new_ids:
            from agent.backends.attention import capture_after_generate

            try:
                sequences = out.sequences[:, : prompt_len + len(new_ids)]
                captured = capture_after_generate(
                    self.net, inputs, sequences, out.past_key_values, image_token_id=self.image_token_id,
                    heads=self.attention_heads, layers=self.attention_layers,  # type: ignore[arg-type]
                    cache_keep=prompt_len - 1)
            except Exception as exc:  # maps are a bonus: a failure is recorded, the step goes on
                reason = f"attention capture failed: {type(exc).__name__}: {exc}"
        elif not attention:
            reason = "attention capture is off (policy.attention: false)"
        else:
            reason = "no generated token"
        return Generation(
            text=text, tokens=tokens, prompt_tokens=prompt_len, output_tokens=len(new_ids),
            image_tokens=int((inputs["input_ids"] == self.image_token_id).sum()), finish_reason=finish, notes=notes,
            attention=captured, attention_reason=reason,
        )

    def _spans(self, ids: list[int], logprobs: list[float]) -> tuple[str, list[TokenLogprob]]:
        """Decode and give each token its character span (a prefix decode keeps multi-byte characters whole)."""
        tokens = []
        previous = ""
        for i, (token_id, lp) in enumerate(zip(ids, logprobs)):
            text = self.tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
            if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: the character ends in a later token
                tokens.append(TokenLogprob(text="", start=len(previous), end=len(previous), logprob=lp))
                continue
            tokens.append(TokenLogprob(text=text[len(previous):], start=len(previous), end=len(text), logprob=lp))
            previous = text
        return previous, tokens

    def close(self) -> None:
        del self.net


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
        from agent.tiny_model import image_only_processor_class

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
    return (f"cannot load {model!r}: {first}. Its weights are not on this machine (no network, or not in the "
            f"Hugging Face cache). " + _how_to_get())


def _how_to_get() -> str:
    return ("Download on a machine with network, e.g. `huggingface-cli download Qwen/Qwen3-VL-2B-Thinking "
            "--local-dir models/Qwen3-VL-2B-Thinking`, copy the folder here and pass --model models/Qwen3-VL-2B-Thinking "
            "(or run `glassbox dev tiny-model DIR` for a random-weight test model).")


__all__ = ["LocalQwen3VL", "ModelUnavailable"]
