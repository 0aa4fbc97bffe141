"""The built-in MiniWoB++ suite: task files built from the miniwob package's pages, demonstrations for any seed.

Episodes are real MiniWoB++ pages in real Chromium, driven through plain Glassbox task files by the script
policy; the check reads the page's own raw reward (WOB_RAW_REWARD_GLOBAL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from agent.loop import run_task
from agent.task import load_task
from evals.miniwob import DEMOS, available_tasks, build_suite, pages_folder
from evals.suite import load_suite, parse_seeds
from tests.conftest import ROOT, require_chromium
from tracer import RunStatus, read_run

pytest.importorskip("miniwob", reason="needs the miniwob package (its task pages): pip install -e .[eval]")


def test_the_suite_has_one_task_file_per_task_run_on_each_seed(tmp_path):
    suite = build_suite(tmp_path, tasks=["click-button", "enter-text"], seeds=[3, 8])
    spec = yaml.safe_load(suite.read_text(encoding="utf-8"))
    assert (spec["tasks"], spec["seeds"]) == (["click-button.yaml", "enter-text.yaml"], [3, 8])
    ids = [e.id for e in load_suite(suite).episodes()]
    assert ids == ["click-button.s3.r0", "click-button.s8.r0", "enter-text.s3.r0", "enter-text.s8.r0"]
    task = load_task(tmp_path / "click-button.yaml")  # valid as any task file, no flag needed
    assert task.name == "miniwob.click-button" and task.goal == "{utterance}"
    task.seed = 8  # as an eval's episode sets it
    assert "Math.seedrandom(8)" in task.render_setup(task.setup[0].js or "")
    assert task.start_page() == (pages_folder() / "miniwob" / "click-button.html").as_uri()
    assert [s.save_as for s in task.setup] == [None, None, "utterance", "button"]


def test_unknown_tasks_and_bad_seeds_are_named(tmp_path):
    assert {"click-test", "click-button", "enter-text"} <= set(available_tasks())
    with pytest.raises(ValueError, match="unknown MiniWoB\\+\\+ task\\(s\\): click-nothing"):
        build_suite(tmp_path, tasks=["click-nothing"], seeds=[0])
    assert parse_seeds("0-2,9,2", "--seeds") == [0, 1, 2, 9]
    for bad in ("x", "3-1", "1-", "-1", "0-20000"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad, "--seeds")


def _eval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "eval", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["miniwob", "--tasks", "click-nothing"], "unknown MiniWoB++ task(s): click-nothing"),
        (["miniwob", "--seeds", "4-1"], "--seeds: '4-1' is not a range"),
        (["tasks/publish_product.yaml", "--seeds", "1"], "--tasks and --seeds are for the built-in suite"),
    ],
)
def test_the_cli_refuses_bad_miniwob_flags_with_exit_2(tmp_path, args, message):
    done = _eval(*args, "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in " ".join(done.stderr.split())


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DEMOS))
def test_each_bundled_demonstration_earns_reward_1_on_a_seed_it_was_not_written_for(tmp_path, name):
    require_chromium()
    build_suite(tmp_path, tasks=[name], seeds=[1234])
    task = load_task(tmp_path / f"{name}.yaml")
    task.seed = 1234  # as the suite's episode sets it
    result = run_task(task, policy="script", runs_dir=tmp_path / "runs")
    run = read_run(result.run_dir)
    assert run.status is RunStatus.succeeded, run.end_reason
    assert run.checks[0].detail == "expression returned 1"  # the page's raw reward
    assert run.page_values["utterance"]  # the goal the page generated for this seed


@pytest.mark.browser
@pytest.mark.slow
def test_glassbox_eval_miniwob_runs_every_episode_to_reward_1(tmp_path):
    require_chromium()
    runs = tmp_path / "runs"
    done = _eval(
        "miniwob", "--tasks", "click-button,enter-text", "--seeds", "21-22", "--workers", "2", "--json", "--runs-dir", str(runs)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    episodes = report["episodes"]
    assert len(episodes) == 4 and {e["status"] for e in episodes} == {"succeeded"}
    for episode in episodes:
        run = read_run(runs / str(episode["run_id"]))
        assert run.eval_id == report["eval_id"] and run.checks[0].detail == "expression returned 1"


@pytest.mark.browser
@pytest.mark.slow
def test_one_task_file_of_your_own_seeds_every_episode_of_a_suite_with_its_seed(tmp_path):
    """A MiniWoB++ task without a bundled demonstration, written once: {seed} in its setup takes each of the suite's
    seeds, so the episodes differ (their instructions) and each earns reward 1."""
    require_chromium()
    pages = pages_folder()
    task = {
        "name": "my.click-option",
        "goal": "{utterance}",
        "target": {"start_url": (pages / "miniwob" / "click-option.html").as_uri()},
        "allowed_roots": [str(pages)],
        "browser": {"viewport": [400, 300]},
        "limits": {"max_steps": 10},
        "setup": [
            {"js": "Math.seedrandom({seed}); core.EPISODE_MAX_TIME = 3600000; core.startEpisodeReal(); true"},
            {"wait_for": {"js": "WOB_TASK_READY"}},
            {"js": "core.getUtterance()", "save_as": "utterance"},
            {"js": "core.getUtterance().match(/^Select (.+) and click Submit\\.$/)[1]", "save_as": "choice"},
        ],
        "script": [
            {"action": "left_click", "target": {"label": "{choice}"}},
            {"action": "left_click", "target": {"selector": "#subbtn"}},
        ],
        "checks": [{"type": "js", "expression": "WOB_DONE_GLOBAL && WOB_RAW_REWARD_GLOBAL === 1"}],
    }
    (tmp_path / "click-option.yaml").write_text(yaml.safe_dump(task), encoding="utf-8")
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: mine\ntasks: [click-option.yaml]\nseeds: [5, 6, 7]\npolicy: {name: script}\n", encoding="utf-8")
    runs = tmp_path / "runs"
    done = _eval(str(suite), "--workers", "1", "--json", "--runs-dir", str(runs))
    assert done.returncode == 0, done.stdout + done.stderr
    episodes = json.loads(done.stdout)["episodes"]
    assert [e["status"] for e in episodes] == ["succeeded"] * 3
    recorded = [read_run(runs / str(e["run_id"])) for e in episodes]
    assert [run.task["seed"] for run in recorded] == [5, 6, 7]
    assert len({run.page_values["choice"] for run in recorded}) > 1  # seeded pages: not the same episode 3 times
