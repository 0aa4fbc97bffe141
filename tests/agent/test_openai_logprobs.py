"""Confidence from a served model's log-probabilities, in every shape vLLM answers.

vLLM's ``logprobs.content`` covers the whole generation (reasoning, ``</think>``, the raw ``<tool_call>``
text) whatever its reasoning and tool parsers move out of ``content``. The server here is a test double
shaped like vLLM's chat-completions endpoint (a real HTTP server on 127.0.0.1, OS-assigned port): it
answers with recorded generations split the way vLLM splits them with its parsers on or off.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import pytest

from agent.backends.openai import OpenAIBackend
from agent.parse import CUT_OFF
from agent.qwen_policy import QwenPolicy
from agent.task import load_task
from tests.agent.test_openai_backend import FakeChatServer
from tests.conftest import TASKS
from tools.actions import parse_tool_call
from tools.views import Observation

THINKING, INSTRUCT = "Qwen/Qwen3-VL-8B-Thinking", "Qwen/Qwen3-VL-8B-Instruct"
# The reasoning names the same action and coordinate as the call, at other log-probabilities: scoring
# the reasoning's tokens by mistake changes the figure.
REASONING = [
    "The",
    " username",
    " field",
    " is",
    " top",
    " left",
    ";",
    " I",
    " will",
    " left",
    "_click",
    " at",
    " [",
    "183",
    ",",
    " ",
    "524",
    "].",
    "\n",
]
CALL = [
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
CALL_LP = {"left": -0.2, "_click": -0.2, "183": -1.0, "524": -1.0}
ARGS = {"action": "left_click", "coordinate": [183, 524]}
EXPECTED = {
    "value": round(math.exp((-0.2 - 0.2 - 1.0 - 1.0) / 4), 6),
    "action_name": round(math.exp(-0.2), 6),
    "coordinate": round(math.exp(-1.0), 6),
}


def entries(reasoning: list[str], call: list[str], *, with_bytes: bool = False) -> list[dict[str, Any]]:
    """logprobs.content for reasoning + </think> + the call, as vLLM reports it (reasoning at -3.0)."""
    pieces = [(t, -3.0) for t in reasoning] + ([("</think>", -0.01), ("\n\n", -0.02)] if reasoning else [])
    pieces += [(t, CALL_LP.get(t, -0.05)) for t in call]
    out = []
    for token, lp in pieces:
        entry: dict[str, Any] = {"token": token, "logprob": lp, "top_logprobs": []}
        if with_bytes:
            entry["bytes"] = list(token.encode())
        out.append(entry)
    return out


def hermes(args: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": "chatcmpl-tool-1", "type": "function", "function": {"name": "computer_use", "arguments": json.dumps(args)}}]


class VllmShapedServer(FakeChatServer):
    """The shared fake chat server answering as vLLM does: log-probs for the whole generation, hermes tool calls."""

    def answer(self, message: dict[str, Any], logprobs: list[dict[str, Any]], finish: str = "stop") -> None:  # type: ignore[override]
        self.responses.append(
            (
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "tool_calls": [], **message},
                            "logprobs": {"content": logprobs},
                            "finish_reason": finish,
                            "stop_reason": None,
                        }
                    ],
                    "usage": {"prompt_tokens": 1500, "completion_tokens": len(logprobs), "total_tokens": 1500 + len(logprobs)},
                },
                {},
            )
        )


@pytest.fixture
def server():
    s = VllmShapedServer()
    yield s
    s.close()


def decide(server: VllmShapedServer, model: str) -> Any:
    task = load_task(TASKS / "publish_product.yaml")
    policy = QwenPolicy(OpenAIBackend(server.url, model, retries=0), task)
    observation = Observation(
        screenshot_png=b"\x89PNG",
        screenshot_size=(1280, 800),
        css_size=(1280, 800),
        device_scale_factor=1.0,
        taken_at=datetime.now(timezone.utc),
    )
    out = policy.decide(task, [], observation)
    assert server.requests[-1]["body"]["logprobs"] is True
    return out


def reasoning_text() -> str:
    return "".join(REASONING)


SHAPES = {
    # vLLM --reasoning-parser deepseek_r1 --tool-call-parser hermes (current field name)
    "parsers on": ({"content": None, "reasoning": reasoning_text(), "tool_calls": hermes(ARGS)}, THINKING, True),
    # the same with the field older vLLM releases used
    "parsers on, reasoning_content": (
        {"content": "", "reasoning_content": reasoning_text(), "tool_calls": hermes(ARGS)},
        THINKING,
        True,
    ),
    # reasoning parser on, tool parser off: the call stays in content as text
    "reasoning parser only": ({"content": "\n\n" + "".join(CALL), "reasoning": reasoning_text()}, THINKING, True),
    # parsers off: everything in content
    "parsers off": ({"content": reasoning_text() + "</think>\n\n" + "".join(CALL)}, THINKING, True),
    # an Instruct model: a content-only answer, no reasoning at all
    "content only": ({"content": "".join(CALL)}, INSTRUCT, False),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_confidence_works_in_every_server_shape(server, shape):
    message, model, thinks = SHAPES[shape]
    server.answer(message, entries(REASONING if thinks else [], CALL))
    out = decide(server, model)
    assert out.decision.parse_error is None
    actions = [parse_tool_call(c).model_dump() for c in out.decision.tool_calls]
    assert actions == [{"action": "left_click", "coordinate": [183.0, 524.0]}]
    assert out.trace.reasoning == (reasoning_text().strip() if thinks else "")
    assert out.decision.confidence is not None, out.decision.confidence_reason
    assert out.decision.confidence == pytest.approx(EXPECTED["value"], abs=1e-6)
    assert out.decision.confidence_parts == pytest.approx(
        {"action_name": EXPECTED["action_name"], "coordinate": EXPECTED["coordinate"]}, abs=1e-6
    )


def test_utf8_bytes_split_across_tokens_still_line_up(server):
    # A Chinese character split over two tokens: vLLM's token strings hold replacement characters, the
    # bytes hold the truth; the whole generation decodes to the real text.
    reasoning = [
        {"token": "第", "logprob": -3.0, "bytes": list("第".encode())},
        {"token": "\ufffd", "logprob": -3.0, "bytes": list("三".encode()[:2])},
        {"token": "\ufffd", "logprob": -3.0, "bytes": list("三".encode()[2:])},
        {"token": "个", "logprob": -3.0, "bytes": list("个".encode())},
    ]
    logprobs = reasoning + entries([], ["</think>", "\n\n"] + CALL, with_bytes=True)
    server.answer({"content": None, "reasoning": "第三个", "tool_calls": hermes(ARGS)}, logprobs)
    out = decide(server, THINKING)
    assert out.trace.reasoning == "第三个" and out.decision.confidence == pytest.approx(EXPECTED["value"], abs=1e-6)


def test_each_of_several_calls_gets_its_own_confidence(server):
    second = [
        "<tool_call>",
        '{"name": "computer_use", "arguments": {"action": "',
        "type",
        '", "text": "',
        "admin",
        '"}}',
        "</tool_call>",
    ]
    logprobs = entries(REASONING, CALL + ["\n"] + second)
    for e in logprobs[-7:]:
        e["logprob"] = {"type": -0.5, "admin": -0.1}.get(e["token"], -0.05)
    server.answer(
        {
            "content": None,
            "reasoning": reasoning_text(),
            "tool_calls": hermes(ARGS) + hermes({"action": "type", "text": "admin"}),
        },
        logprobs,
    )
    out = decide(server, THINKING)
    assert [c.arguments["action"] for c in out.decision.tool_calls] == ["left_click", "type"]
    assert out.decision.confidence == pytest.approx(EXPECTED["value"], abs=1e-6)
    first, other = out.decision.call_confidence
    assert first.value == out.decision.confidence
    assert other.parts == pytest.approx({"action_name": math.exp(-0.5), "text": math.exp(-0.1)}, abs=1e-6)
    assert other.value == pytest.approx(math.exp((-0.5 - 0.1) / 2), abs=1e-6)


def test_a_cut_off_thought_has_no_confidence_and_never_acts(server):
    drafted = REASONING + CALL  # the model drafted a call inside reasoning it never finished
    server.answer({"content": "".join(drafted)}, [{"token": t, "logprob": -0.1} for t in drafted], finish="length")
    out = decide(server, THINKING)
    assert out.decision.tool_calls == [] and out.decision.parse_error == CUT_OFF + " (generation stopped at the 1024-token limit)"
    assert out.decision.confidence is None and out.decision.confidence_reason


@pytest.mark.parametrize(
    "logprobs, reason",
    [
        ([{"token": "<tool_call>", "logprob": float("nan")}], "not log-probabilities"),
        ([{"token": "<tool_call>", "logprob": 0.5}], "not log-probabilities"),
        ([{"token": 7, "logprob": -0.1}], "tokens that are not text"),
        (["<tool_call>"], "not a list of token entries"),
    ],
)
def test_malformed_log_probabilities_are_a_reason_not_a_crash(server, logprobs, reason):
    server.answer({"content": "".join(CALL)}, logprobs)
    out = decide(server, INSTRUCT)
    assert out.decision.parse_error is None and out.decision.confidence is None and reason in out.decision.confidence_reason


def test_log_probabilities_of_another_call_give_no_confidence(server):
    """A server (or a proxy) whose log-probabilities spell another call than the one it answered: scoring them would
    put a high confidence on a click that was never scored."""
    other = ["543" if t == "183" else t for t in CALL]  # the tokens say (543, 524); the answer says (183, 524)
    server.answer({"content": None, "reasoning": reasoning_text(), "tool_calls": hermes(ARGS)}, entries(REASONING, other))
    out = decide(server, THINKING)
    assert [parse_tool_call(c).model_dump() for c in out.decision.tool_calls] == [
        {"action": "left_click", "coordinate": [183.0, 524.0]}
    ]
    assert out.decision.confidence is None
    assert out.decision.confidence_reason == "the log-probabilities spell another tool call than the one acted on"
