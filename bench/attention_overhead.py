"""Attention capture cost: generate with capture on vs off, and eager ``output_attentions`` as the baseline.

One process, interleaved repetitions, the tiny random-weight Qwen3-VL on CPU (or a GPU when present),
a 1280x800 screenshot (1000 image tokens) and the real publish-task prompt. Peak memory per variant is
the process's peak RSS during the call (CPU; reset through /proc/self/clear_refs before it) or
``torch.cuda.max_memory_allocated`` (GPU), model weights included.
Targets: capture costs at most 5 % time and 5 % peak memory over plain generate, and its memory does not
grow with the square of the sequence (the eager baseline's does).

    .venv/bin/python bench/attention_overhead.py [--reps 5] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from agent.backends.attention import capture_after_generate
from agent.backends.cache_name import returned_cache
from agent.backends.local import LocalQwen3VL
from agent.prompt import build_prompt
from agent.task import load_task
from agent.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parent.parent


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_mb() -> float:
    """Peak since the last reset: process RSS (CPU) or allocated CUDA memory."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return rss_kb("VmHWM") / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    buf = io.BytesIO()
    Image.new("RGB", (1280, 800), (240, 242, 246)).save(buf, "PNG")
    with tempfile.TemporaryDirectory() as tmp:
        backend = LocalQwen3VL(str(build_tiny_model(Path(tmp) / "tiny")))
        net = backend.net
        inputs = backend.inputs(build_prompt(load_task(ROOT / "tasks" / "publish_product.yaml"), [], buf.getvalue()))
        seq_len = inputs["input_ids"].shape[1]
        kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, return_dict_in_generate=True)

        def plain() -> None:
            with torch.inference_mode():
                net.generate(**inputs, **kw)

        capture_alone: list[float] = []

        def capture() -> None:
            with torch.inference_mode():
                out = net.generate(**inputs, **kw)
            t0 = time.perf_counter()
            capture_after_generate(net, inputs, out.sequences, returned_cache(out), image_token_id=backend.image_token_id)
            capture_alone.append(time.perf_counter() - t0)

        def eager() -> None:
            net.set_attn_implementation("eager")
            try:
                with torch.inference_mode():
                    net.generate(**inputs, **kw, output_attentions=True)
            finally:
                net.set_attn_implementation({"text_config": "sdpa", "vision_config": "sdpa"})

        variants = {"plain generate": plain, "generate + capture": capture, "eager output_attentions": eager}
        plain()  # warm-up
        times: dict[str, list[float]] = {k: [] for k in variants}
        peaks: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.reps):
            for name, fn in variants.items():  # interleaved, so drift hits every variant alike
                reset_peak()
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                peaks[name].append(peak_mb())
    med = statistics.median
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"attention_overhead: tiny Qwen3-VL (random weights), {device}, prompt {seq_len} tokens "
        f"(1000 image tokens, 1280x800), {args.new_tokens} new tokens, {args.reps} interleaved reps"
    )
    base_t, base_m = med(times["plain generate"]), med(peaks["plain generate"])
    for name in variants:
        t, m = med(times[name]), med(peaks[name])
        print(
            f"  {name:<25} {t * 1000:8.1f} ms ({(t / base_t - 1) * 100:+6.1f} %)   peak {m:8.1f} MB"
            f" ({(m / base_m - 1) * 100:+6.1f} %)"
        )
    print(
        f"  the capture forward alone {med(capture_alone) * 1000:8.1f} ms "
        f"({med(capture_alone) / base_t * 100:.1f} % of plain generate)"
    )
    t_over = med(times["generate + capture"]) / base_t - 1
    m_over = med(peaks["generate + capture"]) / base_m - 1
    print(
        f"  capture over plain: time {t_over * 100:+.1f} % (target <= 5 %: {'met' if t_over <= 0.05 else 'NOT met'}), "
        f"peak memory {m_over * 100:+.1f} % (target <= 5 %: {'met' if m_over <= 0.05 else 'NOT met'})"
    )
    print(
        "  capture keeps layers x new tokens x image tokens floats (linear in the sequence); eager keeps "
        "layers x heads x S^2 per forward."
    )


if __name__ == "__main__":
    main()
