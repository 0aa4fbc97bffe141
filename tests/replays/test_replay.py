"""Replay, resume, Playwright export and diff, in real Chromium against the real shop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from agent import load_task, run_task
from replays.diff import diff_runs
from replays.labels import Correction, LabelIn, Labels
from replays.replay import ReplayError, replay
from sites.shop import ShopServer
from tests.conftest import TASKS, copy_bundled_run, glassbox_in_process
from tools.browser import BrowserExecutor, BrowserSettings, Target
from tools.coords import from_css
from tracer import RunStatus, read_run, read_steps
from tracer.graph import attach_branch, run_graph

pytestmark = pytest.mark.usefixtures("chromium")


@pytest.fixture(scope="module")
def original(tmp_path_factory, bundled_run):
    runs = tmp_path_factory.mktemp("runs")
    result = copy_bundled_run(bundled_run, runs)
    assert result.status is RunStatus.succeeded
    return runs, result


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return glassbox_in_process(*args, env={"COLUMNS": "200"})


def test_replay_without_model_calls_passes_the_checks(original):
    runs, source = original
    result = replay(runs, source.run_id)
    assert result.status is RunStatus.succeeded, result.end_reason
    run = read_run(result.run_dir)
    assert run.parent_run == source.run_id and run.summary.model_calls == 0
    steps = read_steps(result.run_dir)
    assert len(steps) == source.steps
    assert all(s.policy == "replay" and s.replay.decision == "replayed" and s.replay.screen_diff == 0 for s in steps)
    graph = attach_branch(run_graph(read_run(source.run_dir), read_steps(source.run_dir)), run, steps, 0)
    assert graph.has_edge("obs:0", f"{run.run_id}/obs:0")


def test_another_layout_stops_at_the_step_whose_target_moved(original):
    runs, source = original
    proc = cli("replay", source.run_id, "--runs-dir", str(runs), "--layout-seed", "3")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "first divergence at recorded step 5" in proc.stdout and "model calls: 0" in proc.stdout
    run_dir = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)[-1]
    run = read_run(run_dir)
    assert run.status is RunStatus.failed and run.end_reason.startswith("diverged at recorded step 5: the target changed")
    last = read_steps(run_dir)[-1]
    assert last.error_kind == "diverged" and last.action is None
    assert (run_dir / last.replay.side_by_side).is_file()


def test_fallback_to_the_script_completes_on_another_layout(original):
    runs, source = original
    result = replay(runs, source.run_id, layout_seed=3, fallback="policy", policy="script")
    assert result.status is RunStatus.succeeded, result.end_reason
    decisions = [s.replay.decision for s in read_steps(result.run_dir)]
    assert decisions[:5] == ["replayed"] * 5 and decisions[5] == "fallback" and "replayed" in decisions[6:]


def test_a_labelled_wrong_step_resumes_with_the_correction(tmp_path):
    data = yaml.safe_load((TASKS / "publish_product.yaml").read_text())
    # A task uploads only files under its own folder: bring the fixture along.
    data["files"]["desk_lamp"]["path"] = shutil.copy(TASKS / "fixtures" / "desk_lamp.png", tmp_path)
    wrong = next(i for i, s in enumerate(data["script"]) if s.get("note") == "Publish the product")
    data["script"][wrong] = {"action": "left_click", "target": {"role": "button", "name": "Save draft"}}
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(data))
    runs = tmp_path / "runs"
    failed = run_task(load_task(path), runs_dir=runs)
    assert failed.status is RunStatus.failed  # saved as a draft: the check wants it published
    # Where Publish is on this layout (what a person would click in the viewer).
    with ShopServer() as shop, BrowserExecutor(BrowserSettings()) as browser:
        browser.goto(shop.base_url + "/login")
        browser.page.fill("#username", "admin")
        browser.page.fill("#password", "Xq7-tulip-4821")
        browser.page.click("button[type=submit]")
        browser.goto(shop.base_url + "/products/new")
        box = browser.locate(Target(role="button", name="Publish"))
    point = from_css(box.center, css_size=(1280, 800))
    Labels(runs).add(
        failed.run_id,
        wrong,
        LabelIn(
            verdict="wrong", note="Publish, not Save draft", correction=Correction(action="left_click", coordinate=tuple(point))
        ),
    )
    proc = cli("resume", failed.run_id, "--from-step", str(wrong), "--runs-dir", str(runs))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "corrected 1" in proc.stdout
    assert f"the correction labelled on recorded step {wrong} was played there" in " ".join(proc.stdout.split())
    run_dir = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)[-1]
    steps = read_steps(run_dir)
    fixed = next(s for s in steps if s.replay and s.replay.decision == "corrected")
    assert fixed.policy == "correction" and fixed.replay.source_step == wrong
    assert steps[-1].policy == "script" and steps[-1].action.action == "terminate"
    assert read_run(run_dir).parent_step == wrong


def test_exported_playwright_script_passes_the_check_without_secrets(original, tmp_path):
    runs, source = original
    out = tmp_path / "publish.py"
    proc = cli("export", "playwright", source.run_id, "--runs-dir", str(runs), "--out", str(out))
    assert proc.returncode == 0 and "GLASSBOX_SECRET_PASSWORD" in proc.stdout
    script = out.read_text()
    assert "Xq7-tulip-4821" not in script
    with ShopServer() as shop:
        run = subprocess.run(
            [sys.executable, str(out), "--base-url", shop.base_url],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "GLASSBOX_SECRET_PASSWORD": "Xq7-tulip-4821"},
        )
        assert run.returncode == 0, run.stderr
        [item] = httpx.get(shop.base_url + "/api/products", params={"name": "Aurora LED desk lamp"}).json()["items"]
        assert (item["price"], item["stock"], item["status"]) == (39.9, 25, "published")
    missing = subprocess.run(
        [sys.executable, str(out), "--base-url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "GLASSBOX_SECRET_PASSWORD"},
    )
    assert missing.returncode != 0


def test_diff_finds_the_first_difference(original, tmp_path):
    runs, source = original
    same = run_task(load_task(TASKS / "publish_product.yaml"), runs_dir=runs)
    assert diff_runs(source.run_dir, same.run_dir).step is None
    assert diff_runs(source.run_dir, same.run_dir).outcomes is None
    # The same steps, another outcome (a flaky site, a check that reads the server): said, and diff exits 1.
    flipped = runs / (same.run_id + "-flipped")
    shutil.copytree(same.run_dir, flipped)
    record = json.loads((flipped / "run.json").read_text())
    record["run_id"], record["status"] = flipped.name, "failed"
    record["checks"][0]["passed"] = False
    (flipped / "run.json").write_text(json.dumps(record))
    outcome = diff_runs(source.run_dir, flipped)
    assert outcome.step is None and outcome.outcomes == "A succeeded (checks 2/2 passed), B failed (checks 1/2 passed)"
    proc = cli("diff", source.run_id, flipped.name, "--runs-dir", str(runs))
    assert proc.returncode == 1 and "but the outcomes differ: A succeeded" in " ".join(proc.stdout.split()), proc.stdout
    from replays.viewer import ViewerServer

    with ViewerServer(runs) as viewer:
        page = httpx.get(f"{viewer.url}/diff", params={"a": source.run_id, "b": flipped.name}, timeout=60).text
    assert 'class="diff-verdict differs"' in page and "but the outcomes differ" in page
    other = run_task(load_task(TASKS / "publish_product.yaml"), runs_dir=runs, layout_seed=3)
    result = diff_runs(source.run_dir, other.run_dir)
    assert result.step == 5 and "point differs" in result.reason
    proc = cli("diff", source.run_id, other.run_id, "--runs-dir", str(runs))
    assert proc.returncode == 1 and "first difference at step 5" in proc.stdout


def test_replay_errors_are_usage_errors(original, tmp_path):
    runs, source = original
    assert cli("resume", source.run_id, "--from-step", "999", "--runs-dir", str(runs)).returncode == 2
    assert cli("replay", "no-such-run", "--runs-dir", str(runs)).returncode == 2
    for command in (["replay"], ["resume", "--from-step", "2"]):
        bad = cli(*command, source.run_id, "--site-url", "notaurl", "--runs-dir", str(runs))
        assert bad.returncode == 2 and "--site-url must be an http:// or https:// URL" in bad.stderr, bad.stderr
    record = json.loads((source.run_dir / "run.json").read_text())
    copy = runs / "copy-without-task"
    copy.mkdir()
    (copy / "run.json").write_text(json.dumps({**record, "run_id": "copy-without-task", "task_file": "/nope.yaml"}))
    (copy / "steps.jsonl").write_text((source.run_dir / "steps.jsonl").read_text())
    with pytest.raises(ReplayError, match="a replay needs the task file"):
        replay(runs, "copy-without-task")


def test_a_replay_that_cannot_start_says_why_in_the_viewer(original):
    from replays.viewer import ViewerServer

    runs, source = original
    record = json.loads((source.run_dir / "run.json").read_text())
    copy = runs / "moved-task"
    copy.mkdir(exist_ok=True)
    (copy / "run.json").write_text(json.dumps({**record, "run_id": "moved-task", "task_file": "/moved/away.yaml"}))
    (copy / "steps.jsonl").write_text((source.run_dir / "steps.jsonl").read_text())
    with ViewerServer(runs) as viewer, httpx.Client(base_url=viewer.url, timeout=30) as client:
        own = {"Origin": viewer.url, "X-Glassbox-Token": viewer.token}  # what the viewer's own pages send
        started = client.post("/api/runs/moved-task/replay", json={"fallback": "none"}, headers=own)
        assert started.status_code == 202
        wait = started.json()["url"]
        for _ in range(600):
            page = client.get(wait, follow_redirects=False)
            if page.status_code != 200:
                break
            assert "Starting" in page.text
            time.sleep(0.1)
        assert page.status_code == 422, page.text
        assert "could not start" in page.text and "exited with code 2" in page.text
        assert "a replay needs the task file" in page.text and "/moved/away.yaml" in page.text
        assert client.get("/runs/never-started/wait").status_code == 404


def _children(runs, run_id: str) -> set[str]:
    """The runs recorded as replays or branches of ``run_id``."""
    return {d.name for d in runs.iterdir() if (d / "run.json").is_file() and read_run(d).parent_run == run_id}


def test_replay_from_the_viewer(original):
    from replays.viewer import ViewerServer

    runs, source = original
    with ViewerServer(runs) as viewer, BrowserExecutor(BrowserSettings()) as browser:
        page = browser.page
        page.goto(f"{viewer.url}/runs/{source.run_id}")
        before = _children(runs, source.run_id)
        page.dblclick("#replay-btn")  # an impatient double click starts one replay, not two
        # The new run's page: the original's URL matches "**/runs/*" too, and its status is already final.
        page.wait_for_url(lambda url: "/runs/" in url and source.run_id not in url, timeout=60_000)
        page.wait_for_function(
            "document.getElementById('run-status') && document.getElementById('run-status').textContent === 'succeeded'",
            timeout=120_000,
        )
        assert "branch of" in page.inner_text(".run-head") and page.locator(".film").count() == source.steps
        assert len(_children(runs, source.run_id) - before) == 1
        # The page's 5 s default is for the agent's actions; under a loaded CPU the diff page took longer.
        page.goto(f"{viewer.url}/diff?a={source.run_id}&b={page.url.rsplit('/', 1)[-1].split('#')[0]}", timeout=60_000)
        diff = page.inner_text("main")
        assert "No difference" in diff, diff
