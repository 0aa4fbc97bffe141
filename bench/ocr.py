"""OCR cost: time per screenshot (first and warm; full, partial and reused reads), whether it holds the GIL, and
the loop's step time with OCR on vs off in the same process, plus how long after a run's end OCR caught up.

1. Reads a real shop screenshot (one recorded run of the bundled task) with rapidocr: the import, the first read
   (models loaded) and warm reads, with 1 thread (the worker's default) and with all cores, on each installed
   runtime (OpenVINO, onnxruntime).
2. Incremental reads over the recorded run's screenshots in order (tools.ocr_incremental): the time of each full,
   partial and reused read, against a full read of every screenshot by another engine that forgets the lines it
   read before each screenshot.
3. GIL: a pure-Python loop on the main thread, alone and while a thread reads screenshots (ratio ~1: released).
4. The bundled publish task with the script policy, alternating against one shop: OCR off (the baseline);
   ``before``: OCR as the last release read (incremental, on onnxruntime, every line recognized; what is left
   at the run's end read on all cores); ``incremental``: the default (the same on OpenVINO when it is installed,
   a line read before not recognized again; each run starts with none, as a ``glassbox run`` process does);
   optionally ``full`` (every screenshot in full, ``ocr.incremental: false``), ``all-cores`` (all cores
   throughout) and ``pad320`` (the default with every line padded to rapidocr's 320 px, as before 2026-11-27).
   A step's time is the wall time between consecutive StepRecorded events; OCR on waits up to
   ``--catch-up`` s at the end; "caught up" is how long after the run's end (RunEnded) OCR had read every step.
   Both figures are printed against the same run's baselines: step time / off, catch-up / before.

   ``off-again`` is OCR off once more, alternating with the rest: its ratio to ``off`` is the noise between runs.

    .venv/bin/python bench/ocr.py [--runs 3] [--warm 5] [--catch-up 120] [--conditions off,before,incremental]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import load_task, run_task
from agent.events import Hooks, StepRecorded
from sites.shop import ShopServer
from tools.ocr import RapidOcrEngine, RecognizedLines, get_engine, register_engine
from tracer.ocr_files import read_ocr_index

ALL_CORES_ENGINE = "rapidocr-allcores"
register_engine(ALL_CORES_ENGINE, lambda: RapidOcrEngine(threads=None))


class NoMemory(RecognizedLines):
    """Recognizes every line, as the last release did."""

    def wrap(self, recognize: Callable[[list[Any]], Any]) -> Callable[[list[Any]], Any]:
        return recognize


PAD320_ENGINE = "rapidocr-pad320"  # the default as it was before lines were padded to 192 px only
register_engine(PAD320_ENGINE, lambda: RapidOcrEngine(threads=1, rec_min_width=320))

BEFORE_ENGINE = "rapidocr-before"  # the last release: onnxruntime, every line recognized
register_engine(BEFORE_ENGINE, lambda: RapidOcrEngine(threads=1, backend="onnxruntime", recognized=NoMemory()))

# condition -> (OCR on, incremental reads, engine)
CONDITIONS: dict[str, tuple[bool, bool, str]] = {
    "off": (False, True, "rapidocr"),
    "off-again": (False, True, "rapidocr"),  # off once more: how far two runs of the same setting differ (the noise)
    "before": (True, True, BEFORE_ENGINE),
    "incremental": (True, True, "rapidocr"),
    "full": (True, False, "rapidocr"),
    "pad320": (True, True, PAD320_ENGINE),
    "all-cores": (True, True, ALL_CORES_ENGINE),
}
DEFAULT_CONDITIONS = "off,before,incremental"

ROOT = Path(__file__).resolve().parent.parent


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def read_times(png: bytes, warm: int) -> dict[str, float]:
    started = time.perf_counter()
    import rapidocr  # noqa: F401

    figures = {"import_s": time.perf_counter() - started}
    from tools.ocr import RapidOcrEngine

    settings: list[tuple[str, dict[str, Any]]] = []
    for backend in ("openvino", "onnxruntime"):
        if importlib.util.find_spec(backend) is not None:
            settings += [
                (f"{backend}, 1 thread", {"threads": 1, "backend": backend}),
                (f"{backend}, all cores", {"threads": None, "backend": backend}),
            ]
    for label, kwargs in settings:
        started = time.perf_counter()
        engine = RapidOcrEngine(**kwargs)
        first = engine.read(png)
        figures[f"first read ({label}), s"] = time.perf_counter() - started
        times = []
        for _ in range(warm):
            engine.forget()  # a screen not seen before: every line recognized
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
            engine.forget()
            engine.read(png)

    thread = threading.Thread(target=reader)
    thread.start()
    beside = spin(time.perf_counter() + seconds)
    stop.set()
    thread.join()
    return beside / alone


def incremental_times(shots: list[bytes]) -> dict[str, list[float]]:
    """Seconds per read of the run's screenshots in order: each mode of the incremental reader, and a full read of
    every screenshot (the same engine, 1 thread, warm)."""
    from tools.ocr_incremental import IncrementalReader

    engine, full_engine = RapidOcrEngine(threads=1), RapidOcrEngine(threads=1)
    engine.read(shots[0])
    full_engine.read(shots[0])
    engine.forget()
    times: dict[str, list[float]] = {"full": [], "partial": [], "reused": [], "every screenshot in full": []}
    reader = IncrementalReader(engine)
    for png in shots:
        _, info = reader.read(png)
        times[info.mode].append(info.ms / 1000)
        full_engine.forget()
        started = time.perf_counter()
        full_engine.read(png)
        times["every screenshot in full"].append(time.perf_counter() - started)
    for _ in range(3):  # a step that changed nothing (a wait, a failed click): the same screenshot again
        _, info = reader.read(shots[-1])
        times[info.mode].append(info.ms / 1000)
    return times


class RunFigures:
    def __init__(self) -> None:
        self.steps: list[float] = []
        self.walls: list[float] = []
        self.caught: list[float] = []
        self.not_done = 0
        self.reads: dict[str, int] = {}


def one_run(runs_dir: Path, shop_url: str, condition: str, catch_up_s: float, into: RunFigures) -> None:
    task = load_task(ROOT / "tasks" / "publish_product.yaml")
    enabled, incremental, engine = CONDITIONS[condition]
    task.ocr.enabled = enabled
    task.ocr.incremental = incremental
    task.ocr.engine = engine
    task.ocr.catch_up_s = catch_up_s
    if enabled:
        forget = getattr(get_engine(engine), "forget", None)
        if forget is not None:
            forget()  # each run starts with no line already read, as a `glassbox run` process does
    marks: list[float] = []
    hooks = Hooks()
    hooks.on(StepRecorded, lambda event: marks.append(time.perf_counter()))
    started = time.perf_counter()
    result = run_task(task, runs_dir=runs_dir, site_url=shop_url, hooks=hooks)
    into.walls.append(time.perf_counter() - started)
    into.steps.extend(b - a for a, b in zip([started, *marks], marks, strict=False))
    index = read_ocr_index(result.run_dir)
    if index is None:
        return
    if index.caught_up_after_end_s is not None:
        into.caught.append(index.caught_up_after_end_s)
    into.not_done += index.not_done
    for mode, count in index.reads.items():
        into.reads[mode] = into.reads.get(mode, 0) + count
    print(
        f"  {condition} run: {len(marks)} steps, OCR caught up {index.caught_up_after_end_s} s after the end, "
        f"{index.not_done} not done, reads {index.reads}, what was queued at the end read on {index.catch_up_on or '-'}",
        flush=True,
    )


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per condition (alternating)")
    parser.add_argument("--warm", type=int, default=5, help="warm reads per engine setting")
    parser.add_argument("--catch-up", type=float, default=120.0, help="how long a run with OCR waits for it at the end")
    parser.add_argument("--conditions", default=DEFAULT_CONDITIONS, help=f"of {', '.join(CONDITIONS)}")
    parser.add_argument("--skip-reads", action="store_true", help="only the runs (skip parts 1-3)")
    args = parser.parse_args()
    conditions = [c for c in args.conditions.split(",") if c]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown or "off" not in conditions:
        parser.error(f"--conditions: unknown {unknown}" if unknown else "--conditions must include off (the baseline)")

    print(f"load average at the start: {loadavg()}")
    with tempfile.TemporaryDirectory() as tmp, ShopServer() as shop:
        runs = Path(tmp) / "runs"
        warmup = RunFigures()
        one_run(runs, shop.base_url, "off", 0, warmup)  # screenshots to read, and Chromium warmed up
        paths = sorted(runs.glob("*/steps/*/screenshot.png"))
        shots = [p.read_bytes() for p in paths]
        shot = shots[min(19, len(shots) - 1)]

        if not args.skip_reads:
            figures = read_times(shot, args.warm)
            print("OCR of one 1280x800 shop screenshot (rapidocr, bundled PP-OCR models)")
            for key, value in figures.items():
                print(f"  {key:<28} {value:.3f}" if isinstance(value, float) else f"  {key:<28} {value}")
            for backend in ("openvino", "onnxruntime"):
                one = figures.get(f"warm read ({backend}, 1 thread), s")
                if one:
                    all_cores = figures[f"warm read ({backend}, all cores), s"]
                    print(f"  {backend}: all cores / 1 thread (warm) {all_cores / one:.2f}")
            if "warm read (openvino, 1 thread), s" in figures and "warm read (onnxruntime, 1 thread), s" in figures:
                ratio = figures["warm read (openvino, 1 thread), s"] / figures["warm read (onnxruntime, 1 thread), s"]
                print(f"  openvino / onnxruntime, 1 thread (warm): {ratio:.2f}")

            times = incremental_times(shots)
            print(f"Incremental reads of the run's {len(shots)} screenshots in order, the last 3 times more (1 thread, warm)")
            for mode, values in times.items():
                if values:
                    print(f"  {mode:<26} {len(values):>3} reads, median {median(values):.3f} s, total {sum(values):.2f} s")
            total_full = sum(times["every screenshot in full"])
            total_inc = sum(sum(times[m]) for m in ("full", "partial", "reused")) - sum(times["reused"][-3:])
            print(f"  incremental / every screenshot in full (total): {total_inc / total_full:.2f}")
            if times["partial"]:
                print(f"  partial / full (median): {median(times['partial']) / median(times['every screenshot in full']):.2f}")

            ratio = gil_ratio(shot)
            print(f"GIL: Python loop speed beside an OCR thread / alone: {ratio:.2f} (1.0: OCR holds no GIL; 2 cores)")

        figures_by: dict[str, RunFigures] = {c: RunFigures() for c in conditions}
        for _ in range(args.runs):
            for condition in conditions:
                one_run(runs, shop.base_url, condition, args.catch_up, figures_by[condition])
        off = figures_by["off"]
        print("Loop step time, bundled publish task, script policy (same process, alternating runs)")
        for condition in conditions:
            f = figures_by[condition]
            line = f"  {condition:<12} median {median(f.steps) * 1000:.0f} ms/step over {len(f.steps)} steps"
            if condition == "off-again":
                line += f", {median(f.steps) / median(off.steps):.2f}x off (the same setting: the run-to-run noise)"
            elif condition != "off":
                line += f", {median(f.steps) / median(off.steps):.2f}x off"
                line += f"; run wall (incl. the OCR wait) {median(f.walls) / median(off.walls):.2f}x off"
                caught = f"{median(f.caught):.1f} s" if f.caught else "never"
                line += f"; OCR done {caught} after the end (median of {len(f.caught)}), {f.not_done} not done"
                line += f"; reads {f.reads}"
            print(line)
        print("OCR done after the run's end, against the same run's baselines (medians)")
        for baseline in ("full", "before", "pad320"):
            base = figures_by.get(baseline)
            now = figures_by.get("incremental")
            if base is not None and now is not None and base.caught and now.caught:
                b, a = median(base.caught), median(now.caught)
                print(f"  {baseline} {b:.1f} s -> incremental (the default) {a:.1f} s ({a / b:.2f}x)")
        if "incremental" in figures_by:
            now = figures_by["incremental"]
            print(
                f"  the default: step time {median(now.steps) / median(off.steps):.2f}x off; "
                f"OCR done {median(now.caught):.1f} s after the end"
                if now.caught
                else "  the default never caught up"
            )
    print(f"load average at the end: {loadavg()}")


if __name__ == "__main__":
    main()
