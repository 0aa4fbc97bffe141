"""End to end: task YAML -> real headless Chromium -> real shop on 127.0.0.1 -> run folder -> success checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image

from agent import load_task, run_task
from sites.shop import ShopServer
from tests.conftest import ROOT, TASKS, copy_bundled_run
from tracer import RunStatus, read_run, read_steps

pytestmark = pytest.mark.usefixtures("chromium")


def variant(tmp_path: Path, name: str, edit) -> Path:
    """A copy of a bundled task with ``edit(data)`` applied; file paths made absolute."""
    data = yaml.safe_load((TASKS / name).read_text(encoding="utf-8"))
    for spec in data.get("files", {}).values():
        spec["path"] = shutil.copy(TASKS / spec["path"], tmp_path)  # uploads stay in the task's folder
    edit(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_publish_task_end_to_end_against_a_running_shop(tmp_path):
    task = load_task(TASKS / "publish_product.yaml")
    with ShopServer() as shop:
        result = run_task(task, runs_dir=tmp_path / "runs", site_url=shop.base_url)
        items = httpx.get(shop.base_url + "/api/products", params={"name": "Aurora LED desk lamp"}).json()["items"]
    assert result.status is RunStatus.succeeded, result.end_reason
    [item] = items
    assert (item["price"], item["stock"], item["status"]) == (39.9, 25, "published")
    assert item["image"]

    run = read_run(result.run_dir)
    assert run.status is RunStatus.succeeded and run.agent_verdict == "success"
    assert run.steps == len(task.script) and all(c.passed for c in run.checks)
    steps = read_steps(result.run_dir)
    assert [s.index for s in steps] == list(range(len(task.script)))
    for step in steps:
        shot = result.run_dir / step.screenshot
        assert shot.is_file()
        with Image.open(shot) as image:
            assert image.format == "PNG" and image.size == (1280, 800)
        assert step.outcome == "ok" and step.error is None
        assert step.action is not None and step.reasoning
        assert step.confidence is None and "script policy" in step.confidence_reason
    clicks = [s for s in steps if s.action.action == "left_click"]
    assert all(s.coordinate is not None and s.element is not None for s in clicks)
    publish = next(s for s in steps if "Publish the product" in (s.reasoning or ""))
    assert publish.element.tag == "button" and publish.element.text == "Publish"


def test_chinese_task_with_another_layout_seed_from_the_cli(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            str(TASKS / "publish_product_zh.yaml"),
            "--runs-dir",
            str(runs),
            "--layout-seed",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "succeeded" in proc.stdout
    [run_dir] = [p for p in runs.iterdir() if p.is_dir()]
    run = read_run(run_dir)
    assert run.status is RunStatus.succeeded and run.layout_seed == 5
    typed = [s.action.text for s in read_steps(run_dir) if s.action.action == "type"]
    assert "无线蓝牙耳机" in typed


@pytest.mark.parametrize("seed", [2, 7])
def test_english_task_with_other_layout_seeds(tmp_path, seed):
    result = run_task(load_task(TASKS / "publish_product.yaml"), runs_dir=tmp_path, layout_seed=seed)
    assert result.status is RunStatus.succeeded, result.end_reason
    # Same script, different layout: the Publish click lands somewhere else than with seed 0.
    publish = next(s for s in read_steps(result.run_dir) if "Publish the product" in (s.reasoning or ""))
    assert publish.element.text == "Publish"


def test_elements_below_the_fold_are_scrolled_to(tmp_path):
    path = variant(tmp_path, "publish_product.yaml", lambda d: d.update(browser={"viewport": [1024, 420]}))
    result = run_task(load_task(path), runs_dir=tmp_path / "runs")
    assert result.status is RunStatus.succeeded, result.end_reason
    steps = read_steps(result.run_dir)
    scrolls = [s for s in steps if s.action.action == "scroll"]
    assert scrolls and all("off screen" in s.reasoning for s in scrolls)
    assert steps[0].screenshot_size == (1024, 420)


def test_invalid_input_fails_the_task_and_exits_1(tmp_path):
    def wrong_price(data):
        data["inputs"]["price"] = "cheap"

    path = variant(tmp_path, "publish_product.yaml", wrong_price)
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "run", str(path), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [run_dir] = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    run = read_run(run_dir)
    assert run.status is RunStatus.failed
    assert run.agent_verdict == "success"  # the script believed it was done; the checks say otherwise
    assert not run.checks[0].passed and "no item" in run.checks[0].detail
    failed = sum(1 for c in run.checks if not c.passed)  # said beside the agent's own verdict, which it contradicts
    said = " ".join(proc.stdout.split())
    assert (
        f"failed after {run.steps} steps: the agent ended the task (success); {failed} of {len(run.checks)} check(s) failed"
        in said
    )
    last = read_steps(run_dir)[-1]
    with Image.open(run_dir / last.screenshot) as image:
        assert image.size == (1280, 800)


def test_a_missing_element_is_a_recorded_error_and_ends_the_run(tmp_path):
    def missing(data):
        data["script"].insert(0, {"action": "left_click", "target": {"text": "No such button"}})
        data["limits"]["max_consecutive_errors"] = 2

    path = variant(tmp_path, "publish_product.yaml", missing)
    result = run_task(load_task(path), runs_dir=tmp_path / "runs")
    assert result.status is RunStatus.failed
    assert "2 consecutive errors" in result.end_reason
    steps = read_steps(result.run_dir)
    assert len(steps) == 2
    assert all(s.outcome == "error" and s.error_kind == "executor" and "No such button" in s.error for s in steps)
    assert all((result.run_dir / s.screenshot).is_file() for s in steps)


def test_step_limit_ends_the_run(tmp_path):
    path = variant(tmp_path, "publish_product.yaml", lambda d: d["limits"].update(max_steps=3))
    result = run_task(load_task(path), runs_dir=tmp_path / "runs")
    assert result.status is RunStatus.failed and result.steps == 3
    assert result.end_reason == "step limit reached (3 steps)"


def test_the_password_never_reaches_a_file(tmp_path, bundled_run):
    result = copy_bundled_run(bundled_run, tmp_path)  # the bundled task as recorded by run_task, once per session
    assert result.status is RunStatus.succeeded
    secret = b"Xq7-tulip-4821"
    files = [p for p in result.run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "steps.jsonl" for p in files)
    assert [p for p in files if secret in p.read_bytes()] == []
    typed = [json.loads(line)["action"].get("text") for line in (result.run_dir / "steps.jsonl").open()]
    assert "<secret>password</secret>" in typed
    # The goal as the agent was given it: inputs filled in, the secret by name.
    goal = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))["goal"]
    assert "the password <secret>password</secret>" in goal and '"Aurora LED desk lamp"' in goal, goal
