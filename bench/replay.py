"""Replay wall time against the original run's, same machine, same process, nothing changed.

Records the publish task with the script policy, replays it (screen checks before every step, zero model
calls), and repeats in alternation. Reported: wall time of each call (browser and site start included) and
the recorded run duration (the loop only). Target: replay at most 1.2x the original's harness time.

    .venv/bin/python bench/replay.py [--pairs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agent import load_task, run_task
from replays.replay import replay
from tracer import read_run

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    task = load_task(ROOT / "tasks" / "publish_product.yaml")
    walls: dict[str, list[float]] = {"original": [], "replay": []}
    loops: dict[str, list[float]] = {"original": [], "replay": []}
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        for _ in range(args.pairs):
            t0 = time.perf_counter()
            original = run_task(task, runs_dir=runs)
            walls["original"].append(time.perf_counter() - t0)
            loops["original"].append(read_run(original.run_dir).duration_s or 0)
            t0 = time.perf_counter()
            again = replay(runs, original.run_id)
            walls["replay"].append(time.perf_counter() - t0)
            loops["replay"].append(read_run(again.run_dir).duration_s or 0)
            assert again.status.value == "succeeded", again.end_reason
            assert read_run(again.run_dir).summary.model_calls == 0
    med = statistics.median
    print(f"replay: publish task ({original.steps} steps), script policy vs replay, {args.pairs} alternating pairs")
    for name in walls:
        print(
            f"  {name:<9} wall {med(walls[name]):6.2f} s (min {min(walls[name]):.2f}, max {max(walls[name]):.2f})"
            f"   loop {med(loops[name]):6.2f} s"
        )
    ratio = med(loops["replay"]) / med(loops["original"])
    print(f"  replay / original (loop, median): {ratio:.2f}x   (target <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'})")
    print(f"  replay / original (wall, median): {med(walls['replay']) / med(walls['original']):.2f}x")


if __name__ == "__main__":
    main()
