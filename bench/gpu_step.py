"""One thinking step of the local backend, plain vs fast vs fast + attention capture, at public Qwen3-VL shapes.

A random-weight Qwen3-VL with the public 2B / 4B / 8B shapes (``--shape``; weights cannot be downloaded
here, and decoding speed depends on the shapes, not the values), bf16 on CUDA; a 1280x800 screenshot
(1000 image tokens) and a prompt shaped like a Glassbox step (system prompt + tools, the screenshot, the
task and history), ``--new-tokens`` generated tokens (EOS suppressed so every variant makes exactly as
many). Each variant runs a first step (nothing cached) and then ``--reps`` next steps (a new
screenshot and new history, the same system prompt) and reports medians:

- plain: transformers ``generate`` (dynamic cache, eager decode);
- fast: static KV cache, decode step compiled once per process, the unchanged prompt prefix reused;
- fast + capture: the same, then one teacher-forced forward keeping every layer's attention rows.

Printed: vision, prefill, ms per token and step time; the first call's compile time; peak GPU memory; and
the step's ratio to the floor (weight bytes read per token / the device-to-device copy bandwidth measured
in this run). Without CUDA it runs the tiny shape on CPU and says that GPU figures need a GPU.

    .venv/bin/python bench/gpu_step.py --shape 2b            # on a GPU machine
    .venv/bin/python bench/gpu_step.py                        # CPU: tiny shape
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.backends.attention import capture_after_generate  # noqa: E402
from agent.backends.base import Sampling  # noqa: E402
from agent.backends.decoding import FastDecoder, fast_path_unsupported, plain_generate  # noqa: E402
from agent.backends.local import _load_processor  # noqa: E402
from agent.tiny_model import build_tiny_model  # noqa: E402

# Public Qwen3-VL shapes (the Hugging Face configs of Qwen/Qwen3-VL-{2B,4B,8B}-Thinking).
VISION_SMALL = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, deepstack_visual_indexes=[5, 11, 17])
VISION_8B = dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, deepstack_visual_indexes=[8, 16, 24])
SHAPES: dict[str, dict[str, Any]] = {
    "2b": dict(
        text=dict(
            hidden_size=2048,
            intermediate_size=6144,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
        ),
        vision=VISION_SMALL,
        tie=True,
    ),
    "4b": dict(
        text=dict(
            hidden_size=2560,
            intermediate_size=9728,
            num_hidden_layers=36,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
        ),
        vision=VISION_SMALL,
        tie=True,
    ),
    "8b": dict(
        text=dict(
            hidden_size=4096,
            intermediate_size=12288,
            num_hidden_layers=36,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
        ),
        vision=VISION_8B,
        tie=False,
    ),
}
SYSTEM_TOKENS, HISTORY_TOKENS = 700, 200  # ~900 text tokens, as a real Qwen tokenizer gives a Glassbox step


def build_model(shape: str, tiny_dir: Path, device: str, dtype: torch.dtype) -> Any:
    """The tiny model itself, or a random-weight model with a public shape and the tiny model's token ids."""
    from transformers import AutoConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    if shape == "tiny":
        # transformers types .to as @wraps(torch.nn.Module.to), the unbound method: mypy takes device for self.
        return Qwen3VLForConditionalGeneration.from_pretrained(tiny_dir, dtype=dtype).to(device).eval()  # type: ignore[arg-type]
    spec = SHAPES[shape]
    tiny = AutoConfig.from_pretrained(tiny_dir)
    text = dict(
        vocab_size=151936,
        max_position_embeddings=262144,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        },
        tie_word_embeddings=spec["tie"],
        **spec["text"],
    )
    vision = dict(
        in_channels=3,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        hidden_act="gelu_pytorch_tanh",
        num_position_embeddings=2304,
        out_hidden_size=spec["text"]["hidden_size"],
        **spec["vision"],
    )
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tiny.image_token_id,
        video_token_id=tiny.video_token_id,
        vision_start_token_id=tiny.vision_start_token_id,
        vision_end_token_id=tiny.vision_end_token_id,
        tie_word_embeddings=spec["tie"],
    )
    torch.manual_seed(0)
    with torch.device(device):
        net = Qwen3VLForConditionalGeneration._from_config(config, dtype=dtype)
    from transformers import GenerationConfig

    net.generation_config = GenerationConfig.from_pretrained(tiny_dir)  # the same EOS ids (suppressed by min_new_tokens)
    return net.eval()


def screenshot(seed: int) -> Image.Image:
    """A shop-admin-like 1280x800 screen (random weights do not care, but the processor path is real)."""
    image = Image.new("RGB", (1280, 800), (244, 245, 248))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 220, 800), fill=(30, 41, 59))
    for row in range(12):
        y = 90 + row * 52
        draw.rectangle((260, y, 1240, y + 40), fill=(255, 255, 255), outline=(220, 222, 228))
        draw.text(
            (280, y + 12), f"Product {seed * 100 + row}  ·  {10 + row * seed % 7}.99  ·  stock {row * 3}", fill=(20, 20, 20)
        )
    return image


def step_inputs(processor: Any, seed: int, device: str) -> Any:
    """System prompt (fixed) + screenshot + history (changes every step) + the assistant header."""
    tok = processor.tokenizer
    image = processor.image_processor(images=[screenshot(seed)], return_tensors="pt")
    n_image = int(image["image_grid_thw"].prod()) // 4
    g = torch.Generator().manual_seed(seed)
    special = {tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    plain_ids = [i for i in range(len(tok)) if i not in special and i > 10]

    def text(n: int, gen: torch.Generator) -> list[int]:
        return [plain_ids[int(i)] for i in torch.randint(len(plain_ids), (n,), generator=gen)]

    system = text(SYSTEM_TOKENS, torch.Generator().manual_seed(12345))  # the same every step
    ids = (
        system
        + [tok.convert_tokens_to_ids("<|vision_start|>")]
        + [tok.convert_tokens_to_ids("<|image_pad|>")] * n_image
        + [tok.convert_tokens_to_ids("<|vision_end|>")]
        + text(HISTORY_TOKENS, g)
    )
    input_ids = torch.tensor([ids])
    mm = (input_ids == tok.convert_tokens_to_ids("<|image_pad|>")).long()
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "mm_token_type_ids": mm.to(device),
        "pixel_values": image["pixel_values"].to(device),
        "image_grid_thw": image["image_grid_thw"].to(device),
    }


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(device: str) -> float:
    """Bytes per second moved by a device-to-device copy (read + write), best of 5."""
    n = (1 << 30) if device == "cuda" else (1 << 27)
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n / best


def decode_weight_bytes(net: Any) -> int:
    """What one decode step reads: the language model's layers and norm, and the LM head."""
    lm = net.model.language_model
    params = {id(p): p for p in list(lm.layers.parameters()) + list(lm.norm.parameters()) + list(net.lm_head.parameters())}
    return sum(p.numel() * p.element_size() for p in params.values())


class Timer:
    def __init__(self, device: str) -> None:
        self.device = device

    def __call__(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        sync(self.device)
        t = time.perf_counter()
        out = fn()
        sync(self.device)
        return out, (time.perf_counter() - t) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["tiny", *SHAPES], default=None, help="default: 2b on CUDA, tiny on CPU")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="fast path without torch.compile")
    parser.add_argument("--skip-plain", action="store_true", help="leave out the (slow) plain path")
    parser.add_argument("--profile", action="store_true", help="then profile one fast step: top ops, launches per token")
    parser.add_argument(
        "--allow-cpu",
        action="store_true",
        help="run a public shape on CPU anyway (slow; checks the shapes build and run, no GPU figures)",
    )
    args = parser.parse_args()
    if why := fast_path_unsupported():
        sys.exit(f"gpu_step: {why}")
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    shape = args.shape or ("2b" if cuda else "tiny")
    if not cuda and not args.allow_cpu:
        if shape != "tiny":
            print(f"no CUDA device: --shape {shape} needs a GPU; running the tiny shape on CPU instead")
        shape = "tiny"
        print("no CUDA device here: these are CPU figures with the tiny model; GPU figures need a GPU")
    dtype = torch.bfloat16 if cuda else torch.float32
    if not cuda and shape != "tiny":
        print(f"--allow-cpu: the {shape} shape on CPU, fp32; a check that it runs, not GPU figures")
    torch.set_grad_enabled(False)

    with tempfile.TemporaryDirectory() as tmp:
        tiny_dir = build_tiny_model(Path(tmp) / "tiny")
        processor = _load_processor(str(tiny_dir))
        started = time.perf_counter()
        net = build_model(shape, tiny_dir, device, dtype)
        net.set_attn_implementation({"text_config": "sdpa", "vision_config": net.config.vision_config._attn_implementation})
        print(
            f"model: {shape} shape, {sum(p.numel() for p in net.parameters()) / 1e9:.2f} B parameters, {dtype}, "
            f"{device}{' (' + torch.cuda.get_device_name() + ')' if cuda else ''}; "
            f"built in {time.perf_counter() - started:.1f} s"
        )
        timer = Timer(device)
        sampling = Sampling(temperature=0, top_p=1, top_k=0, presence_penalty=0, max_new_tokens=args.new_tokens)
        steps = [step_inputs(processor, seed, device) for seed in range(args.reps + 1)]
        prompt_len = steps[0]["input_ids"].shape[1]
        image_id = net.config.image_token_id
        print(
            f"prompt: {prompt_len} tokens ({int(steps[0]['mm_token_type_ids'].sum())} image tokens, "
            f"{SYSTEM_TOKENS} system + tools, {HISTORY_TOKENS} task + history); {args.new_tokens} new tokens\n"
        )

        def vision_ms(inputs: Any) -> float:
            return timer(lambda: net.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]))[1]

        def prefill_ms(inputs: Any) -> float:  # vision + prefill of the whole prompt, one forward
            return timer(lambda: net(**inputs, logits_to_keep=1))[1]

        bandwidth = copy_bandwidth(device)
        weights = decode_weight_bytes(net)
        floor_token_ms = weights / bandwidth * 1000
        floor_step_ms = floor_token_ms * args.new_tokens
        rows: dict[str, dict[str, float]] = {}

        def report(name: str, runs: Sequence[tuple[float, ...]]) -> None:
            """Print a variant's rows as soon as it is measured, so a later failure keeps them."""
            if not rows:
                print(
                    f"{'variant':<24}{'vision':>9}{'prefill':>9}{'ms/token':>10}{'step':>10}{'capture':>9}{'reused':>8}"
                    f"{'x floor':>9}"
                )
            for label, part in ((name, runs[1:]), (name + " (first)", runs[:1])):
                r = rows[label] = _median_row(part)
                print(
                    f"{label:<24}{r['vision']:>7.1f}ms{r['prefill']:>7.1f}ms{r['per_token']:>10.2f}{r['step'] / 1000:>9.3f}s"
                    f"{r.get('capture', 0):>7.1f}ms{int(r.get('reused', 0)):>8}{r['step'] / floor_step_ms:>8.2f}x",
                    flush=True,
                )

        peaks: dict[str, float] = {}

        def reset_peak() -> None:
            if cuda:
                torch.cuda.reset_peak_memory_stats()

        def peak() -> float:
            return torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")

        # One untimed forward first: CUDA's lazy start-up (kernel loading, cuBLAS handles) would otherwise land on
        # the first vision timing alone and make that step's prefill (whole forward minus vision) negative.
        prefill_ms(steps[0])
        if not args.skip_plain:
            reset_peak()
            runs: list[tuple[float, ...]] = []
            for inputs in steps:
                v = vision_ms(inputs)
                p = prefill_ms(inputs) - v
                (new, *_), total = timer(
                    partial(plain_generate, net, inputs, sampling, eos_ids=set(), min_new_tokens=args.new_tokens)
                )
                assert len(new) == args.new_tokens
                runs.append((v, p, (total - v - p) / (args.new_tokens - 1), total))
            report("plain", runs)
            peaks["plain"] = peak()

        decoder = FastDecoder(net, compile=not args.no_compile, settings_key=shape)
        compile_s = (decoder.warm_up(prompt_len + args.new_tokens) or 0.0) / 1000
        for variant in ("fast", "fast + capture"):
            reset_peak()
            decoder.invalidate()
            runs = []
            for inputs in steps:
                result, total = timer(partial(decoder.generate, inputs, sampling, image_hashes=[str(id(inputs))], eos_ids=set()))
                capture_ms = 0.0
                if variant == "fast + capture":
                    sequences = torch.cat([inputs["input_ids"][0], torch.tensor(result.new_ids, device=device)])[None, :]
                    decoder.prepare_capture(prompt_len - 1)
                    captured, capture_ms = timer(
                        partial(
                            capture_after_generate,
                            net,
                            inputs,
                            sequences,
                            decoder.cache,
                            image_token_id=image_id,
                            position_ids=result.position_ids,
                        )
                    )
                    assert captured.rows.shape[:2] == (net.config.text_config.num_hidden_layers, args.new_tokens)
                s = result.stats
                runs.append(
                    (
                        s.vision_ms,
                        s.prefill_ms,
                        s.decode_ms / (args.new_tokens - 1),
                        total + capture_ms,
                        capture_ms,
                        s.prefix_reused,
                    )
                )
            report(variant, runs)
            peaks[variant] = peak()

        print()
        print(
            f"compile (first call, once per process): {compile_s:.1f} s" if not args.no_compile else "compile: off (--no-compile)"
        )
        if cuda:
            print("peak GPU memory: " + ", ".join(f"{k} {v:.2f} GiB" for k, v in peaks.items()))
        print(
            f"floor: {weights / 1e9:.2f} GB of decode weights per token / {bandwidth / 1e9:.0f} GB/s copy bandwidth = "
            f"{floor_token_ms:.2f} ms/token, {floor_step_ms / 1000:.3f} s per {args.new_tokens}-token step"
        )
        f, c = rows["fast"]["step"], rows["fast + capture"]["step"]
        capture = rows["fast + capture"]["capture"]
        if "plain" in rows:
            print(f"fast vs plain: {rows['plain']['step'] / f:.2f}x faster per step")
        # The capture forward is the work capture adds; the step medians also carry run-to-run noise.
        print(
            f"capture: +{capture:.1f} ms = +{100 * capture / f:.1f} % of the fast step "
            f"(step medians: fast {f / 1000:.3f} s, fast + capture {c / 1000:.3f} s, {100 * (c - f) / f:+.1f} %)"
        )
        if args.profile:
            profile_step(decoder, steps[-1], sampling, cuda, args.new_tokens)
        if not cuda:
            print("\n(CPU, tiny model: these show the mechanics work; the 1.0 s / 5 % / 60 s targets are GPU figures.)")


def profile_step(decoder: FastDecoder, inputs: Any, sampling: Sampling, cuda: bool, new_tokens: int) -> None:
    """Where a fast step's time goes: the busiest ops, and graph launches / kernel time per generated token."""
    from torch.profiler import ProfilerActivity, profile

    decoder.invalidate()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        decoder.generate(inputs, sampling, image_hashes=["profiled"], eos_ids=set())
        wall_ms = (time.perf_counter() - started) * 1000
    averages = prof.key_averages()
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    print(f"\nprofiled fast step (profiler on): {wall_ms:.0f} ms")
    print(averages.table(sort_by=sort, row_limit=18, max_name_column_width=60))
    if not cuda:
        return
    from torch.autograd import DeviceType

    launches = sum(e.count for e in averages if e.key == "cudaGraphLaunch")
    eager = sum(e.count for e in averages if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    # Kernel rows only: CPU-side rows (the compiled graph's call, "Command Buffer Full") also carry device time.
    kernel_ms = sum(e.self_device_time_total for e in averages if e.device_type == DeviceType.CUDA) / 1000
    print(
        f"per token: {launches / new_tokens:.2f} graph launches, {eager / new_tokens:.1f} kernels launched outside graphs, "
        f"{kernel_ms / new_tokens:.2f} ms of kernels; kernels {kernel_ms:.0f} ms of {wall_ms:.0f} ms wall "
        f"({100 * kernel_ms / wall_ms:.0f} %: near 100 % the step is bound by the GPU's work, not by launching it)"
    )


def _median_row(runs: Sequence[tuple[float, ...]]) -> dict[str, float]:
    keys = ("vision", "prefill", "per_token", "step", "capture", "reused")
    return {k: statistics.median(r[i] for r in runs) for i, k in enumerate(keys) if i < len(runs[0])}


if __name__ == "__main__":
    main()
