"""The OpenAI-compatible backend against a local chat-completions server on 127.0.0.1.

The server is a test double (named as such): it records requests and answers with canned responses in
the shapes real servers send (tool call as text, ``tool_calls``, separate ``reasoning`` /
``reasoning_content``), plus failures to exercise retries.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from datetime import datetime, timezone

import pytest

from agent.backends.base import BackendError, resolve_sampling
from agent.backends.openai import OpenAIBackend
from agent.prompt import build_prompt
from agent.qwen_policy import QwenPolicy
from agent.task import load_task
from tests.conftest import TASKS
from tests.servers import LocalServer, QuietHandler
from tools.actions import parse_tool_call
from tools.views import Observation

CALL = {"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [183, 524]}}
TEXT = "<tool_call>\n" + json.dumps(CALL) + "\n</tool_call>"
# A Thinking model's whole answer when the server splits nothing off: its reasoning ends with </think>
# (without it the output was cut off mid-reasoning and nothing in it is acted on).
THOUGHT = "The lamp form is open.\n</think>\n\n" + TEXT


class FakeChatServer(LocalServer):
    """Test double for an OpenAI-compatible server (vLLM / SGLang): queue responses, read requests back."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.responses: deque[tuple[int, dict, dict]] = deque()
        outer = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.read_body())
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, payload, headers = outer.responses.popleft()
                self.reply_json(status, payload, headers)

        super().__init__(Handler, path="/v1")
        self.start()

    def answer(self, message: dict, *, status: int = 200, logprobs: dict | None = None, headers: dict | None = None) -> None:
        choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}
        if logprobs:
            choice["logprobs"] = logprobs
        payload = (
            {"choices": [choice], "usage": {"prompt_tokens": 1234, "completion_tokens": 42}}
            if status == 200
            else {"error": "busy"}
        )
        self.responses.append((status, payload, headers or {}))


@pytest.fixture
def server():
    s = FakeChatServer()
    yield s
    s.close()


def obs() -> Observation:
    return Observation(
        screenshot_png=b"\x89PNG-bytes",
        screenshot_size=(1280, 800),
        css_size=(1280, 800),
        device_scale_factor=1.0,
        taken_at=datetime.now(timezone.utc),
    )


def policy_for(server, model="qwen3-vl-8b-thinking", **settings) -> tuple[QwenPolicy, object]:
    task = load_task(TASKS / "publish_product.yaml")
    for k, v in settings.items():
        setattr(task.policy, k, v)
    return QwenPolicy(OpenAIBackend(server.url, model, retries=3), task), task


def test_request_shape(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    server.answer({"content": THOUGHT})
    policy, task = policy_for(server, seed=11)
    out = policy.decide(task, [], obs())
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test-123"
    body = request["body"]
    assert body["model"] == "qwen3-vl-8b-thinking"
    assert (body["temperature"], body["top_p"], body["top_k"], body["presence_penalty"]) == (0.6, 0.95, 20, 0.0)
    assert body["seed"] == 11 and body["logprobs"] is True and body["max_tokens"] == 1024
    system, user = body["messages"]
    assert system["role"] == "system" and "# Tools" in system["content"] and "1000x1000" in system["content"]
    image, text = user["content"]
    assert image["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(b"\x89PNG-bytes").decode()
    assert text["text"].startswith("The user query:") and "<secret>password</secret>" in text["text"]
    assert "Xq7-tulip-4821" not in json.dumps(body)
    assert parse_tool_call(out.decision.tool_calls[0]).coordinate == [183.0, 524.0]
    decision = out.decision
    assert out.trace.token_counts.prompt == 1234
    assert decision.confidence is None and "no log-probabilities" in decision.confidence_reason


def test_instruct_defaults_and_overrides(server):
    server.answer({"content": TEXT})
    policy, task = policy_for(server, model="Qwen3-VL-8B-Instruct", top_k=5)
    policy.decide(task, [], obs())
    body = server.requests[0]["body"]
    assert (body["temperature"], body["top_p"], body["top_k"], body["presence_penalty"]) == (0.7, 0.8, 5, 1.5)


@pytest.mark.parametrize(
    "message, reasoning",
    [
        ({"content": "The issue is third.\n</think>\n\n" + TEXT}, "The issue is third."),
        (
            {
                "content": None,
                "reasoning_content": "old vLLM field",
                "tool_calls": [
                    {
                        "id": "1",
                        "type": "function",
                        "function": {"name": "computer_use", "arguments": json.dumps(CALL["arguments"])},
                    }
                ],
            },
            "old vLLM field",
        ),
        ({"content": TEXT, "reasoning": "new vLLM field"}, "new vLLM field"),
        (
            {
                "content": "",
                "reasoning": "both",
                "reasoning_content": "both",
                "tool_calls": [{"function": {"name": "computer_use", "arguments": CALL["arguments"]}}],
            },
            "both",
        ),
    ],
)
def test_the_response_shapes(server, message, reasoning):
    server.answer(message)
    policy, task = policy_for(server)
    out = policy.decide(task, [], obs())
    assert out.decision.parse_error is None
    assert out.trace.reasoning == reasoning
    assert parse_tool_call(out.decision.tool_calls[0]).coordinate == [183.0, 524.0]
    assert reasoning in out.trace.raw_output


def test_logprobs_give_a_confidence(server):
    pieces = [
        "Click",
        " it",
        ".",
        "\n",
        "</think>",
        "\n\n",
        "<tool_call>",
        "\n",
        '{"name": "computer_use", "arguments": {"action": "',
        "left",
        "_click",
        '", "coordinate": [',
        "183",
        ", ",
        "524",
        "]}}",
        "\n",
        "</tool_call>",
    ]
    lp = {"<tool_call>": -0.01, "left": -0.2, "_click": -0.2, "183": -1.0, "524": -1.0}
    server.answer({"content": "".join(pieces)}, logprobs={"content": [{"token": p, "logprob": lp.get(p, -0.05)} for p in pieces]})
    policy, task = policy_for(server)
    out = policy.decide(task, [], obs())
    assert out.decision.confidence_parts["action_name"] == pytest.approx(0.818731, abs=1e-5)
    assert out.decision.confidence_parts["coordinate"] == pytest.approx(0.367879, abs=1e-5)
    assert 0.36 < out.decision.confidence < 0.82


def test_retries_on_429_and_5xx_then_succeeds(server):
    server.answer({}, status=429, headers={"Retry-After": "0"})
    server.answer({}, status=503)
    server.answer({"content": THOUGHT})
    policy, task = policy_for(server)
    out = policy.decide(task, [], obs())
    assert len(server.requests) == 3 and out.decision.parse_error is None


def test_gives_up_with_a_recorded_error(server):
    for _ in range(4):
        server.answer({}, status=500)
    policy, task = policy_for(server)
    out = policy.decide(task, [], obs())
    decision = out.decision
    assert "failed after 4 attempts" in (decision.backend_error or "")
    assert decision.parse_error is None and decision.tool_calls == []
    server.answer({}, status=400)
    with pytest.raises(BackendError, match="refused the request"):
        OpenAIBackend(server.url, "m").generate(
            build_prompt(task, [], b"x"), resolve_sampling({}, thinking=False, max_new_tokens=8, seed=None), step=0
        )


def test_temperature_zero_repeats_come_from_the_cache(server):
    server.answer({"content": THOUGHT})
    policy, task = policy_for(server, temperature=0.0)
    first = policy.decide(task, [], obs())
    second = policy.decide(task, [], obs())
    assert len(server.requests) == 1 and first.trace.cache_hit is False and second.trace.cache_hit is True
    assert second.decision.tool_calls == first.decision.tool_calls


def test_a_prompt_built_elsewhere_is_asked_every_time(server):
    """glassbox decide asks about a recorded step's prompt: even at temperature 0 it never comes from the cache,
    and it does not fill the cache a run's own decide reads."""
    server.answer({"content": THOUGHT})
    server.answer({"content": THOUGHT})
    server.answer({"content": THOUGHT})
    policy, task = policy_for(server, temperature=0.0)
    prompt = build_prompt(task, [], obs().screenshot_png)
    asked = [policy.decide_prompt(prompt, step=0) for _ in range(2)]
    from_run = policy.decide(task, [], obs())
    assert len(server.requests) == 3 and [o.trace.cache_hit for o in [*asked, from_run]] == [False, False, False]


def test_a_server_that_does_not_answer_is_waited_on_only_until_the_runs_deadline():
    """A request is cut to the run's time left, and nothing is sent again past it (a 120 s timeout tried five
    times held a 300 s run for ten minutes)."""
    import threading
    import time

    from tests.servers import LocalServer, QuietHandler

    seen: list[float] = []
    release = threading.Event()

    class Silent(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.read_body()
            seen.append(time.monotonic())
            release.wait(30)  # never answers while the test runs

    silent = LocalServer(Silent, path="/v1")
    silent.start()
    try:
        task = load_task(TASKS / "publish_product.yaml")
        policy = QwenPolicy(OpenAIBackend(silent.url, "qwen3-vl-8b-thinking", retries=4, timeout_s=20), task)
        policy.deadline = time.monotonic() + 1.0
        out = policy.decide(task, [], obs())
    finally:
        release.set()
        silent.close()
    error = out.decision.backend_error or ""
    assert "time budget ran out while waiting for" in error and "ReadTimeout" in error, error
    assert len(seen) == 1  # not sent again past the deadline


def test_an_answer_far_past_max_tokens_is_cut_and_said_so(server):
    """5 MB of "reasoning" for a 1024-token limit would go into steps.jsonl twice and into the viewer page."""
    server.answer({"content": "x" * 5_000_000 + THOUGHT})
    policy, task = policy_for(server, max_new_tokens=1024)
    out = policy.decide(task, [], obs())
    assert len(out.trace.raw_output or "") <= 32 * 1024
    assert out.decision.tool_calls == []  # what came after the cut is not acted on
    assert "ran far past what 1024 tokens can hold, so Glassbox kept its first 32768 characters" in (
        out.decision.parse_error or ""
    ), out.decision.parse_error


def served_run(server, tmp_path):  # type: ignore[no-untyped-def]
    """The bundled task run by the openai policy against ``server`` on the fake executor (no Chromium)."""
    from agent.loop import run_task
    from tools.fake import FakeExecutor

    task = load_task(TASKS / "publish_product.yaml")
    return run_task(
        task,
        policy="openai",
        runs_dir=tmp_path / "runs",
        policy_overrides={"base_url": server.url, "model": "qwen3-vl-8b-thinking"},
        executor=FakeExecutor(secrets=task.secret_values()),
    )


def test_the_recorded_task_names_the_policy_that_ran(server, tmp_path):
    """run.json's task section said `policy.name: script` (the file's) beside the --base-url and --model of the
    openai policy that ran."""
    from tracer.store import read_run

    terminate = {"name": "computer_use", "arguments": {"action": "terminate", "status": "success"}}
    server.answer({"content": "Done.\n</think>\n\n<tool_call>\n" + json.dumps(terminate) + "\n</tool_call>"})
    result = served_run(server, tmp_path)
    record = read_run(result.run_dir)
    assert record.policy == "openai" and record.task["policy"]["name"] == "openai"
    assert record.task["policy"]["base_url"] == server.url


def test_a_refused_api_key_ends_the_run_at_once(server, tmp_path, monkeypatch):
    """401 is not retried, and asking again at the next step would be refused the same way: the run ends, saying
    which variable the key came from (and never the key, which the server's answer may echo)."""
    from tracer.store import read_run

    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-4711")
    server.answer({}, status=401)
    server.responses[-1] = (401, {"error": "invalid key sk-wrong-4711"}, {})
    result = served_run(server, tmp_path)
    assert len(server.requests) == 1 and result.steps == 1
    assert result.end_reason.startswith("the model cannot be asked: the model backend failed: ")
    assert "refused the API key from $OPENAI_API_KEY" in result.end_reason
    assert "sk-wrong-4711" not in (tmp_path / "runs" / result.run_id / "run.json").read_text()
    assert read_run(result.run_dir).end_reason == result.end_reason


def test_a_thinking_answer_that_stopped_without_closing_its_reasoning_is_not_called_cut_off(server):
    """finish_reason "stop" without </think>: nothing was cut; the tag is missing (template, parser or a model that
    does not think). Said so, with what to do, rather than "cut off"."""
    server.answer({"content": "I will click the lamp. " + TEXT})  # a Thinking model's answer with no </think>
    policy, task = policy_for(server)
    error = policy.decide(task, [], obs()).decision.parse_error or ""
    assert "without </think> although the model stopped on its own" in error and "policy.thinking: false" in error
    assert "cut off" not in error


def test_a_redirect_is_not_followed_and_names_where_it_points(server):
    server.responses.append((307, {}, {"Location": "http://elsewhere.invalid/v1/chat/completions"}))
    policy, task = policy_for(server)
    error = policy.decide(task, [], obs()).decision.backend_error or ""
    assert "redirects to 'http://elsewhere.invalid/v1/chat/completions' (HTTP 307), which is not followed" in error, error
    assert len(server.requests) == 1
