"""Viewer speed with 1,000 recorded runs: runs page response time and live step latency.

Seeds a runs directory with 1,000 runs (one real script-policy run of the publish task, then copies of
its folder under new run ids, indexed like any run), serves the viewer on 127.0.0.1, and measures:
- GET / (the runs page) p50 / p95 over repeated requests, GET /?q=... (a search), GET /?order=least_confident
  (each run's lowest step confidence, from the index) and GET /api/runs/rows (what the page polls to refresh live);
- the latency from a step being recorded (appended by a RunWriter) to it appearing in an open run page
  in headless Chromium, p50 / p95.
- GET /evals/ID (an eval of 500 episodes, 10 tasks x 50 seeds, written as records over the seeded runs) and
  GET /evals/compare of it with a copy where every 10th episode flipped (each flip's runs compared step by step).
Targets: runs page under 200 ms, live latency under 500 ms. Saves screenshots of the pages in bench/out/.

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
from evals.results import build_summary, write_summary
from replays.viewer import ViewerServer
from tools.browser import BrowserExecutor, BrowserSettings
from tracer import RunStatus, RunWriter, StepRecord, read_run, read_steps
from tracer.evals import EPISODES_FILE, Episode, EpisodeResult, EvalPlan, eval_dir
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
    template_lines = (result.run_dir / "steps.jsonl").read_text().splitlines()
    for i in range(count - 1):
        run_id = f"20250101-{i:06d}-publish-product-seed"
        shutil.copytree(result.run_dir, runs_dir / run_id)
        # Model-like confidences (the script policy records none), so the least-confident order has work to do.
        steps = [
            s.model_copy(update={"confidence": round(0.25 + ((i * 7 + j * 13) % 75) / 100, 2)})
            for j, s in enumerate(StepRecord.model_validate_json(line) for line in template_lines)
        ]
        (runs_dir / run_id / "steps.jsonl").write_text("".join(s.model_dump_json() + "\n" for s in steps))
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
        for step in steps:
            index.add_step(run_id, step)
    index.close()
    return result.run_id


def seed_eval(runs_dir: Path, eval_id: str, run_ids: list[str], *, flip_every: int = 0) -> None:
    """An eval folder of ``len(run_ids)`` episodes (10 tasks x N seeds) over existing runs, indexed like a real one."""
    folder = eval_dir(runs_dir, eval_id)
    folder.mkdir(parents=True)
    now = datetime.now(timezone.utc)
    episodes, results = [], []
    for i, run_id in enumerate(run_ids):
        task, seed = f"task-{i % 10}", i // 10
        episode = Episode(
            id=f"{task}.s{seed}.r0", task_file=Path(f"/suite/{task}.yaml"), task_name=task, seed=seed, layout_seed=seed, repeat=0
        )
        episodes.append(episode)
        status = "succeeded" if i % 7 else "failed"
        if flip_every and i % flip_every == 0:
            status = "failed" if status == "succeeded" else "succeeded"
        results.append(
            EpisodeResult(
                episode_id=episode.id,
                task_name=task,
                task_file=str(episode.task_file),
                seed=seed,
                repeat=0,
                status=status,
                run_id=run_id,
                end_reason="bench",
                steps=21,
                seconds=12.5,
                parse_errors=0,
                harness_attempts=1,
                finished_at=now,
            )
        )
    plan = EvalPlan(
        eval_id=eval_id,
        suite_name="bench",
        suite_source="/suite",
        digest="bench",
        created_at=now,
        policy={},
        limits={},
        episodes=episodes,
    )
    (folder / "plan.json").write_text(plan.model_dump_json())
    (folder / EPISODES_FILE).write_text("".join(r.model_dump_json() + "\n" for r in results))
    summary = build_summary(runs_dir, results, len(results))
    write_summary(folder, eval_id, summary)
    index = RunIndex(runs_dir)
    index.upsert_eval(eval_id, "bench", summary.model_dump(mode="json"))
    index.close()


def timed(client: httpx.Client, url: str, requests: int) -> list[float]:
    client.get(url)
    times = []
    for _ in range(requests):
        t = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--live-steps", type=int, default=20)
    parser.add_argument("--eval-episodes", type=int, default=500)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp)
        t0 = time.perf_counter()
        real_run = seed(runs_dir, args.runs)
        print(f"viewer: seeded {args.runs} runs in {time.perf_counter() - t0:.1f} s")
        copies = sorted(p.name for p in runs_dir.glob("20250101-*-publish-product-seed"))
        episodes = min(args.eval_episodes, len(copies))
        seed_eval(runs_dir, "bench-eval", copies[:episodes])
        seed_eval(runs_dir, "bench-eval-b", copies[:episodes], flip_every=10)
        with ViewerServer(runs_dir) as viewer, httpx.Client(base_url=viewer.url) as client:
            for label, url in (
                ("runs page  GET /", "/"),
                ("search     GET /?q=", "/?q=seed&status=failed"),
                ("least confident first", "/?order=least_confident"),
                ("live rows  /api/runs/rows", "/api/runs/rows?order=least_confident"),
            ):
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
            for label, url in (
                (f"eval page  ({episodes} episodes)", "/evals/bench-eval"),
                (f"compare    ({episodes // 10} flipped)", "/evals/compare?a=bench-eval&b=bench-eval-b"),
                ("evals list GET /evals", "/evals"),
            ):
                times = timed(client, url, max(5, args.requests // 6))
                print(f"  {label:<22} p50 {pct(times, 0.5):6.1f} ms   p95 {pct(times, 0.95):6.1f} ms")
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
                page.goto(f"{viewer.url}/evals/bench-eval")
                page.screenshot(path=str(OUT / "viewer_eval_page.png"))
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
        print(f"  screenshots: {OUT / 'viewer_runs_page.png'}, {OUT / 'viewer_run_page.png'}, {OUT / 'viewer_eval_page.png'}")


if __name__ == "__main__":
    main()
