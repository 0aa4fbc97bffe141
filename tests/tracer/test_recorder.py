"""The trace recorder on real runs: complete step records, evidence crops, crash safety, secrets, graph, index."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from agent import load_task, run_task
from tests.conftest import ROOT, TASKS, copy_bundled_run, glassbox_in_process
from tracer import RunStatus, read_run, read_steps
from tracer.follow import RunFollower
from tracer.graph import export, load, run_graph
from tracer.index import RunIndex
from tracer.schema import StepErrorKind

pytestmark = pytest.mark.usefixtures("chromium")
OPTIONAL = ("prompt", "token_counts", "cache_hit", "coordinate", "element", "evidence", "confidence")


@pytest.fixture(scope="module")
def publish_run(tmp_path_factory, bundled_run):
    runs = tmp_path_factory.mktemp("runs")
    result = copy_bundled_run(bundled_run, runs)
    assert result.status is RunStatus.succeeded, result.end_reason
    return runs, result.run_dir


def test_every_field_is_filled_or_null_with_a_reason(publish_run):
    _, run_dir = publish_run
    steps = read_steps(run_dir)
    for step in steps:
        for field in OPTIONAL:
            value = getattr(step, field)
            assert value is not None or step.unavailable.get(field), f"step {step.index}: {field} empty without a reason"
        assert not step.attention and "attention" in step.unavailable
        assert step.timings.perceive_ms > 0 and step.timings.act_ms > 0 and step.timings.record_ms > 0
        assert step.url and step.title and step.schema_version == 2
    run = read_run(run_dir)
    assert run.summary.steps == len(steps) and run.summary.actions["left_click"] >= 8
    assert run.summary.errors == 0 and run.summary.mean_confidence is None


def test_evidence_crops_show_the_clicked_element(publish_run):
    _, run_dir = publish_run
    clicks = [s for s in read_steps(run_dir) if s.action.action in ("left_click", "upload_file")]
    assert len(clicks) >= 9
    for step in clicks:
        evidence = step.evidence
        assert evidence is not None and evidence.sized_by == "element"
        left, top, right, bottom = evidence.box
        assert left <= evidence.point[0] <= right and top <= evidence.point[1] <= bottom
        box = step.element.box
        assert left <= box.x and right >= box.x + box.width - 1 and top <= box.y and bottom >= box.y + box.height - 1
        crop = run_dir / evidence.crop
        assert crop.stat().st_size < 40_000
        with Image.open(crop) as image:
            assert image.format == "WEBP" and image.size == (right - left, bottom - top)
            # The point marker is drawn in red at the executed point.
            r, g, b = image.convert("RGB").getpixel((evidence.point[0] - left + 9, evidence.point[1] - top))[:3]
            assert r > 180 and g < 120
    steps = read_steps(run_dir)
    typed = [s for s in steps if s.action.action in ("type", "key", "terminate")]
    assert all(s.evidence is None and "no point" in s.unavailable["evidence"] for s in typed)


def test_logs_go_to_the_run_folder(publish_run):
    _, run_dir = publish_run
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    events = [yaml.safe_load(line)["event"] for line in lines]
    assert events[0] == "run started" and events[-1] == "run ended"


def test_the_password_is_nowhere_in_the_runs_dir(publish_run):
    runs, _ = publish_run
    files = [p for p in runs.rglob("*") if p.is_file()]
    assert any(p.name.startswith("index.sqlite3") for p in files)
    assert any(p.name == "log.jsonl" for p in files)
    assert [p for p in files if b"Xq7-tulip-4821" in p.read_bytes()] == []


def test_graph_exports_load_back_with_the_right_counts(publish_run):
    _, run_dir = publish_run
    run, steps = read_run(run_dir), read_steps(run_dir)
    graph = run_graph(run, steps)
    n = len(steps)
    assert graph.number_of_nodes() == 4 * n + 1
    assert graph.number_of_edges() == 3 * n + (n - 1) + 1
    for fmt in ("json", "graphml"):
        back = load(export(graph, fmt), fmt)
        assert (back.number_of_nodes(), back.number_of_edges()) == (graph.number_of_nodes(), graph.number_of_edges())
    assert export(graph, "mermaid").count("-->") == graph.number_of_edges()
    cli = glassbox_in_process("graph", run.run_id, "--runs-dir", str(run_dir.parent), "--format", "graphml")
    assert cli.returncode == 0 and load(cli.stdout, "graphml").number_of_nodes() == 4 * n + 1


def test_parse_errors_are_their_own_nodes(tmp_path):
    data = yaml.safe_load((TASKS / "publish_product.yaml").read_text())
    # A task uploads only files under its own folder: bring the fixture along.
    data["files"]["desk_lamp"]["path"] = shutil.copy(TASKS / "fixtures" / "desk_lamp.png", tmp_path)
    data["script"].insert(1, {"action": "left_click", "target": {"text": "Nowhere"}})
    data["limits"]["max_consecutive_errors"] = 2
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run_task(load_task(path), runs_dir=tmp_path / "runs")
    steps = read_steps(result.run_dir)
    # A script's target not found is no output that could not be parsed: an executor error, an action-less outcome.
    assert [s.error_kind for s in steps if s.error] == ["executor", "executor"]
    graph = run_graph(read_run(result.run_dir), steps)
    assert [d["kind"] for _, d in graph.nodes(data=True)].count("parse_error") == 0
    assert [d["kind"] for *_, d in graph.edges(data=True)].count("retry") == 1
    # The same two steps as a model's unparsable output: a node of their own each.
    parsed = [s.model_copy(update={"error_kind": StepErrorKind.parse}) if s.error else s for s in steps]
    graph = run_graph(read_run(result.run_dir), parsed)
    assert [d["kind"] for _, d in graph.nodes(data=True)].count("parse_error") == 2
    assert [d["kind"] for *_, d in graph.edges(data=True)].count("retry") == 1


def slow_task(tmp_path: Path) -> Path:
    data = yaml.safe_load((TASKS / "publish_product.yaml").read_text())
    # A task uploads only files under its own folder: bring the fixture along.
    data["files"]["desk_lamp"]["path"] = shutil.copy(TASKS / "fixtures" / "desk_lamp.png", tmp_path)
    data["script"] = [{"action": "wait", "time": 0.2}] * 40
    data["limits"]["max_steps"] = 60
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_sigkill_mid_run_leaves_a_readable_interrupted_run(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "run", str(slow_task(tmp_path)), "--runs-dir", str(runs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        run_dirs: list[Path] = []
        while time.monotonic() < deadline and not run_dirs:
            run_dirs = [p for p in runs.glob("*") if p.is_dir()] if runs.exists() else []
            time.sleep(0.05)
        assert run_dirs, "the run never started"
        follower = RunFollower(run_dirs[0])
        seen = []
        while time.monotonic() < deadline and len(seen) < 4:
            seen += follower.poll_steps()
            time.sleep(0.05)
        assert len(seen) >= 4
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_dir = run_dirs[0]
    run = read_run(run_dir)
    assert run.status is RunStatus.interrupted
    steps = read_steps(run_dir)
    assert len(steps) >= 4 and [s.index for s in steps] == list(range(len(steps)))
    assert all((run_dir / s.screenshot).is_file() for s in steps)
    index = RunIndex(runs)
    try:
        [row] = index.runs()
        assert row.status is RunStatus.interrupted
        assert len(index.steps(row.run_id)) == len(steps)
        assert [r.run_id for r in index.runs(status="interrupted")] == [row.run_id]
    finally:
        index.close()
    listing = subprocess.run(
        [sys.executable, "-m", "cli", "runs", "list", "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "interrupted" in listing.stdout


def test_runs_list_filters_show_and_rm(publish_run, tmp_path):
    runs, run_dir = publish_run

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return glassbox_in_process(*args, "--runs-dir", str(runs), env={"COLUMNS": "200"})

    assert run_dir.name in cli("runs", "list", "--task", "publish-product").stdout
    assert "no runs" in cli("runs", "list", "--status", "failed", "--task", "publish-product").stdout
    assert "no runs" in cli("runs", "list", "--since", "2999-01-01").stdout
    assert cli("runs", "list", "--status", "bogus").returncode == 2
    shown = cli("runs", "show", run_dir.name[:18])
    assert shown.returncode == 0 and "succeeded" in shown.stdout
    assert cli("runs", "show", "nope").returncode == 2
    refused = subprocess.run(
        [sys.executable, "-m", "cli", "runs", "rm", run_dir.name, "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert refused.returncode == 2 and run_dir.exists()


def test_rm_deletes_folder_and_index_rows(tmp_path):
    from tracer.store import RunStore

    task = load_task(slow_task(tmp_path))
    task.limits.max_steps = 2
    result = run_task(task, runs_dir=tmp_path / "runs")
    RunStore(tmp_path / "runs").remove(result.run_id)
    assert not result.run_dir.exists()
    index = RunIndex(tmp_path / "runs")
    assert index.runs() == [] and index.steps(result.run_id) == []
    index.close()
