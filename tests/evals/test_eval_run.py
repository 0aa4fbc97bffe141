"""Evals end to end: the bundled shop task over several layout seeds in parallel worker processes and as Ray tasks,
a killed eval resumed without repeating finished episodes, harness failures retried (a site that drops its first
request, one that cannot be reached, one that hangs past the episode timeout) and task failures not.

Real Chromium, real shop servers, real worker processes, a real local Ray.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import pytest

from evals.results import EPISODES_FILE, read_events
from evals.runner import run_eval
from evals.suite import load_suite
from tests.conftest import ROOT, TASKS
from tracer import RunStatus, read_run
from tracer.index import RunIndex

pytestmark = [pytest.mark.usefixtures("chromium"), pytest.mark.browser, pytest.mark.slow]


def shop_suite(tmp_path: Path, seeds: list[int], **limits: object) -> Path:
    limit_text = ", ".join(f"{k}: {v}" for k, v in {"timeout_s": 300, **limits}.items())
    path = tmp_path / "suite.yaml"
    path.write_text(
        f"name: shop\ntasks: [{TASKS / 'publish_product.yaml'}]\nseeds: {seeds}\npolicy: {{name: script}}\n"
        f"limits: {{{limit_text}}}\n",
        encoding="utf-8",
    )
    return path


def eval_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "eval", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def assert_recorded(runs: Path, eval_id: str, episodes: list[dict[str, object]], seeds: list[int]) -> None:
    assert sorted(e["seed"] for e in episodes) == sorted(seeds)  # type: ignore[type-var]
    for episode in episodes:
        assert episode["status"] == "succeeded", episode
        # 21 script steps; on a loaded machine a page can still be loading when the script looks for the next
        # element, and that step is retried (an error step, not a harness failure): the episode still succeeds.
        assert 21 <= int(episode["steps"]) <= 24 and episode["harness_attempts"] == 1
        run = read_run(runs / str(episode["run_id"]))
        assert run.status is RunStatus.succeeded and all(c.passed for c in run.checks)
        assert (run.eval_id, run.episode_id, run.layout_seed) == (eval_id, episode["episode_id"], episode["seed"])


def test_a_suite_runs_with_two_worker_processes_every_episode_recorded(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    seeds = [1, 2, 3]
    temp = tmp_path / "tmp"  # the workers' temporary folders (each episode's shop data) go here
    temp.mkdir()
    args = (str(shop_suite(tmp_path, seeds)), "--workers", "2", "--runs-dir", str(runs), "--json")
    done = eval_cli(*args, env={"TMPDIR": str(temp)})
    assert done.returncode == 0, done.stderr
    # The workers exit on their own at the end, cleaning up: killed as the pool's threads ended, they left their
    # last shop's folder behind (PR_SET_PDEATHSIG follows the thread that started a process).
    assert not list(temp.glob("glassbox-shop-*"))
    report = json.loads(done.stdout)
    assert (report["engine"], report["workers"], report["skipped"]) == ("local", 2, 0)
    assert_recorded(runs, report["eval_id"], report["episodes"], seeds)
    summary = report["summary"]
    assert (summary["episodes"], summary["success"]["successes"], summary["success"]["rate"]) == (3, 3, 1.0)
    assert summary["calibration"]["auroc"] is None  # the script policy gives no confidence: n/a
    folder = Path(report["folder"])
    rows = list(csv.DictReader((folder / "results.csv").open(encoding="utf-8")))
    assert sorted(r["seed"] for r in rows) == ["1", "2", "3"] and {r["status"] for r in rows} == {"succeeded"}
    assert json.loads((folder / "summary.json").read_text(encoding="utf-8"))["success"]["n"] == 3
    [indexed] = RunIndex(runs).evals()
    assert indexed["eval_id"] == report["eval_id"] and indexed["summary"]["success"]["successes"] == 3
    # Each episode had its own site: all three published the same product name, and each check passed on its own shop.
    assert len({e["run_id"] for e in report["episodes"]}) == 3


def test_a_suite_runs_as_ray_tasks_on_a_local_ray(tmp_path: Path) -> None:
    try:
        import ray
    except ImportError as exc:
        print(f"SKIP reason: Ray is not installed ({exc}); pip install 'glassbox[eval]'")
        pytest.skip(f"Ray is not installed: {exc}")
    runs = tmp_path / "runs"
    seeds = [4, 5]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcome = run_eval(load_suite(shop_suite(tmp_path, seeds)), runs_dir=runs, engine="ray")
    finally:
        ray.shutdown()
    assert (outcome.engine, outcome.workers) == ("ray", 2)  # as many at once as the cluster has CPUs
    assert_recorded(runs, outcome.eval_id, [r.model_dump() for r in outcome.results], seeds)
    assert outcome.summary.success.rate == 1.0


def test_a_killed_eval_resumes_without_repeating_finished_episodes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    suite = shop_suite(tmp_path, [1, 2, 3])
    args = [str(suite), "--workers", "1", "--runs-dir", str(runs), "--eval-id", "eval-kill"]
    events = runs / "evals" / "eval-kill" / EPISODES_FILE
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "eval", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300

        def second_started() -> bool:  # one episode finished and the next one handed to its worker
            text = events.read_text(encoding="utf-8") if events.is_file() else ""
            return '"event":"finished"' in text and text.count('"event":"started"') >= 2

        while not second_started():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "no episode finished within 300 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)  # mid-way: the second episode is running
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    before, started = read_events(events.parent)
    assert len(before) == 1, before
    [first] = before.values()
    cut_short = [s.run_id for s in started if s.episode_id not in before]
    assert len(cut_short) == 1

    done = eval_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    assert "resuming: 1 episode(s) already finished are skipped" in done.stderr
    report = json.loads(done.stdout)
    assert report["skipped"] == 1
    finished_lines = [
        json.loads(line) for line in events.read_text(encoding="utf-8").splitlines() if '"event":"finished"' in line
    ]
    assert Counter(line["episode_id"] for line in finished_lines) == Counter(
        {"publish-product.s1.r0": 1, "publish-product.s2.r0": 1, "publish-product.s3.r0": 1}
    )
    by_id = {e["episode_id"]: e for e in report["episodes"]}
    assert by_id[first.episode_id]["run_id"] == first.run_id  # not run again
    assert all(e["status"] == "succeeded" for e in report["episodes"])
    resumed = next(e for e in report["episodes"] if cut_short[0] in e["earlier_runs"])
    assert resumed["run_id"] != cut_short[0]  # re-run with a new run id
    tagged = [read_run(d) for d in runs.iterdir() if (d / "run.json").is_file()]
    succeeded = [r for r in tagged if r.eval_id == "eval-kill" and r.status is RunStatus.succeeded]
    assert sorted(r.episode_id or "" for r in succeeded) == sorted(by_id)  # exactly one successful run per episode


class FlakySite:
    """An HTTP server on 127.0.0.1 standing for a site that is not up at first: it drops every request for "/"
    (no response at all, so the browser's navigation fails) until ``up()`` says otherwise, then serves a page
    saying "ready". ``hang=True``: it never answers."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.up: Callable[[], bool] = lambda: True
        self.dropped = self.served = 0
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/"
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            if self.hang:
                self._held.append(conn)
                continue
            if data.startswith(b"GET / "):
                if not self.up():
                    self.dropped += 1
                    conn.close()
                    continue
                self.served += 1
            body = b"<html><head><title>flaky</title></head><body><h1>ready</h1></body></html>"
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            conn.close()

    def close(self) -> None:
        self._server.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def flaky() -> Iterator[FlakySite]:
    site = FlakySite()
    yield site
    site.close()


def url_task(folder: Path, name: str, url: str, text: str, **browser: int) -> Path:
    path = folder / f"{name}.yaml"
    settings = f"browser: {{{', '.join(f'{k}: {v}' for k, v in browser.items())}}}\n" if browser else ""
    path.write_text(
        f"name: {name}\ngoal: See whether the page is ready.\ntarget: {{start_url: '{url}'}}\n{settings}"
        f"checks: [{{type: text_present, text: {text}}}]\nscript: [{{action: terminate, status: success}}]\n",
        encoding="utf-8",
    )
    return path


def test_harness_failures_are_retried_and_task_failures_are_not(tmp_path: Path, flaky: FlakySite) -> None:
    with socket.socket() as probe:  # a port nobody listens on: the site "cannot start"
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    url_task(tmp_path, "flaky", flaky.url, "ready")
    url_task(tmp_path, "wrong-text", flaky.url, "sold out")
    url_task(tmp_path, "down", dead, "ready")
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: harness\ntasks: [flaky.yaml, wrong-text.yaml, down.yaml]\nlimits: {retries: 1, timeout_s: 120, workers: 1}\n",
        encoding="utf-8",
    )
    runs = tmp_path / "runs"
    events = runs / "evals" / "eval-harness" / EPISODES_FILE

    def second_attempt_started() -> bool:
        # The site comes up once the eval has handed out the flaky episode's second attempt (its line is written
        # before the attempt starts): the first attempt always finds it down, every later one up.
        text = events.read_text(encoding="utf-8") if events.is_file() else ""
        return any('"episode_id":"flaky.s-.r0","attempt":2' in line for line in text.splitlines())

    flaky.up = second_attempt_started
    outcome = run_eval(load_suite(suite), runs_dir=runs, eval_id="eval-harness")
    by_task = {r.task_name: r for r in outcome.results}

    flaky_result = by_task["flaky"]  # first attempt: the request was dropped; the retry succeeded
    assert (flaky_result.status, flaky_result.harness_attempts) == ("succeeded", 2), flaky_result
    assert len(flaky_result.harness_errors) == 1 and "ERR_EMPTY_RESPONSE" in flaky_result.harness_errors[0]
    assert read_run(runs / str(flaky_result.run_id)).status is RunStatus.succeeded

    failed = by_task["wrong-text"]  # the run came to an outcome: a task failure, never retried
    assert (failed.status, failed.harness_attempts, failed.harness_errors) == ("failed", 1, [])
    assert read_run(runs / str(failed.run_id)).status is RunStatus.failed

    down = by_task["down"]  # retried once, then given up: the eval went on
    assert (down.status, down.harness_attempts, down.run_id) == ("harness_error", 2, None)
    assert len(down.harness_errors) == 2 and all("ERR_CONNECTION_REFUSED" in e for e in down.harness_errors)

    s = outcome.summary
    assert (s.episodes, s.harness_errors, s.success.successes, s.success.n, s.retried_episodes) == (3, 1, 1, 2, 2)
    assert flaky.dropped >= 1 and flaky.served == 2  # the flaky episode's retry and the wrong-text episode


def test_an_episode_past_its_timeout_is_stopped_and_counted_as_a_harness_failure(tmp_path: Path) -> None:
    site = FlakySite(hang=True)
    try:
        # The page never answers and the browser would wait 120 s for it; the episode may take 5 s.
        url_task(tmp_path, "hangs", site.url, "ready", action_timeout_ms=120_000)
        suite = tmp_path / "suite.yaml"
        suite.write_text("name: slow\ntasks: [hangs.yaml]\nlimits: {retries: 0, timeout_s: 5}\n", encoding="utf-8")
        outcome = run_eval(load_suite(suite), runs_dir=tmp_path / "runs")
    finally:
        site.close()
    [result] = outcome.results
    assert (result.status, result.harness_attempts) == ("harness_error", 1)
    assert result.harness_errors[0].startswith("timeout: the episode ran past 5 s and its worker was stopped")


def test_ray_refuses_a_cluster_without_the_gpus_a_local_model_needs(tmp_path: Path) -> None:
    try:
        import ray
    except ImportError as exc:
        print(f"SKIP reason: Ray is not installed ({exc}); pip install 'glassbox[eval]'")
        pytest.skip(f"Ray is not installed: {exc}")
    from evals.runner import EvalUsageError

    suite = load_suite(shop_suite(tmp_path, [1], gpus_per_episode=1))
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(EvalUsageError, match=r"each episode needs 1 GPU\(s\) \(a local model\), but the Ray cluster has 0"):
            run_eval(suite, runs_dir=tmp_path / "runs", engine="ray")
        assert ray.is_initialized()  # the caller's Ray is left as it was
    finally:
        ray.shutdown()
    assert not (tmp_path / "runs" / "evals").exists()  # nothing ran, no eval folder was started


def test_an_episode_whose_setup_fails_is_a_harness_failure_retried_unless_its_script_does_not_parse(tmp_path: Path) -> None:
    # The page never gets ready (setup's wait runs out): nothing the agent did, so the eval retries it.
    (tmp_path / "page.html").write_text("<p>never ready</p>", encoding="utf-8")
    (tmp_path / "never.yaml").write_text(
        "name: never-ready\ngoal: Wait.\ntarget: {start_url: 'file:page.html'}\n"
        "setup:\n  - {wait_for: {js: 'window.ready === true'}, timeout_ms: 300}\n"
        "script:\n  - {action: terminate, status: success}\n",
        encoding="utf-8",
    )
    # A setup script that does not parse is the task file's fault: it would fail the same way again, so once.
    (tmp_path / "typo.yaml").write_text(
        "name: typo\ngoal: Wait.\ntarget: {start_url: 'file:page.html'}\n"
        "setup:\n  - {js: 'window.ready = (('}\n"
        "script:\n  - {action: terminate, status: success}\n",
        encoding="utf-8",
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: setup\ntasks: [never.yaml, typo.yaml]\nlimits: {retries: 1, timeout_s: 120, workers: 1}\n", encoding="utf-8"
    )
    outcome = run_eval(load_suite(suite), runs_dir=tmp_path / "runs")
    by_task = {r.task_name: r for r in outcome.results}
    result = by_task["never-ready"]
    assert (result.status, result.harness_attempts) == ("harness_error", 2), result
    assert all(e.startswith("setup failed: setup[0].wait_for:") for e in result.harness_errors)
    typo = by_task["typo"]
    assert (typo.status, typo.harness_attempts) == ("harness_error", 1), typo
    assert typo.harness_errors[0].startswith("setup failed: setup[0].js: the script threw: SyntaxError"), typo
    assert outcome.summary.harness_errors == 2 and outcome.summary.success.n == 0


def test_a_worker_that_dies_says_why_and_the_folder_the_eval_started_in_is_not_on_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evals.worker import stop_all

    (tmp_path / "click.py").write_text("raise RuntimeError('BOOM from a stray click.py')\n", encoding="utf-8")
    (tmp_path / "page.html").write_text("<p>ready</p>", encoding="utf-8")
    (tmp_path / "done.yaml").write_text(
        "name: done\ngoal: Finish.\ntarget: {start_url: 'file:page.html'}\nscript:\n  - {action: terminate, status: success}\n",
        encoding="utf-8",
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: path\ntasks: [done.yaml]\nlimits: {retries: 0, timeout_s: 120, workers: 1}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # a stray module in the folder the eval is started from shadows nothing
    stop_all()  # workers started by earlier tests were started elsewhere
    (first,) = run_eval(load_suite(suite), runs_dir=tmp_path / "runs").results
    assert first.status == "succeeded", first
    stop_all()
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # put there on purpose: the worker dies at import, and says why
    (second,) = run_eval(load_suite(suite), runs_dir=tmp_path / "runs2").results
    stop_all()
    assert second.status == "harness_error", second
    assert "exited with code 1 without a result" in second.harness_errors[0]
    assert "BOOM from a stray click.py" in second.harness_errors[0], second.harness_errors


def test_kill_stops_an_eval_as_ctrl_c_does_and_says_how_to_resume(tmp_path: Path) -> None:
    """SIGTERM (`kill`, a job scheduler's stop) ended the eval with -15 and no word of how to resume."""
    runs = tmp_path / "runs"
    args = [str(shop_suite(tmp_path, [1, 2])), "--workers", "1", "--runs-dir", str(runs), "--eval-id", "eval-term"]
    events = runs / "evals" / "eval-term" / EPISODES_FILE
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "eval", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while '"event":"started"' not in (events.read_text(encoding="utf-8") if events.is_file() else ""):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "no episode started within 300 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    said = " ".join(err.split())
    assert process.returncode == 130, said
    assert "interrupted: the episodes that had finished are kept; resume with glassbox eval" in said
    assert "--eval-id eval-term" in said
