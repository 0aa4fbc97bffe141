"""Fine-tune a local Qwen3-VL on a runs folder's labels: SFT or DPO, LoRA or full, optional attention guidance.

A small training loop of its own rather than TRL's SFTTrainer/DPOTrainer, because the model must be trained on
exactly the tokens inference sends (:func:`agent.backends.local.encode_prompt`: the chat template with its
generation prompt, which for Thinking models opens ``<think>``; the image-only processor when torchvision is
missing), with the loss on the answer's tokens only. TRL 1.16 renders whole conversations through the chat
template and masks assistant tokens with ``{% generation %}`` markers (it swaps in a training template of
its own for the models it knows, and has none for Qwen3-VL's or the tiny model's), so its prompt would not
be the inference prompt; and attention guidance needs its own loss term and attention hook. PEFT does the
LoRA part.

The vision tower is frozen (LoRA targets the language model's attention and MLP projections; a full
fine-tune trains the language model), so each screenshot is encoded once, before the first step.

A step's forward is exact, but by default no gradient flows back into the prompt's keys and values: the prompt
(~1,700 tokens for a Glassbox step, system prompt and screenshot included) runs without gradients into a KV
cache, then the answer (~40 tokens) runs on it with gradients through every trained layer. That makes a step
about half the CPU time of full backpropagation; ``prompt_grad=True`` (``--prompt-grad``) gives the exact
gradient. Attention guidance then moves the action tokens' queries (their keys side is the prompt's).

    summary = train(TrainConfig(mode="sft", runs_dir=Path("runs"), model="models/Qwen3-VL-2B-Thinking",
                                out=Path("ft"), lora=True, steps=300))
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.backends.attention import image_spans
from agent.backends.attention_loss import GuidanceSpec, box_cells, box_mass, guided
from agent.backends.local import adapter_base, encode_prompt, load_for_training, set_pixel_limits
from agent.confidence import tokens_in, tool_call_spans
from agent.prompt import strip_think
from replays.training.data import Mode, TrainingData, TrainSample, load_training_data
from replays.training.master_weights import MasterAdamW
from tools.errors import UsageError
from tracer.logs import get_logger

log = get_logger("glassbox.train")

LORA_TARGETS = r".*language_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
DEFAULT_LR = {True: 2e-4, False: 1e-5}  # LoRA, full fine-tune


class TrainConfig(BaseModel):
    mode: Mode = "sft"
    runs_dir: Path
    model: str
    out: Path
    lora: bool = False
    steps: int = Field(default=200, ge=1, le=1_000_000)
    lr: float | None = Field(default=None, gt=0)  # None: DEFAULT_LR for the mode
    lora_rank: int = Field(default=16, ge=1, le=1024)
    lora_alpha: int | None = None  # None: twice the rank
    attention_guidance: float = Field(default=0.0, ge=0)
    beta: float = Field(default=0.1, gt=0)  # DPO's temperature
    seed: int = 0
    device: str | None = None  # None: cuda when present, else cpu
    prompt_grad: bool = False  # backpropagate into the prompt's keys and values too (exact, ~3x the cost)
    think_targets: bool | None = None  # targets with <think> reasoning or without; None: as the export decides


class StepLog(BaseModel):
    """One line of OUT/train_log.jsonl."""

    step: int
    loss: float
    lr: float
    seconds: float  # since training started
    box_mass: float | None = None  # with --attention-guidance: this step's mass inside the box


class TrainSummary(BaseModel):
    """OUT/train_summary.json."""

    mode: Mode
    base_model: str
    out: str
    lora: bool
    device: str
    samples: int
    steps: int
    seconds: float
    cpu_seconds: float  # CPU time this process spent in the steps (all threads): on a busy machine, the steadier figure
    samples_per_s: float
    peak_memory_mb: float
    peak_memory_kind: str  # "cuda max allocated" or "process peak RSS"
    precision: str = ""  # the trained weights' dtype, and whether the optimizer steps fp32 master copies of them
    trained_parameters: int = 0  # the parameters the optimizer stepped (LoRA: the adapters')
    final_loss: float
    lr: float
    attention_guidance: float
    data_hash: str
    box_mass_before: float | None = None  # mean over samples with a box: action tokens' map mass inside it
    box_mass_after: float | None = None


class TrainError(UsageError, ValueError):
    """Training cannot start (a bad output folder, an adapter given as the base model)."""


@dataclass
class _Sequence:
    """Prompt + one answer, tokenised, with the screenshot features encoded once."""

    input_ids: Any  # (1, P + T)
    mm_token_type_ids: Any
    image_grid_thw: Any
    features: Any  # the vision tower's output for the prompt's images (frozen), or None
    positions: Any  # (4, 1, P + T): text positions, then multimodal RoPE (t, h, w), as the fast decoder passes them
    prompt_len: int
    target_len: int
    guidance: GuidanceSpec | None

    def forward(self, net: Any, *, prompt_grad: bool) -> Any:
        """Log-probabilities of the answer's tokens, (T,).

        Without ``prompt_grad`` the prompt (all but its last token) runs first without gradients, into a KV
        cache, and the last prompt token with the answer runs on it: the same values as one forward, but no
        gradient flows back into the prompt's keys and values (the prompt is ~40x longer than the answer, so
        this is most of a step's cost). With it, one forward over everything.
        """
        import torch

        vision: dict[str, Any] = {}
        if self.features is not None:
            vision = {"image_grid_thw": self.image_grid_thw, "mm_encoder_outputs": {"image": self.features}}
        ids, mm, positions = self.input_ids, self.mm_token_type_ids, self.positions
        cut = 0 if prompt_grad else self.prompt_len - 1
        cache = None
        if cut:
            from transformers import DynamicCache

            cache = DynamicCache()
            with torch.no_grad():
                net(
                    input_ids=ids[:, :cut],
                    mm_token_type_ids=None if mm is None else mm[:, :cut],
                    position_ids=positions[:, :, :cut],
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                    **vision,
                )
            vision = {}  # the images are all in the prompt, now in the cache
        out = net(
            input_ids=ids[:, cut:],
            mm_token_type_ids=None if mm is None else mm[:, cut:],
            position_ids=positions[:, :, cut:],
            cache=cache,
            use_cache=cache is not None,
            logits_to_keep=self.target_len + 1,
            **vision,
        )
        logits = out.logits[0, :-1].float()  # position P-1+j predicts answer token j
        answer = ids[0, self.prompt_len :]
        return torch.log_softmax(logits, dim=-1).gather(1, answer[:, None])[:, 0]


@dataclass
class _Encoded:
    sample: TrainSample
    chosen: _Sequence
    rejected: _Sequence | None = None
    reference: tuple[float, float] | None = None  # DPO: the reference model's log-p of (chosen, rejected)


def train(config: TrainConfig, *, on_step: Callable[[StepLog], None] | None = None) -> TrainSummary:
    """Train, save the model (or LoRA adapter) with its processor into ``config.out``, and return the summary."""

    if adapter_base(config.model) is not None:
        raise TrainError(f"{config.model} is a LoRA adapter: train from its base model ({adapter_base(config.model)})")
    out = config.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainError(f"output folder {out} exists and is not empty: name a new folder")
    if not config.runs_dir.is_dir():
        raise TrainError(f"no runs folder {config.runs_dir}: name the folder whose labels are the data (--runs-dir)")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _train(config, out, on_step)
    except BaseException:
        if created:  # no model was saved (no data, a model that does not load, an interrupt): leave no folder
            shutil.rmtree(out, ignore_errors=True)
        raise


def _device(asked: str | None) -> str:
    """The torch device to train on: ``asked``, checked to exist here (a usage error naming it otherwise), or
    CUDA when present, else the CPU."""
    import torch

    if asked is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(asked)
    except (RuntimeError, ValueError):
        raise TrainError(f"--device {asked!r} is not a device torch knows: cpu, cuda, cuda:1 ...") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise TrainError(f"--device {asked}: torch sees no CUDA GPU on this machine; leave --device out to use the CPU")
        if device.index is not None and device.index >= count:
            raise TrainError(f"--device {asked}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type != "cpu":
        raise TrainError(f"--device {asked}: training runs on cpu or cuda")
    return asked


def _train(config: TrainConfig, out: Path, on_step: Callable[[StepLog], None] | None) -> TrainSummary:
    import torch

    device = _device(config.device)
    data = load_training_data(config.runs_dir, config.mode, out / "data", config.think_targets)
    lr = config.lr if config.lr is not None else DEFAULT_LR[config.lora]
    torch.manual_seed(config.seed)
    base = _model_ref(config.model)
    net, processor = load_for_training(base, device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    thinking = _thinking(processor)
    encoded = _encode_all(net, processor, data, thinking=thinking, guidance=True)
    net = _prepare(net, config)
    if config.mode == "dpo":
        _reference_logps(net, encoded)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = MasterAdamW(params, lr=lr)
    guided_samples = [e for e in encoded if e.chosen.guidance is not None]
    before = _mean_mass(net, guided_samples)
    order = _schedule(len(encoded), config.steps, config.seed)
    started = time.perf_counter()
    cpu_started = time.process_time()
    loss_value = float("nan")
    with open(out / "train_log.jsonl", "w", encoding="utf-8") as log_file:
        for step, index in enumerate(order, 1):
            step_lr = _lr_at(step, config.steps, lr)
            for group in optimizer.param_groups:
                group["lr"] = step_lr
            net.train()
            loss, mass = _loss(net, encoded[index], config)
            loss.backward()
            optimizer.clip_grad_norm(1.0)
            optimizer.step()
            optimizer.zero_grad()
            loss_value = float(loss.detach())
            entry = StepLog(
                step=step,
                loss=round(loss_value, 6),
                lr=step_lr,
                seconds=round(time.perf_counter() - started, 3),
                box_mass=None if mass is None else round(mass, 6),
            )
            log_file.write(entry.model_dump_json(exclude_none=True) + "\n")
            log_file.flush()
            if on_step is not None:
                on_step(entry)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    after = _mean_mass(net, guided_samples)
    peak, kind = _peak_memory(device)
    _save(net, processor, config, base, out)
    summary = TrainSummary(
        mode=config.mode,
        base_model=base,
        out=str(out),
        lora=config.lora,
        device=device,
        samples=len(encoded),
        steps=config.steps,
        seconds=round(seconds, 3),
        cpu_seconds=round(cpu_seconds, 3),
        samples_per_s=round(config.steps / seconds, 3) if seconds > 0 else 0.0,
        peak_memory_mb=round(peak, 1),
        peak_memory_kind=kind,
        precision=_precision(params, optimizer),
        trained_parameters=sum(p.numel() for p in params),
        final_loss=round(loss_value, 6),
        lr=lr,
        attention_guidance=config.attention_guidance,
        data_hash=data.data_hash,
        box_mass_before=None if before is None else round(before, 6),
        box_mass_after=None if after is None else round(after, 6),
    )
    (out / "train_summary.json").write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    log.info("training done", out=str(out), steps=config.steps, final_loss=summary.final_loss, seconds=summary.seconds)
    return summary


def _model_ref(model: str) -> str:
    """A local folder as an absolute path (the adapter records it, so it loads from any working folder)."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def _thinking(processor: Any) -> bool:
    """As the backend decides it: a Thinking template opens ``<think>`` in its generation prompt."""
    probe = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "x"}]}], tokenize=False, add_generation_prompt=True
    )
    return bool(probe.rstrip().endswith("<think>"))


def answer_text(target: str, *, thinking: bool) -> str:
    """What the model generates after the prompt for ``target``.

    A Thinking model's prompt ends with ``<think>``: its answer is the reasoning (none for an answer without a
    think block) then ``</think>`` then the tool call, as the parser reads it. Other models get the answer
    without reasoning.
    """
    text = target.strip()
    if not thinking:
        return strip_think(text)
    text = text.removeprefix("<think>").lstrip("\n")
    return text if "</think>" in text else "</think>\n\n" + text


def _encode_all(net: Any, processor: Any, data: TrainingData, *, thinking: bool, guidance: bool) -> list[_Encoded]:
    import torch

    encoded = []
    size = dict(processor.image_processor.size)
    with torch.no_grad():
        for sample in data.samples:
            processor.image_processor.size = dict(size)
            set_pixel_limits(processor, sample.min_pixels, sample.max_pixels)
            inputs = encode_prompt(processor, sample.prompt()).to(net.device)
            features = None
            if inputs.get("pixel_values") is not None:
                # The vision tower is frozen: encode each screenshot once, not every step.
                features = net.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], return_dict=True)
            chosen = _sequence(net, processor, inputs, features, sample.target, sample.box if guidance else None, thinking)
            rejected = None
            if sample.rejected is not None:
                rejected = _sequence(net, processor, inputs, features, sample.rejected, None, thinking)
            encoded.append(_Encoded(sample=sample, chosen=chosen, rejected=rejected))
    processor.image_processor.size = size  # the processor is saved with the model: as it was loaded
    return encoded


def _sequence(net: Any, processor: Any, inputs: Any, features: Any, target: str, box: Any, thinking: bool) -> _Sequence:
    import torch

    tokenizer = processor.tokenizer
    text = answer_text(target, thinking=thinking)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids(tokenizer.eos_token)]
    prompt_ids = inputs["input_ids"]
    device = prompt_ids.device
    answer = torch.tensor([ids], dtype=prompt_ids.dtype, device=device)
    mm = inputs.get("mm_token_type_ids")
    if mm is not None:
        mm = torch.cat([mm, torch.zeros_like(answer, dtype=mm.dtype)], dim=1)
    prompt_len = int(prompt_ids.shape[1])
    spec = None
    spans = image_spans(prompt_ids[0], int(net.config.image_token_id))
    if box is not None and spans and inputs.get("image_grid_thw") is not None:
        coordinate = _coordinate_tokens(tokenizer, ids[:-1], thinking)
        if coordinate:
            start, end = spans[-1]  # the current screenshot: the prompt's last image
            thw = inputs["image_grid_thw"][-1].tolist()
            grid = (int(thw[1]) // 2, int(thw[2]) // 2)
            spec = GuidanceSpec(
                # Answer token j sits at P + j; the query that produced it is the one before.
                query_positions=torch.tensor([prompt_len + j - 1 for j in coordinate], device=device),
                image_positions=torch.arange(start, end, device=device),
                inside=torch.tensor(box_cells(grid, box), device=device),
            )
    input_ids = torch.cat([prompt_ids, answer], dim=1)
    return _Sequence(
        input_ids=input_ids,
        mm_token_type_ids=mm,
        positions=_positions(net, input_ids, mm, inputs.get("image_grid_thw")),
        image_grid_thw=inputs.get("image_grid_thw"),
        features=features,
        prompt_len=prompt_len,
        target_len=len(ids),
        guidance=spec,
    )


def _positions(net: Any, input_ids: Any, mm: Any, grid: Any) -> Any:
    """Row 0 the text positions, rows 1-3 multimodal RoPE over the whole sequence (see decoding.FastDecoder)."""
    import torch

    n = int(input_ids.shape[1])
    text = torch.arange(n, device=input_ids.device).view(1, 1, -1)
    if grid is not None and mm is not None:
        mrope, _ = net.model.get_rope_index(input_ids, mm_token_type_ids=mm, image_grid_thw=grid)
    else:
        mrope = text.expand(3, 1, -1)
    return torch.cat([text, mrope.to(input_ids.device)], dim=0)


def _coordinate_tokens(tokenizer: Any, ids: list[int], thinking: bool) -> list[int]:
    """Indexes of the answer's tokens that spell the tool call's coordinate (the maps' action tokens)."""
    from agent.backends.base import TokenLogprob

    tokens, previous = [], ""
    for i in range(len(ids)):
        text = tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
        if text.endswith("\ufffd"):
            tokens.append(TokenLogprob(text="", start=len(previous), end=len(previous), logprob=0.0))
            continue
        tokens.append(TokenLogprob(text=text[len(previous) :], start=len(previous), end=len(text), logprob=0.0))
        previous = text
    return tokens_in(tokens, tool_call_spans(previous, thinking=thinking).coordinate)


def _prepare(net: Any, config: TrainConfig) -> Any:
    """Freeze what is not trained; wrap in LoRA adapters with ``--lora``."""
    for p in net.model.visual.parameters():
        p.requires_grad_(False)
    if not config.lora:
        return net
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha if config.lora_alpha is not None else 2 * config.lora_rank,
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        bias="none",
    )
    return get_peft_model(net, lora)


def _loss(net: Any, item: _Encoded, config: TrainConfig) -> tuple[Any, float | None]:
    import torch.nn.functional as F

    spec = item.chosen.guidance if config.attention_guidance > 0 else None
    mass = None
    if spec is not None:
        with guided(net, spec):
            chosen = item.chosen.forward(net, prompt_grad=config.prompt_grad)
        mass_t = box_mass(spec)
        mass = float(mass_t.detach())
    else:
        chosen = item.chosen.forward(net, prompt_grad=config.prompt_grad)
    if config.mode == "sft":
        loss = -chosen.mean()
    else:
        assert item.rejected is not None and item.reference is not None
        rejected = item.rejected.forward(net, prompt_grad=config.prompt_grad)
        ref_chosen, ref_rejected = item.reference
        margin = (chosen.sum() - ref_chosen) - (rejected.sum() - ref_rejected)
        loss = -F.logsigmoid(config.beta * margin)
    if spec is not None:
        loss = loss + config.attention_guidance * (1 - mass_t)
    return loss, mass


def _reference_logps(net: Any, encoded: list[_Encoded]) -> None:
    """DPO's reference: the model before any step, computed once (the same for LoRA and full fine-tunes)."""
    import torch

    net.eval()
    with torch.no_grad():
        for item in encoded:
            if item.rejected is None:
                raise TrainError(f"run {item.sample.run_id} step {item.sample.step}: a DPO record without a rejected answer")
            # No gradients here: one forward over everything is the cheaper way.
            chosen, rejected = item.chosen.forward(net, prompt_grad=True), item.rejected.forward(net, prompt_grad=True)
            item.reference = (float(chosen.sum()), float(rejected.sum()))


def _mean_mass(net: Any, items: list[_Encoded]) -> float | None:
    """The action tokens' map mass inside the labelled boxes, averaged over samples (no gradients)."""
    import torch

    if not items:
        return None
    net.eval()
    masses = []
    with torch.no_grad():
        for item in items:
            spec = item.chosen.guidance
            assert spec is not None
            with guided(net, spec):
                item.chosen.forward(net, prompt_grad=True)
            masses.append(float(box_mass(spec)))
    return sum(masses) / len(masses)


def box_masses(net: Any, processor: Any, data: TrainingData) -> list[float | None]:
    """Per sample, the action tokens' map mass inside its box under ``net`` (None without a box or coordinate)."""
    encoded = _encode_all(net, processor, data, thinking=_thinking(processor), guidance=True)
    return [_mean_mass(net, [e]) if e.chosen.guidance is not None else None for e in encoded]


def _schedule(n: int, steps: int, seed: int) -> list[int]:
    """Sample order: every sample once per epoch, shuffled per epoch (reproducibly)."""
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps:
        epoch = list(range(n))
        rng.shuffle(epoch)
        order.extend(epoch)
    return order[:steps]


def _lr_at(step: int, steps: int, lr: float) -> float:
    """Linear warm-up over the first 5 % of steps, then linear decay to a tenth."""
    warmup = max(1, steps // 20)
    if step <= warmup:
        return lr * step / warmup
    return lr * (1 - 0.9 * (step - warmup) / max(1, steps - warmup))


def _precision(params: list[Any], optimizer: MasterAdamW) -> str:
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in params})
    if optimizer.copies:
        return f"{'/'.join(dtypes)} weights, stepped through fp32 master copies ({optimizer.copies} of {len(params)} tensors)"
    return f"{'/'.join(dtypes)} weights"


def _peak_memory(device: str) -> tuple[float, str]:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20, "cuda max allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "process peak RSS"


def _save(net: Any, processor: Any, config: TrainConfig, base: str, out: Path) -> None:
    """LoRA: the adapter (naming its base model by absolute path); full: the whole model. The processor beside it."""
    if config.lora:
        net.peft_config["default"].base_model_name_or_path = base
        net.save_pretrained(out)
    else:
        net.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "glassbox_train.json").write_text(
        json.dumps({"base_model": base, "mode": config.mode, "lora": config.lora}, indent=2) + "\n", encoding="utf-8"
    )


__all__ = [
    "DEFAULT_LR",
    "LORA_TARGETS",
    "StepLog",
    "TrainConfig",
    "TrainError",
    "TrainSummary",
    "answer_text",
    "box_masses",
    "train",
]
