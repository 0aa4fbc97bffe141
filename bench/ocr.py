"""OCR cost: time per screenshot (first and warm), whether it holds the GIL, and the loop's step time with OCR on
vs off in the same process, plus how long after a run's end OCR caught up.

1. Reads a real shop screenshot (one recorded run of the bundled task) with rapidocr: the import, the first read
   (models loaded) and warm reads, with 1 onnxruntime thread (the worker's default) and with all cores.
2. GIL: a pure-Python loop on the main thread, alone and while a thread reads screenshots (ratio ~1: released).
3. The bundled publish task with the script policy, OCR off and on alternately against one shop; a step's time
   is the wall time between consecutive StepRecorded events. OCR on waits up to ``--catch-up`` s at the end.

    .venv/bin/python bench/ocr.py [--runs 2] [--warm 5] [--catch-up 120]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from agent import load_task, run_task
from agent.events import Hooks, StepRecorded
from sites.shop import ShopServer
from tracer.ocr_files import read_ocr_index

ROOT = Path(__file__).resolve().parent.parent


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def read_times(png: bytes, warm: int) -> dict[str, float]:
    started = time.perf_counter()
    import onnxruntime  # noqa: F401
    import rapidocr  # noqa: F401

    figures = {"import_s": time.perf_counter() - started}
    from tools.ocr import RapidOcrEngine

    for label, threads in (("1 thread", 1), ("all cores", None)):
        started = time.perf_counter()
        engine = RapidOcrEngine(threads=threads)
        first = engine.read(png)
        figures[f"first read ({label}), s"] = time.perf_counter() - started
        times = []
        for _ in range(warm):
            t = time.perf_counter()
            engine.read(png)
            times.append(time.perf_counter() - t)
        figures[f"warm read ({label}), s"] = median(times)
        figures["lines"] = len(first.lines)
    return figures


def gil_ratio(png: bytes, seconds: float = 3.0) -> float:
    """Python-loop throughput while a thread reads screenshots, over the throughput alone."""
    from tools.ocr import RapidOcrEngine

    engine = RapidOcrEngine(threads=1)
    engine.read(png)

    def spin(until: float) -> int:
        n = 0
        while time.perf_counter() < until:
            n += 1
        return n

    alone = spin(time.perf_counter() + seconds)
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            engine.read(png)

    thread = threading.Thread(target=reader)
    thread.start()
    beside = spin(time.perf_counter() + seconds)
    stop.set()
    thread.join()
    return beside / alone


def one_run(runs_dir: Path, shop_url: str, ocr: bool, catch_up_s: float) -> tuple[list[float], float, float | None, int]:
    """(step times in s, run wall s, OCR caught up after the end s, steps not done)."""
    task = load_task(ROOT / "tasks" / "publish_product.yaml")
    task.ocr.enabled = ocr
    task.ocr.catch_up_s = catch_up_s
    marks: list[float] = []
    hooks = Hooks()
    hooks.on(StepRecorded, lambda event: marks.append(time.perf_counter()))
    started = time.perf_counter()
    result = run_task(task, runs_dir=runs_dir, site_url=shop_url, hooks=hooks)
    wall = time.perf_counter() - started
    steps = [b - a for a, b in zip([started, *marks], marks, strict=False)]
    index = read_ocr_index(result.run_dir)
    caught = index.caught_up_after_end_s if index is not None else None
    return steps, wall, caught, index.not_done if index is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs per condition (alternating off, on)")
    parser.add_argument("--warm", type=int, default=5, help="warm reads per engine setting")
    parser.add_argument("--catch-up", type=float, default=120.0, help="how long a run with OCR waits for it at the end")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, ShopServer() as shop:
        runs = Path(tmp) / "runs"
        steps, _, _, _ = one_run(runs, shop.base_url, False, 0)  # a screenshot to read, and Chromium warmed up
        shot = sorted(runs.glob("*/steps/0019/screenshot.png"))[0].read_bytes()

        figures = read_times(shot, args.warm)
        print("OCR of one 1280x800 shop screenshot (rapidocr, bundled PP-OCR models)")
        for key, value in figures.items():
            print(f"  {key:<28} {value:.3f}" if isinstance(value, float) else f"  {key:<28} {value}")
        print(f"  all cores / 1 thread (warm)  {figures['warm read (all cores), s'] / figures['warm read (1 thread), s']:.2f}")
        ratio = gil_ratio(shot)
        print(f"GIL: Python loop speed beside an OCR thread / alone: {ratio:.2f} (1.0: OCR holds no GIL; 2 cores)")

        off: list[float] = []
        on: list[float] = []
        walls: dict[bool, list[float]] = {False: [], True: []}
        caught: list[float] = []
        for _ in range(args.runs):
            for enabled in (False, True):
                times, wall, after, not_done = one_run(runs, shop.base_url, enabled, args.catch_up)
                (on if enabled else off).extend(times)
                walls[enabled].append(wall)
                if enabled:
                    if after is not None:
                        caught.append(after)
                    print(f"  OCR run: {len(times)} steps, OCR caught up {after} s after the end, {not_done} not done")
        print("Loop step time, bundled publish task, script policy (same process, alternating runs)")
        print(f"  OCR off: median {median(off) * 1000:.0f} ms/step over {len(off)} steps")
        print(f"  OCR on:  median {median(on) * 1000:.0f} ms/step over {len(on)} steps")
        print(f"  on / off step time: {median(on) / median(off):.2f}")
        print(f"  run wall (to RunEnded handled, incl. the OCR wait) on / off: {median(walls[True]) / median(walls[False]):.2f}")
        if caught:
            print(f"  OCR finished {median(caught):.1f} s after the run's end (median of {len(caught)})")


if __name__ == "__main__":
    main()
