"""The viewer in real headless Chromium: runs list, run page, live steps, labelling, export, path safety."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from replays.export import export_feedback
from replays.viewer import ViewerServer
from tests.conftest import ROOT, TASKS, copy_bundled_run
from tools.browser import BrowserExecutor, BrowserSettings
from tracer import RunStatus, read_steps

pytestmark = pytest.mark.usefixtures("chromium")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, bundled_run):
    runs = tmp_path_factory.mktemp("runs")
    result = copy_bundled_run(bundled_run, runs)
    assert result.status is RunStatus.succeeded
    return runs, result


@pytest.fixture(scope="module")
def viewer(recorded):
    runs, _ = recorded
    with ViewerServer(runs) as server:
        yield server


@pytest.fixture(scope="module")
def page(chromium_module):
    with BrowserExecutor(BrowserSettings(viewport=(1440, 900))) as browser:
        yield browser.page


@pytest.fixture(scope="module")
def chromium_module():
    from tests.conftest import require_chromium

    require_chromium()


def test_listens_on_loopback(viewer):
    assert viewer.url.startswith("http://127.0.0.1:")


def test_runs_page_lists_the_run(viewer, recorded, page):
    _, result = recorded
    page.goto(viewer.url + "/")
    row = page.locator("table.runs tbody tr").first
    assert result.run_id in row.inner_text() and "succeeded" in row.inner_text() and "passed" in row.inner_text()
    page.goto(viewer.url + "/?status=failed")
    assert "No runs match" in page.inner_text("table.runs")
    page.goto(viewer.url + f"/?q={result.run_id[-6:]}")
    assert page.locator("table.runs tbody tr a").count() == 1


def test_run_page_shows_screenshots_tool_calls_and_keyboard_navigation(viewer, recorded, page):
    _, result = recorded
    steps = read_steps(result.run_dir)
    page.goto(f"{viewer.url}/runs/{result.run_id}#step-0")
    assert page.locator(".film").count() == len(steps)
    page.wait_for_function("document.getElementById('shot').naturalWidth === 1280")
    assert "Step 0" in page.inner_text("#step-title")
    assert '"left_click"' in page.inner_text("pre.tool")
    assert page.locator("#overlay circle.exec").count() == 1
    assert page.locator("img.crop").count() == 1
    page.keyboard.press("ArrowRight")
    assert "Step 1" in page.inner_text("#step-title") and '"type"' in page.inner_text("pre.tool")
    page.locator("#graph a[data-step='5']").first.click()
    assert "Step 5" in page.inner_text("#step-title")


def test_clicking_the_screenshot_creates_a_label_that_the_export_contains(viewer, recorded, page, tmp_path):
    runs, result = recorded
    page.goto(f"{viewer.url}/runs/{result.run_id}#step-5")
    page.click("#mark-wrong")
    box = page.locator("#shot").bounding_box()
    # Click at 25% / 40% of the displayed screenshot: the label is (250, 400) on the 0..1000 grid.
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.40)
    page.fill("#fix-note", "the Products link is elsewhere")
    page.click("#fix-save")
    page.wait_for_selector("ul.labels li.wrong")
    assert page.locator("#overlay circle.fix").count() == 1
    # Labels survive a reload (they live in the SQLite index).
    page.reload()
    page.wait_for_selector("ul.labels li.wrong")

    out = tmp_path / "sft.jsonl"
    summary = export_feedback(runs, out, "sft")
    assert summary.records == 1
    record = json.loads(out.read_text())
    call = json.loads(record["messages"][-1]["content"].split("\n")[1])
    x, y = call["arguments"]["coordinate"]
    assert abs(x - 250) <= 2 and abs(y - 400) <= 2 and call["arguments"]["action"] == "left_click"
    px, py = record["meta"]["pixel"]
    assert abs(px - 320) <= 3 and abs(py - 320) <= 3  # the same point in screenshot pixels (1280x800)
    assert record["messages"][0]["role"] == "system" and "# Tools" in record["messages"][0]["content"]
    assert record["messages"][1]["content"].startswith("<image>")
    assert (out.parent / record["images"][0]).is_file()
    assert "Xq7-tulip-4821" not in out.read_text()

    dpo = tmp_path / "dpo.jsonl"
    export_feedback(runs, dpo, "dpo")
    pair = json.loads(dpo.read_text())
    chosen = json.loads(pair["chosen"]["content"].split("\n")[1])
    rejected = json.loads(pair["rejected"]["content"].split("\n")[1])
    assert chosen["arguments"]["coordinate"] == [x, y]
    assert rejected == read_steps(result.run_dir)[5].tool_calls[0].model_dump()
    assert "rejected_response" not in pair  # LLaMA-Factory's layout; ms-swift's is --flavor swift

    page.click("button.undo")
    page.wait_for_function("!document.querySelector('ul.labels li')")
    assert export_feedback(runs, tmp_path / "after-undo.jsonl", "sft").records == 0


def test_new_steps_appear_live_without_reload(viewer, recorded, page, tmp_path):
    runs, _ = recorded
    data = yaml.safe_load((TASKS / "publish_product.yaml").read_text())
    # A task uploads only files under its own folder: bring the fixture along.
    data["files"]["desk_lamp"]["path"] = shutil.copy(TASKS / "fixtures" / "desk_lamp.png", tmp_path)
    data["script"] = [{"action": "wait", "time": 0.3}] * 12
    task = tmp_path / "slow.yaml"
    task.write_text(yaml.safe_dump(data))
    before = {p.name for p in runs.iterdir()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "run", str(task), "--runs-dir", str(runs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        new: list[Path] = []
        while time.monotonic() < deadline and not new:
            new = [p for p in runs.iterdir() if p.name not in before and p.is_dir()]
            time.sleep(0.05)
        assert new
        page.goto(f"{viewer.url}/runs/{new[0].name}")
        first = page.locator(".film").count()
        assert first < 12
        page.wait_for_function(f"document.querySelectorAll('.film').length > {first}", timeout=20_000)
        page.wait_for_function("document.getElementById('run-status').textContent !== 'running'", timeout=30_000)
        assert page.locator(".film").count() == 13  # 12 waits + the terminate the script adds
        assert page.inner_text("#run-status") in ("succeeded", "failed")
    finally:
        proc.wait(timeout=60)


@pytest.mark.parametrize(
    "path",
    [
        "/runs/{run}/files/../index.sqlite3",
        "/runs/{run}/files/%2e%2e/index.sqlite3",
        "/runs/{run}/files/..%2Findex.sqlite3",
        "/runs/{run}/files//etc/passwd",
        "/runs/{run}/files/steps/../../index.sqlite3",
        "/runs/..%2F..%2Fetc/files/passwd",
        "/runs/{run}/files/.run.json.123.tmp",
        "/runs/nope/files/run.json",
        "/static/../cli/app.py",
    ],
)
def test_path_traversal_is_404(viewer, recorded, path):
    _, result = recorded
    url = viewer.url + path.format(run=result.run_id)
    response = httpx.get(url)
    assert response.status_code == 404, url
    assert httpx.get(f"{viewer.url}/runs/{result.run_id}/files/run.json").status_code == 200


def test_label_posts_are_validated(viewer, recorded):
    _, result = recorded
    url = f"{viewer.url}/api/runs/{result.run_id}/steps/3/labels"
    own = {"Origin": viewer.url, "X-Glassbox-Token": viewer.token}  # what the viewer's own pages send
    client = httpx.Client(headers=own)
    bad = client.post(url, json={"verdict": "wrong", "correction": {"action": "left_click", "coordinate": [1200, 5]}})
    assert bad.status_code == 422 and "0..1000" in bad.json()["error"]
    assert client.post(url, json={"verdict": "maybe"}).status_code == 422
    assert client.post(url.replace("/3/", "/999/"), json={"verdict": "correct"}).status_code == 404
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert client.post(url, content="verdict=correct", headers=form).status_code == 415
    assert client.post(url, json={"verdict": "correct"}, headers={"Origin": "http://evil.example"}).status_code == 403
    ok = client.post(url, json={"verdict": "correct"})
    assert ok.status_code == 201 and ok.json()["step"] == 3
    evil = {"Origin": "http://evil.example"}
    assert client.delete(f"{viewer.url}/api/labels/{ok.json()['id']}", headers=evil).status_code == 403
    assert client.delete(f"{viewer.url}/api/labels/{ok.json()['id']}").status_code == 204
    assert client.delete(f"{viewer.url}/api/labels/{ok.json()['id']}").status_code == 404
