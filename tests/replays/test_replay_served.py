"""Resume and replay-with-fallback of a served-model run from the viewer, against a real OpenAI-compatible server on
127.0.0.1: the recorded server and model are used again, and the page asks only for the missing API key, which
reaches the server and no file.

The server is a test double (named as such): ``RecordedAnswers`` answers each chat request with the next tool call
of a queue, taken from the bundled task's recorded script run, and refuses requests without the expected key. The
decisions are its answers, recorded as the served model's (policy ``openai``, model ``recorded-answers``).
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from collections import deque
from pathlib import Path

import pytest

from agent import load_task, run_task
from replays.policy_plan import plan_policy
from tests.conftest import TASKS, copy_bundled_run
from tests.servers import LocalServer, QuietHandler
from tools.browser import BrowserExecutor, BrowserSettings
from tracer import RunStatus, read_run, read_steps

pytestmark = pytest.mark.usefixtures("chromium")
KEY_ENV = "GLASSBOX_TEST_SERVED_KEY"
MODEL = "recorded-answers"


class RecordedAnswers(LocalServer):
    """Test double for a served model (vLLM / SGLang speak this API): answers tool calls from a queue."""

    def __init__(self, key: str, *, echo_key: bool = False) -> None:
        self.key = key
        self.echo_key = echo_key  # a refusal names the key it got, as some proxies do
        self.answers: deque[dict] = deque()
        self.requests: list[dict] = []
        outer = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.read_body())
                outer.requests.append({"path": self.path, "authorization": self.headers.get("Authorization"), "body": body})
                if self.headers.get("Authorization") != f"Bearer {outer.key}":
                    got = f": {self.headers.get('Authorization')}" if outer.echo_key else ""
                    status, payload = 401, {"error": {"message": f"invalid API key{got}"}}
                elif not outer.answers:
                    status, payload = 500, {"error": {"message": "the test queued no more answers"}}
                else:
                    text = "<tool_call>\n" + json.dumps(outer.answers.popleft()) + "\n</tool_call>"
                    message = {"role": "assistant", "content": text}
                    status = 200
                    payload = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": {}}
                self.reply_json(status, payload)

        super().__init__(Handler, path="/v1")
        self.start()

    def queue(self, calls: list[dict]) -> None:
        self.answers.clear()
        self.answers.extend(calls)


@pytest.fixture(scope="module")
def served(tmp_path_factory, bundled_run):
    """A runs dir with a run of the bundled task decided by the served model (the server answering with the
    script run's tool calls), recorded with the key in the environment; the key is unset afterwards."""
    runs = tmp_path_factory.mktemp("served") / "runs"
    script = copy_bundled_run(bundled_run, runs)
    calls = [s.tool_calls[0].model_dump(mode="json") for s in read_steps(script.run_dir)]
    key = "sk-test-" + secrets.token_hex(16)
    server = RecordedAnswers(key)
    server.queue(calls)
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, key)
    try:
        result = run_task(
            load_task(TASKS / "publish_product.yaml"),
            runs_dir=runs,
            policy="openai",
            policy_overrides={"base_url": server.url, "model": MODEL, "api_key_env": KEY_ENV},
        )
    finally:
        mp.undo()
    assert result.status is RunStatus.succeeded, result.end_reason
    yield runs, result, server, calls, key
    server.close()


def files_holding(root: Path, text: str) -> list[Path]:
    needle = text.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_plan_reuses_the_recorded_server_and_model_and_asks_only_for_the_key(served, monkeypatch):
    runs, result, server, _, key = served
    run, steps = read_run(result.run_dir), read_steps(result.run_dir)
    assert run.policy == "openai" and run.model == MODEL
    monkeypatch.delenv(KEY_ENV, raising=False)
    plan = plan_policy(run, steps)
    assert (plan.policy, plan.base_url, plan.model, plan.api_key_env) == ("openai", server.url, MODEL, KEY_ENV)
    assert plan.missing == ["api_key"] and f"${KEY_ENV} is not set" in plan.message()
    assert plan_policy(run, steps, key_answered=True).missing == []
    monkeypatch.setenv(KEY_ENV, key)
    assert plan_policy(run, steps).missing == [] and plan_policy(run, steps).api_key_set
    # A run that recorded no server and model (an old or hand-made folder) asks for them too.
    bare = run.model_copy(update={"task": {**run.task, "policy": {"name": "openai"}}})
    assert plan_policy(bare, steps, environ={}).missing == ["base_url", "model", "api_key"]
    assert plan_policy(bare, steps, environ={"OPENAI_API_KEY": "k"}).missing == ["base_url", "model"]
    assert (
        plan_policy(bare, steps, base_url="http://127.0.0.1:1/v1", model="m").overrides()["base_url"] == "http://127.0.0.1:1/v1"
    )
    # A local model's recorded folder is reused; with none recorded, the form asks for it.
    local = run.model_copy(update={"policy": "qwen3vl", "task": {**run.task, "policy": {"name": "qwen3vl", "model": "/m/tiny"}}})
    assert plan_policy(local, steps).overrides() == {"model": "/m/tiny"} and plan_policy(local, steps).missing == []
    nothing = local.model_copy(update={"task": {**run.task, "policy": {"name": "qwen3vl"}}})
    assert plan_policy(nothing, steps).missing == ["model"]


def test_resume_from_the_page_asks_for_the_missing_key_and_the_server_gets_it(served, monkeypatch):
    from replays.viewer import ViewerServer

    runs, result, server, calls, key = served
    monkeypatch.delenv(KEY_ENV, raising=False)  # the viewer's environment has no key: the form must ask
    resume_at = 3
    server.queue(calls[resume_at:])
    asked = len(server.requests)
    with ViewerServer(runs) as viewer, BrowserExecutor(BrowserSettings()) as browser:
        page = browser.page
        page.goto(f"{viewer.url}/runs/{result.run_id}")
        page.click(f"#film-{resume_at}")
        page.click("#resume-btn")
        dialog = page.locator("#replay-form")
        dialog.wait_for(state="visible")
        assert page.inner_text("#rf-title") == f"Resume from step {resume_at}"
        assert page.inner_text("#rf-server") == server.url and page.inner_text("#rf-model") == MODEL
        assert f"${KEY_ENV} is not set" in page.inner_text("#rf-key")
        # Only the key is asked for: the recorded server and model need no input.
        assert page.is_visible("#rf-api-key") and not page.is_visible("#rf-base-url") and not page.is_visible("#rf-model-input")
        page.fill("#rf-api-key", key)
        page.click("#rf-start")
        # The new run's page: the original's URL matches "**/runs/*" too, and its status is already final.
        page.wait_for_url(lambda url: "/runs/" in url and result.run_id not in url, timeout=60_000)
        page.wait_for_function(
            "['succeeded', 'failed', 'interrupted'].includes(document.getElementById('run-status')?.textContent)",
            timeout=180_000,
        )
        assert page.inner_text("#run-status") == "succeeded", page.inner_text(".run-head")
        new_id = page.url.rsplit("/", 1)[-1].split("#")[0]
        assert "Compare with the original" in page.inner_text(".run-head")
    new_dir = runs / new_id
    run, steps = read_run(new_dir), read_steps(new_dir)
    assert run.parent_run == result.run_id and run.parent_step == resume_at
    assert run.task["policy"]["base_url"] == server.url and run.task["policy"]["model"] == MODEL
    assert [s.policy for s in steps[:resume_at]] == ["replay"] * resume_at
    assert {s.policy for s in steps[resume_at:]} == {"openai"} and {s.model for s in steps[resume_at:]} == {MODEL}
    after = server.requests[asked:]
    assert len(after) == len(steps) - resume_at  # one request per step the served model decided
    assert all(r["authorization"] == f"Bearer {key}" and r["body"]["model"] == MODEL for r in after)
    # The key reached the server and nothing else: no file of any run, no log, no stderr file of the viewer.
    assert files_holding(runs, key) == []
    assert [p for d in Path(tempfile.gettempdir()).glob("glassbox-viewer-*") for p in files_holding(d, key)] == []


def test_replay_with_fallback_uses_the_key_from_the_environment_without_asking(served, monkeypatch):
    from replays.viewer import ViewerServer

    runs, result, server, calls, key = served
    monkeypatch.setenv(KEY_ENV, key)
    with ViewerServer(runs) as viewer, BrowserExecutor(BrowserSettings()) as browser:
        page = browser.page
        page.goto(f"{viewer.url}/runs/{result.run_id}")
        page.click("#replay-fb-btn")
        page.locator("#replay-form").wait_for(state="visible")  # a served model: where it goes is shown first
        assert f"from ${KEY_ENV} (set here)" in page.inner_text("#rf-key")
        assert not page.is_visible("#rf-api-key") and not page.is_visible("#rf-base-url")
        asked = len(server.requests)
        page.click("#rf-start")
        # The new run's page: the original's URL matches "**/runs/*" too, and its status is already final.
        page.wait_for_url(lambda url: "/runs/" in url and result.run_id not in url, timeout=60_000)
        page.wait_for_function(
            "['succeeded', 'failed', 'interrupted'].includes(document.getElementById('run-status')?.textContent)",
            timeout=180_000,
        )
        assert page.inner_text("#run-status") == "succeeded", page.inner_text(".run-head")
    assert len(server.requests) == asked  # the same screens: every step replayed, the served model never asked
    assert files_holding(runs, key) == []


def test_a_missing_key_is_refused_by_name_and_a_failed_start_is_a_styled_page_with_a_way_back(served, monkeypatch):
    import httpx

    from replays.viewer import ViewerServer

    runs, result, server, _, key = served
    monkeypatch.delenv(KEY_ENV, raising=False)
    record = json.loads((result.run_dir / "run.json").read_text())
    moved = runs / "served-moved-task"
    moved.mkdir(exist_ok=True)
    (moved / "run.json").write_text(json.dumps({**record, "run_id": moved.name, "task_file": "/moved/away.yaml"}))
    (moved / "steps.jsonl").write_text((result.run_dir / "steps.jsonl").read_text())
    with ViewerServer(runs) as viewer, httpx.Client(base_url=viewer.url, timeout=60) as client:
        own = {"Origin": viewer.url, "X-Glassbox-Token": viewer.token}
        plan = client.get(f"/api/runs/{result.run_id}/replay-plan", params={"fallback": "policy"}).json()
        assert plan["served"] and plan["base_url"] == server.url and plan["missing"] == ["api_key"]
        refused = client.post(f"/api/runs/{result.run_id}/replay", json={"from_step": 2}, headers=own)
        assert refused.status_code == 422 and refused.json()["missing"] == ["api_key"]
        assert f"${KEY_ENV} is not set" in refused.json()["error"]
        started = client.post(f"/api/runs/{moved.name}/replay", json={"from_step": 2, "api_key": key}, headers=own)
        assert started.status_code == 202
        wait = started.json()["url"]
        for _ in range(600):
            page = client.get(wait, headers={"Accept": "text/html"})
            if page.status_code != 200:
                break
            assert "Starting" in page.text and "/static/viewer.css" in page.text
            time.sleep(0.1)  # polling, as the page itself does (it refreshes every 0.5 s)
        assert page.status_code == 422
        assert "could not start" in page.text and "a replay needs the task file" in page.text
        assert "/static/viewer.css" in page.text and f'href="/runs/{moved.name}">Back to {moved.name}' in page.text
    assert files_holding(runs, key) == []


def test_a_key_a_server_echoes_in_a_refusal_is_masked_in_the_error_a_step_records(monkeypatch):
    from agent.backends.base import BackendError
    from agent.backends.openai import OpenAIBackend

    key = "sk-test-" + secrets.token_hex(16)
    server = RecordedAnswers("another key", echo_key=True)  # refuses ours, and says which key it got
    try:
        monkeypatch.setenv(KEY_ENV, key)
        backend = OpenAIBackend(server.url, MODEL, api_key_env=KEY_ENV, retries=0)
        with pytest.raises(BackendError) as caught:
            backend._post({"model": MODEL, "messages": []})
        assert "401" in str(caught.value) and "invalid API key: Bearer ●●●●" in str(caught.value) and key not in str(caught.value)
    finally:
        server.close()
