"""Recorder cost per step at 1280x800: record time (p50/p95) in the loop and bytes written per step.

Runs the bundled publish task (script policy) several times and reads the figures back from the
runs: ``timings.record_ms`` of every step (the time the loop blocks on recording: screenshot file,
step line, run.json, index rows), the evidence crops made on the background thread (timed here
directly on the same screenshots), and the bytes of each run folder and of the index.
Targets: under 15 ms and under 250 KB per step.

    .venv/bin/python bench/recorder.py [--runs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from agent import load_task, run_task
from tracer import read_steps
from tracer.evidence import render_crop

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    task = load_task(ROOT / "tasks" / "publish_product.yaml")
    record_ms: list[float] = []
    crop_ms: list[float] = []
    folder_bytes = index_bytes = steps = 0
    per_kind: dict[str, int] = {"screenshot": 0, "evidence": 0, "steps.jsonl": 0, "run.json + log": 0}
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp)
        for _ in range(args.runs):
            result = run_task(task, runs_dir=runs_dir)
            run_steps = read_steps(result.run_dir)
            steps += len(run_steps)
            record_ms += [s.timings.record_ms for s in run_steps]
            for s in run_steps:
                if s.evidence:
                    png = (result.run_dir / s.screenshot).read_bytes()
                    t0 = time.perf_counter()
                    render_crop(png, s.evidence.box, s.evidence.point)
                    crop_ms.append((time.perf_counter() - t0) * 1000)
            for path in result.run_dir.rglob("*"):
                if path.is_file():
                    size = path.stat().st_size
                    folder_bytes += size
                    kind = (
                        "screenshot"
                        if path.suffix == ".png"
                        else "evidence"
                        if path.suffix == ".webp"
                        else "steps.jsonl"
                        if path.name == "steps.jsonl"
                        else "run.json + log"
                    )
                    per_kind[kind] += size
        index_bytes = sum(p.stat().st_size for p in runs_dir.glob("index.sqlite3*"))
    total = (folder_bytes + index_bytes) / steps
    print(f"recorder: {steps} steps over {args.runs} runs of the publish task, 1280x800 screenshots")
    print(
        f"  record time in the loop   p50 {pct(record_ms, 0.5):6.2f} ms   p95 {pct(record_ms, 0.95):6.2f} ms"
        f"   (target < 15 ms: {'met' if pct(record_ms, 0.95) < 15 else 'NOT met'})"
    )
    print(
        f"  evidence crop (background thread, per acting step)  p50 {pct(crop_ms, 0.5):6.1f} ms"
        f"   p95 {pct(crop_ms, 0.95):6.1f} ms"
    )
    print(f"  bytes per step            {total / 1024:6.1f} KB   (target < 250 KB: {'met' if total < 250 * 1024 else 'NOT met'})")
    for kind, size in per_kind.items():
        print(f"    {kind:<16} {size / steps / 1024:6.1f} KB")
    print(f"    {'index.sqlite3':<16} {index_bytes / steps / 1024:6.1f} KB")


if __name__ == "__main__":
    main()
