"""Suite files (valid and hostile), episode ids, the eval CLI's usage errors, and the figures (Wilson, AUROC).

Nothing here starts Chromium or a site: suites are loaded and checked, runs are not made.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from evals.episode import EpisodeResult
from evals.results import EvalPlan, eval_dir, write_plan
from evals.stats import auroc, calibration, end_reason_kind, summarize, wilson_interval
from evals.suite import Suite, SuiteError, load_suite
from tests.conftest import TASKS
from tracer.evals import task_key
from tracer.index import RunIndex


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def suite_text(**fields: str) -> str:
    base = {"name": "shop", "tasks": f"[{TASKS / 'publish_product.yaml'}]"}
    base.update(fields)
    return "".join(f"{k}: {v}\n" for k, v in base.items())


def problem(tmp_path: Path, text: str) -> str:
    with pytest.raises(SuiteError) as caught:
        load_suite(write(tmp_path, "suite.yaml", text))
    return str(caught.value)


# -- valid suites ----------------------------------------------------------------------------------------------
def test_a_suite_expands_to_tasks_x_seeds_x_repeats_with_stable_ids(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    for name in ("publish_product.yaml", "publish_product_zh.yaml"):
        shutil.copy(TASKS / name, tmp_path / "tasks" / name)
    shutil.copytree(TASKS / "fixtures", tmp_path / "tasks" / "fixtures")
    path = write(
        tmp_path,
        "suite.yaml",
        "name: shop\ntasks: ['tasks/*.yaml']\nseeds: [0, 3]\nrepeats: 2\npolicy: {name: script, temperature: 0}\n"
        "limits: {max_steps: 30, timeout_s: 120, retries: 1, workers: 2}\n",
    )
    suite = load_suite(path)
    episodes = suite.episodes()
    assert [e.id for e in episodes] == [
        f"tasks-{stem}.s{seed}.r{repeat}"
        for stem in ("publish-product", "publish-product-zh")
        for seed in (0, 3)
        for repeat in (0, 1)
    ]
    assert {e.task_name for e in episodes} == {"publish-product", "publish-product-zh"}
    assert [(e.seed, e.layout_seed) for e in episodes[:4]] == [(0, 0), (0, 0), (3, 3), (3, 3)]  # site tasks: the shop's
    assert suite.limits.timeout_s == 120.0 and suite.limits.retries == 1 and suite.limits.workers == 2
    assert suite.policy == {"name": "script", "temperature": 0}
    again = load_suite(path)
    assert [e.id for e in again.episodes()] == [e.id for e in episodes]
    assert again.plan_digest() == suite.plan_digest()
    write(tmp_path, "suite.yaml", path.read_text(encoding="utf-8").replace("repeats: 2", "repeats: 3"))
    assert load_suite(path).plan_digest() != suite.plan_digest()


@pytest.mark.parametrize(("seeds", "expected"), [("0-2", [0, 1, 2]), ("'0-2,9,1'", [0, 1, 2, 9]), ("7", [7])])
def test_seeds_may_be_ranges_as_on_the_command_line(tmp_path: Path, seeds: str, expected: list[int]) -> None:
    suite = load_suite(write(tmp_path, "suite.yaml", suite_text(seeds=seeds)))
    assert suite.seeds == expected and [e.seed for e in suite.episodes()] == expected


def test_a_folder_is_a_suite_of_its_task_files_with_their_own_seeds(tmp_path: Path) -> None:
    shutil.copy(TASKS / "publish_product.yaml", tmp_path / "a.yaml")
    shutil.copytree(TASKS / "fixtures", tmp_path / "fixtures")
    suite = load_suite(tmp_path)
    assert isinstance(suite, Suite) and suite.name == tmp_path.name
    [episode] = suite.episodes()
    assert (episode.id, episode.seed, episode.layout_seed, episode.repeat) == ("a.s-.r0", None, None, 0)


def test_two_task_files_with_the_same_name_in_different_folders_get_distinct_ids(tmp_path: Path) -> None:
    for folder in ("x", "y"):
        shutil.copytree(TASKS / "fixtures", tmp_path / folder / "fixtures")
        shutil.copy(TASKS / "publish_product.yaml", tmp_path / folder / "task.yaml")
    suite = load_suite(write(tmp_path, "suite.yaml", "name: two\ntasks: [x/task.yaml, y/task.yaml, x/task.yaml]\n"))
    assert [e.id for e in suite.episodes()] == ["x-task.s-.r0", "y-task.s-.r0"]  # and a file listed twice runs once


# -- hostile suites: a usage error naming the field ------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- just a list\n", "a suite file must be a mapping"),
        (suite_text(colour="blue"), "line 3: colour: unknown field"),
        ("name: x\n", "line 1: tasks: required field is missing"),
        (suite_text(tasks="[]"), "tasks: List should have at least 1 item"),
        (suite_text(seeds="[1, '2']"), "seeds[1]: Input should be a valid integer"),
        (suite_text(seeds="[1, 1]"), "seeds: seeds repeat"),
        (suite_text(seeds="[-1]"), "seed -1 is out of range"),
        (suite_text(seeds="4-1"), "seeds: '4-1' is not a range of at most 10,000 seeds, low to high"),
        (suite_text(seeds="0-x"), "seeds: '0-x' is not a seed or a range like 0-4"),
        (suite_text(seeds="true"), "seeds: Input should be a valid list"),
        (suite_text(seeds="[]"), "seeds: List should have at least 1 item"),
        (suite_text(repeats="0"), "repeats: Input should be greater than or equal to 1"),
        (suite_text(repeats="true"), "repeats: Input should be a valid integer"),
        (suite_text(repeats="'2'"), "repeats: Input should be a valid integer"),
        (suite_text(limits="{timeout_s: 0}"), "limits.timeout_s: Input should be greater than 0"),
        (suite_text(limits="{retries: 99}"), "limits.retries: Input should be less than or equal to 10"),
        (suite_text(limits="{workers: 0}"), "limits.workers: Input should be greater than or equal to 1"),
        (suite_text(limits="{timeout_s: .nan}"), "limits.timeout_s"),
        (suite_text(limits="{wrkers: 2}"), "limits.wrkers: unknown field"),
        (suite_text(policy="{name: gpt9}"), "policy.name: Input should be 'script', 'qwen3vl' or 'openai'"),
        (suite_text(policy="{temperature: 9}"), "policy.temperature: Input should be less than or equal to 2"),
        (suite_text(policy="{modle: x}"), "policy.modle: unknown field"),
        (suite_text(tasks="['nothing/*.yaml']"), "tasks[0]: 'nothing/*.yaml' matches no task file"),
        (suite_text(tasks="['/etc/*.yaml']"), "tasks[0]: '/etc/*.yaml': a glob must be relative"),
        (suite_text(tasks="['../../**/*.yaml']"), "tasks[0]: '../../**/*.yaml': a glob stays inside the suite's folder"),
        (suite_text(tasks="['**/**/**/*.yaml']"), "tasks[0]: '**/**/**/*.yaml': a glob may hold '**' once"),
        (suite_text(tasks="[missing.yaml]"), "tasks[0]: no task file"),
        (suite_text(tasks="['']"), "tasks: a task entry is empty"),
        ("name: a\nname: b\ntasks: [x]\n", "line 2: name: duplicate key 'name'"),
        ("a: &a [*a]\n", "recursive document"),
        ("name: [unclosed\n", "not valid YAML"),
        ('name: x\ntasks: ["a\\0b"]\n', "NUL character"),
    ],
)
def test_a_hostile_suite_is_refused_naming_the_field(tmp_path: Path, text: str, expected: str) -> None:
    said = problem(tmp_path, text)
    assert expected in said, said
    assert said.startswith(str(tmp_path / "suite.yaml"))
    field = expected.split(":")[0]
    assert f"{field}: {field}:" not in said, said  # the field is named once


def test_a_broken_task_in_a_suite_is_named_with_its_own_problem(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.yaml", "name: broken\ngoal: g\ntarget: {site: shop}\nlimits: {max_steps: 0}\n")
    said = problem(tmp_path, "name: s\ntasks: [broken.yaml]\n")
    assert f"task {broken}: line 4: limits.max_steps: Input should be greater than or equal to 1" in said, said


def test_the_script_policy_needs_a_script_in_every_task(tmp_path: Path) -> None:
    task = write(tmp_path, "noscript.yaml", "name: n\ngoal: g\ntarget: {site: shop}\n")
    said = problem(tmp_path, "name: s\ntasks: [noscript.yaml]\npolicy: {name: script}\n")
    assert f"task {task}: has no 'script:' section" in said


def test_a_suite_from_elsewhere_cannot_start_programs_unless_allowed(tmp_path: Path) -> None:
    write(
        tmp_path,
        "prog.yaml",
        "name: p\ngoal: g\nenvironment: desktop\ndesktop: {command: [touch, /tmp/pwned]}\n"
        "script: [{action: terminate, status: success}]\n",
    )
    said = problem(tmp_path, "name: s\ntasks: [prog.yaml]\n")
    assert "starts a program (touch /tmp/pwned)" in said and "--allow-programs" in said
    assert load_suite(tmp_path / "suite.yaml", allow_programs=True).episodes()[0].task_name == "p"


def test_a_suite_sends_screenshots_only_to_a_model_server_the_user_trusts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("GLASSBOX_MODEL_ORIGINS", raising=False)
    said = problem(tmp_path, suite_text(policy="{name: openai, model: m, base_url: 'https://collector.example/v1'}"))
    assert "policy.base_url" in said and "export GLASSBOX_MODEL_ORIGINS=https://collector.example" in said
    monkeypatch.setenv("GLASSBOX_MODEL_ORIGINS", "https://collector.example")
    suite = load_suite(
        write(tmp_path, "suite.yaml", suite_text(policy="{name: openai, model: m, base_url: 'https://collector.example/v1'}"))
    )
    assert suite.policy["base_url"] == "https://collector.example/v1"


def test_a_suite_that_expands_past_the_episode_limit_is_refused(tmp_path: Path) -> None:
    seeds = "[" + ", ".join(str(i) for i in range(1000)) + "]"
    said = problem(tmp_path, suite_text(seeds=seeds, repeats="1000"))
    assert "expands to 1,000,000 episodes; at most 100,000" in said


def test_a_suite_path_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "suite.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SuiteError, match="not a regular file"):
        load_suite(fifo)
    with pytest.raises(SuiteError, match="file not found"):
        load_suite(tmp_path / "none.yaml")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SuiteError, match="holds no task files"):
        load_suite(empty)


# -- the CLI's usage errors (exit 2, nothing run) --------------------------------------------------------------
def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["eval", *args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_cli_usage_errors_exit_2_with_the_problem(tmp_path: Path) -> None:
    code, said = cli(str(write(tmp_path, "suite.yaml", suite_text(repeats="0"))), "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and "repeats: Input should be greater than or equal to 1" in said, said
    good = write(tmp_path, "good.yaml", suite_text(seeds="[1]"))
    code, said = cli(str(good), "--address", "auto")
    assert code == 2 and "--address is for --engine ray" in said
    code, said = cli(str(good), "--eval-id", "../escape", "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and "'../escape' is not an eval id" in said
    code, said = cli(str(good), "--workers", "0")
    assert code == 2
    code, said = cli(str(write(tmp_path, "q.yaml", suite_text(policy="{name: qwen3vl}"))))
    assert code == 2 and "--policy qwen3vl needs --model" in said
    assert not (tmp_path / "runs" / "evals").exists() or not any((tmp_path / "runs" / "evals").iterdir())


def test_resuming_an_eval_with_another_suite_is_refused(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    other = load_suite(write(tmp_path, "other.yaml", suite_text(name="other", seeds="[1, 2]")))
    folder = eval_dir(runs.resolve(), "eval-1")
    write_plan(
        folder,
        EvalPlan(
            eval_id="eval-1",
            suite_name="other",
            suite_source=str(other.source),
            digest=other.plan_digest(),
            created_at="2026-11-26T00:00:00Z",  # type: ignore[arg-type]
            policy={},
            limits={},
            episodes=other.episodes(),
        ),
    )
    code, said = cli(str(write(tmp_path, "this.yaml", suite_text(seeds="[7]"))), "--eval-id", "eval-1", "--runs-dir", str(runs))
    assert code == 2 and "eval eval-1 ran another suite (other," in said, said
    assert sorted(p.name for p in folder.iterdir()) == ["plan.json"]  # nothing started


# -- figures -----------------------------------------------------------------------------------------------------
def test_wilson_interval_matches_known_values() -> None:
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(5, 10)  # type: ignore[misc]
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = wilson_interval(10, 10)  # type: ignore[misc]
    assert (round(low, 4), high) == (0.7225, 1.0)
    low, high = wilson_interval(0, 10)  # type: ignore[misc]
    assert (low, round(high, 4)) == (0.0, 0.2775)
    low, high = wilson_interval(81, 263)  # Wilson (1927) / Newcombe (1998) example: 0.2553 to 0.3662
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_auroc_on_known_inputs() -> None:
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75  # the scikit-learn docs' example
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9], [True, True, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5  # ties count a half
    assert auroc([0.3, 0.7], [True, True]) is None  # one class only: n/a
    assert auroc([], []) is None


def test_calibration_bins_and_auroc_of_confidence_predicting_wrong_steps() -> None:
    pairs = [(0.95, False), (0.9, False), (0.85, True), (0.2, True), (0.15, True), (1.0, False)]
    cal = calibration(pairs)
    assert (cal.steps, cal.wrong) == (6, 3)
    # wrong steps have confidences 0.85, 0.2, 0.15; right ones 0.95, 0.9, 1.0: low confidence ranks every wrong first
    assert cal.auroc == 1.0
    by_bin = {round(b.low, 1): b for b in cal.bins if b.steps}
    assert sorted(by_bin) == [0.1, 0.2, 0.8, 0.9]
    assert by_bin[0.9].steps == 3 and by_bin[0.9].wrong_rate == 0.0  # 0.95, 0.9 and 1.0 (the last bin holds 1.0)
    assert by_bin[0.8].wrong_rate == 1.0
    empty = calibration([])
    assert (empty.steps, empty.auroc, empty.bins) == (0, None, [])


def result(episode: str, task: str, status: str, steps: int = 10, seconds: float = 5.0, **extra: object) -> EpisodeResult:
    return EpisodeResult.model_validate(
        {
            "episode_id": episode,
            "task_name": task,
            "task_file": f"/t/{task}.yaml",
            "seed": 0,
            "repeat": 0,
            "status": status,
            "run_id": None,
            "end_reason": extra.pop("end_reason", "the agent ended the task (success)"),
            "steps": steps,
            "seconds": seconds,
            "parse_errors": extra.pop("parse_errors", 0),
            "harness_attempts": extra.pop("harness_attempts", 1),
            "finished_at": "2026-11-26T00:00:00Z",
            **extra,
        }
    )


def test_task_files_that_share_a_task_name_are_counted_apart() -> None:
    results = [
        result("ok.s1.r0", "publish-product", "succeeded"),
        result("ok.s2.r0", "publish-product", "succeeded"),
        result("wrong-check.s1.r0", "publish-product", "failed"),
        result("other.s1.r0", "other", "succeeded"),
        result("by-hand", "other", "failed"),  # an id of another form: counted under its task's name
    ]
    s = summarize(results)
    assert [(t.task_name, t.success.successes, t.success.n) for t in s.per_task] == [
        ("other", 1, 2),
        ("publish-product (ok)", 2, 2),
        ("publish-product (wrong-check)", 0, 1),
    ]
    assert task_key("click-button.s3.r0", "x") == "click-button" and task_key("a.b.s-.r2", "x") == "a.b"


def test_summary_counts_harness_errors_apart_and_groups_end_reasons() -> None:
    results = [
        result("a1", "a", "succeeded", steps=10, seconds=4.0),
        result("a2", "a", "failed", steps=30, seconds=20.0, end_reason="step limit reached (30 steps)", parse_errors=3),
        result("b1", "b", "succeeded", steps=20, seconds=6.0, harness_attempts=2),
        result("b2", "b", "harness_error", steps=0, seconds=1.0, end_reason="harness error: boom", harness_attempts=3),
        result("b3", "b", "failed", steps=12, end_reason="3 consecutive errors (limit 3); last: no such element"),
    ]
    s = summarize(results, planned=6)
    assert (s.episodes, s.planned, s.harness_errors, s.retried_episodes) == (5, 6, 1, 2)
    assert (s.success.successes, s.success.n, s.success.rate) == (2, 4, 0.5)
    assert (round(s.success.low or 0, 4), round(s.success.high or 0, 4)) == (0.1500, 0.8500)
    assert [(t.task_name, t.success.successes, t.success.n, t.harness_errors) for t in s.per_task] == [
        ("a", 1, 2, 0),
        ("b", 1, 2, 1),
    ]
    assert s.steps.mean == 18.0 and s.steps.median == 16.0
    assert s.parse_errors == 3 and s.parse_error_rate == 3 / 72
    assert s.end_reasons == {
        "the agent ended the task (success)": 2,
        "step limit reached (N steps)": 1,
        "harness error": 1,
        "N consecutive errors (limit N)": 1,
    }
    assert s.calibration.steps == 0 and s.calibration.auroc is None
    assert end_reason_kind("time budget spent (300 s)") == "time budget spent (N s)"


def test_the_index_keeps_eval_summaries_beside_an_index_from_before_evals(tmp_path: Path) -> None:
    index = RunIndex(tmp_path)
    assert index.evals() == []
    index.upsert_eval("eval-1", "shop", {"episodes": 3})
    index.upsert_eval("eval-1", "shop", {"episodes": 4})
    index.close()
    again = RunIndex(tmp_path)  # reopened: the table is there, the runs schema check is unchanged
    [row] = again.evals()
    assert (row["eval_id"], row["suite"], row["summary"]) == ("eval-1", "shop", {"episodes": 4})
    assert again.count() == 0


def test_the_episodes_file_survives_torn_and_hostile_lines(tmp_path: Path) -> None:
    from evals.episode import EpisodeStarted
    from evals.results import EPISODES_FILE, append_event, read_events

    first = result("a1", "a", "succeeded")
    (tmp_path / EPISODES_FILE).write_bytes(
        b'not json\n["a list"]\n{"event": "finished", "episode_id": 3}\n'
        + first.model_dump_json().encode()
        + b'\n{"event": "finished", "episode_id": "a1", "trunc'  # a kill mid-append
    )
    append_event(tmp_path, EpisodeStarted(episode_id="a2", attempt=1, run_id="r-2", at="2026-11-26T00:00:00Z"))  # type: ignore[arg-type]
    append_event(tmp_path, result("a1", "a", "failed"))  # a duplicate finished line: the first one counts
    finished, started = read_events(tmp_path)
    assert list(finished) == ["a1"] and finished["a1"].status == "succeeded"
    assert [(s.episode_id, s.run_id) for s in started] == [("a2", "r-2")]
    lines = (tmp_path / EPISODES_FILE).read_text(encoding="utf-8").splitlines()
    assert lines[-2].startswith('{"event":"started"')  # the torn line was closed off, not glued to the next one


def test_a_damaged_plan_is_a_usage_error(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    folder = eval_dir(runs.resolve(), "eval-2")
    folder.mkdir(parents=True)
    (folder / "plan.json").write_text("{not json", encoding="utf-8")
    code, said = cli(str(write(tmp_path, "s.yaml", suite_text(seeds="[1]"))), "--eval-id", "eval-2", "--runs-dir", str(runs))
    assert code == 2 and "the eval's plan.json cannot be read" in said, said


def test_an_interrupted_eval_says_how_to_resume_it_in_the_same_runs_dir(tmp_path: Path, monkeypatch) -> None:
    import evals.runner

    def interrupted(suite, *, runs_dir, eval_id, on_start, **_):  # Ctrl-C once the eval has started
        on_start("eval-ctrl-c", runs_dir / "evals" / "eval-ctrl-c", 1, 0)
        raise KeyboardInterrupt

    monkeypatch.setattr(evals.runner, "run_eval", interrupted)
    runs = tmp_path / "other runs"
    suite = write(tmp_path, "suite.yaml", suite_text(seeds="[1]"))
    code, said = cli(str(suite), "--runs-dir", str(runs))
    assert code == 130, said
    assert f"resume with glassbox eval {suite} --runs-dir '{runs}' --eval-id eval-ctrl-c" in " ".join(said.split()), said
