"""Viewer speed with 1,000 recorded runs: runs page response time and live step latency.

Seeds a runs directory with 1,000 runs (one real script-policy run of the publish task, then copies of
its folder under new run ids, indexed like any run), serves the viewer on 127.0.0.1, and measures:
- GET / (the runs page) p50 / p95 over repeated requests, and GET /?q=... (a search);
- the latency from a step being recorded (appended by a RunWriter) to it appearing in an open run page
  in headless Chromium, p50 / p95.
Targets: runs page under 200 ms, live latency under 500 ms. Saves screenshots of both pages in bench/out/.

    .venv/bin/python bench/viewer.py [--runs 1000]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from agent import load_task, run_task
from replays.viewer import ViewerServer
from tools.browser import BrowserExecutor, BrowserSettings
from tracer import RunStatus, RunWriter, read_run, read_steps
from tracer.index import RunIndex

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def seed(runs_dir: Path, count: int) -> str:
    result = run_task(load_task(ROOT / "tasks" / "publish_product.yaml"), runs_dir=runs_dir)
    template = read_run(result.run_dir)
    index = RunIndex(runs_dir)
    statuses = [RunStatus.succeeded, RunStatus.failed, RunStatus.succeeded, RunStatus.interrupted]
    for i in range(count - 1):
        run_id = f"20250101-{i:06d}-publish-product-seed"
        shutil.copytree(result.run_dir, runs_dir / run_id)
        record = template.model_copy(
            update={
                "run_id": run_id,
                "status": statuses[i % 4],
                "started_at": template.started_at - timedelta(minutes=i + 1),
                "task_name": ["publish-product", "publish-product-zh", "checkout"][i % 3],
            }
        )
        (runs_dir / run_id / "run.json").write_text(record.model_dump_json(indent=2))
        index.upsert_run(record)
        for step in read_steps(runs_dir / run_id):
            index.add_step(run_id, step)
    index.close()
    return result.run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--live-steps", type=int, default=20)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp)
        t0 = time.perf_counter()
        real_run = seed(runs_dir, args.runs)
        print(f"viewer: seeded {args.runs} runs in {time.perf_counter() - t0:.1f} s")
        with ViewerServer(runs_dir) as viewer, httpx.Client(base_url=viewer.url) as client:
            for label, url in (("runs page  GET /", "/"), ("search     GET /?q=", "/?q=seed&status=failed")):
                client.get(url)
                times = []
                for _ in range(args.requests):
                    t = time.perf_counter()
                    response = client.get(url)
                    times.append((time.perf_counter() - t) * 1000)
                    assert response.status_code == 200
                print(
                    f"  {label:<22} p50 {pct(times, 0.5):6.1f} ms   p95 {pct(times, 0.95):6.1f} ms"
                    f"   (target < 200 ms: {'met' if pct(times, 0.95) < 200 else 'NOT met'})"
                )
            times = []
            t = time.perf_counter()
            client.get(f"/runs/{real_run}")
            page_ms = (time.perf_counter() - t) * 1000

            # A live run: a writer in this process appends steps while a browser has the page open.
            template_steps = read_steps(runs_dir / real_run)
            record = read_run(runs_dir / real_run).model_copy(
                update={"run_id": "live-run", "status": RunStatus.running, "started_at": datetime.now(timezone.utc)}
            )
            writer = RunWriter.create(runs_dir, record)
            with BrowserExecutor(BrowserSettings(viewport=(1440, 900))) as browser:
                page = browser.page
                page.goto(f"{viewer.url}/")
                page.screenshot(path=str(OUT / "viewer_runs_page.png"))
                page.goto(f"{viewer.url}/runs/live-run")
                latencies = []
                for i in range(args.live_steps):
                    step = template_steps[i % len(template_steps)].model_copy(update={"index": i})
                    shutil.copyfile(runs_dir / real_run / step.screenshot, writer.step_dir(i) / "screenshot.png")
                    step.screenshot = f"steps/{i:04d}/screenshot.png"
                    t = time.perf_counter()
                    writer.write_step(step)
                    page.wait_for_function(f"document.querySelectorAll('.film').length >= {i + 1}", polling=5)
                    latencies.append((time.perf_counter() - t) * 1000)
                writer.finish(status=RunStatus.succeeded, end_reason="bench")
                page.wait_for_function("document.getElementById('run-status').textContent === 'succeeded'")
                page.goto(f"{viewer.url}/runs/{real_run}#step-13")
                page.wait_for_timeout(300)
                page.screenshot(path=str(OUT / "viewer_run_page.png"), full_page=True)
        print(f"  run page   GET /runs/ID  {page_ms:6.1f} ms (one request, 21 steps)")
        print(
            f"  live step latency      p50 {pct(latencies, 0.5):6.1f} ms   p95 {pct(latencies, 0.95):6.1f} ms"
            f"   (target < 500 ms: {'met' if pct(latencies, 0.95) < 500 else 'NOT met'})"
        )
        print(f"  screenshots: {OUT / 'viewer_runs_page.png'}, {OUT / 'viewer_run_page.png'}")


if __name__ == "__main__":
    main()
