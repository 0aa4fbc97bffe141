"""Policy overhead per step: prompt build + parse (+ confidence) against the tiny model's generate, same run.

Uses the tiny random-weight Qwen3-VL (built offline into a temporary folder) on a real 1280x800 shop
screenshot with a realistic history. Target: prompt build + parse under 5 % of generate time.

    .venv/bin/python bench/policy_overhead.py [--reps 10] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from agent.backends.base import resolve_sampling
from agent.backends.local import LocalQwen3VL
from agent.confidence import confidence
from agent.parse import parse_output
from agent.prompt import build_prompt
from agent.task import load_task
from agent.tiny_model import build_tiny_model
from sites.shop import ShopServer
from tools.browser import BrowserExecutor, BrowserSettings
from tracer.schema import StepRecord, StepTimings

ROOT = Path(__file__).resolve().parent.parent


def history(n: int) -> list[StepRecord]:
    return [
        StepRecord(
            index=i,
            started_at=datetime.now(timezone.utc),
            timings=StepTimings(),
            url="u",
            title="t",
            screenshot=f"steps/{i:04d}/screenshot.png",
            screenshot_size=(1280, 800),
            policy="qwen3vl",
            raw_output='ok</think><tool_call>{"name": "computer_use", "arguments": {"action": "left_click", '
            '"coordinate": [500, 462]}}</tool_call>',
            reasoning="ok",
            action={"action": "left_click", "coordinate": [500, 462]},
            confidence=0.4,
            outcome="ok",
        )
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    task = load_task(ROOT / "tasks" / "publish_product.yaml")
    with ShopServer() as shop, BrowserExecutor(BrowserSettings()) as browser:
        browser.goto(shop.base_url + "/login")
        png = browser.perceive().screenshot_png
    steps = history(12)
    with tempfile.TemporaryDirectory() as tmp:
        backend = LocalQwen3VL(str(build_tiny_model(Path(tmp) / "tiny")))
        sampling = resolve_sampling({"temperature": 0}, thinking=True, max_new_tokens=args.new_tokens, seed=0)
        build_ms, parse_ms, gen_ms, proc_ms = [], [], [], []
        backend.generate(build_prompt(task, steps, png), sampling, step=0)  # warm-up
        for rep in range(args.reps):
            t0 = time.perf_counter()
            prompt = build_prompt(task, steps, png)
            t1 = time.perf_counter()
            backend.inputs(prompt)
            t2 = time.perf_counter()
            generation = backend.generate(prompt, sampling, step=rep)
            t3 = time.perf_counter()
            parse_output(generation.text)
            confidence(generation.text, generation.tokens)
            t4 = time.perf_counter()
            build_ms.append((t1 - t0) * 1000)
            proc_ms.append((t2 - t1) * 1000)
            gen_ms.append((t3 - t2) * 1000)
            parse_ms.append((t4 - t3) * 1000)
    med = statistics.median
    overhead = med(build_ms) + med(parse_ms)
    print(
        f"policy_overhead: tiny Qwen3-VL (random weights), 1280x800 screenshot (1000 image tokens), "
        f"12 earlier steps, {args.new_tokens} new tokens, {args.reps} reps, CPU"
    )
    print(f"  prompt build           median {med(build_ms):7.2f} ms")
    print(f"  parse + confidence     median {med(parse_ms):7.2f} ms")
    print(f"  processor (chat template + image)  median {med(proc_ms):7.1f} ms   (part of the backend, for reference)")
    print(f"  generate (incl. processor, spans)  median {med(gen_ms):7.1f} ms")
    ratio = overhead / med(gen_ms) * 100
    print(f"  build + parse = {ratio:.2f} % of generate   (target < 5 %: {'met' if ratio < 5 else 'NOT met'})")


if __name__ == "__main__":
    main()
