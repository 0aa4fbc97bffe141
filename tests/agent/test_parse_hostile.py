"""Model output is hostile input: the parser is total, linear and never acts on reasoning; the loop refuses
coordinates off the grid and runs several tool calls in order, each as its own step, stopping at the first error.

The loop tests drive the real loop, the real QwenPolicy and parser, real Chromium and the bundled shop; only
the model is a test double (``RecordedModel``: recorded raw outputs, since no weights can run here).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agent.parse as parse_module
from agent import load_task, run_task
from agent.backends.base import Backend, Generation, Sampling
from agent.confidence import tool_call_spans
from agent.parse import CUT_OFF, coordinate_error, parse_output
from agent.prompt import Prompt
from agent.qwen_policy import QwenPolicy
from tests.conftest import TASKS
from tools.coords import CoordinateMode, from_css
from tracer import read_run, read_steps

CALL = '{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [183, 524]}}'
TAGGED = f"<tool_call>\n{CALL}\n</tool_call>"
MB = 1_000_000


def call(action: str, **args: Any) -> str:
    return "<tool_call>\n" + json.dumps({"name": "computer_use", "arguments": {"action": action, **args}}) + "\n</tool_call>"


# -- total ------------------------------------------------------------------------------------------------

_json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_anything = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=50),
    st.none(),
    st.integers(),
    st.floats(),
    st.lists(st.text(max_size=5), max_size=3),
    _json_like,
    st.just(bytearray(b"<tool_call>")),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_anything, st.one_of(st.none(), _anything), st.one_of(st.none(), _anything), st.booleans())
def test_parse_is_total_on_any_input(text, reasoning, tool_calls, thinking):
    parsed = parse_output(text, server_reasoning=reasoning, server_tool_calls=tool_calls, thinking=thinking)
    assert (parsed.error is None) == bool(parsed.tool_calls)
    assert isinstance(parsed.reasoning, str) and isinstance(parsed.answer, str)
    for c in parsed.tool_calls:
        json.dumps(c.model_dump(), allow_nan=False)  # every call can be recorded as plain JSON


@pytest.mark.parametrize(
    "value, kind",
    [
        (b"<tool_call>{}</tool_call>", "bytes"),
        (42, "int"),
        (3.5, "float"),
        (["<tool_call>"], "list"),
        ({"content": TAGGED}, "dict"),
        (object(), "object"),
    ],
)
def test_non_text_output_is_a_clear_parse_error(value, kind):
    parsed = parse_output(value)
    assert parsed.tool_calls == [] and parsed.error == f"the model output is {kind}, not text, and cannot be parsed"


def test_none_is_an_empty_output_and_server_shapes_are_checked():
    assert parse_output(None).error == "the output is empty"
    assert parse_output("", server_tool_calls={"function": {}}).error == "the server's tool_calls is dict, not a list"
    assert parse_output(TAGGED, server_reasoning=7).error == "the server's reasoning is int, not text"
    bad = parse_output("", server_tool_calls=["x", {"function": {"name": "computer_use", "arguments": "[1"}}])
    assert bad.error == "a tool_calls entry is not an object; the arguments of 'computer_use' are a string that is not JSON"


@pytest.mark.parametrize(
    "raw, problem",
    [
        ("<tool_call>{'name': 'computer_use', 'arguments': {'action': {1, 2}}}</tool_call>", "a set value"),
        ("<tool_call>{'name': 'computer_use', 'arguments': {1: 'left_click'}}</tool_call>", "an argument name is not a string"),
        ("<tool_call>{'name': 'computer_use', 'arguments': {'text': b'x'}}</tool_call>", "a bytes value"),
        ('<tool_call>{"name": "computer_use", "arguments": {"pixels": Infinity}}</tool_call>', "a number is not finite"),
        ('<tool_call>{"name": "computer_use", "arguments": ' + "[" * 80 + "]" * 80 + "}</tool_call>", None),
    ],
)
def test_python_literals_that_are_not_json_are_refused(raw, problem):
    parsed = parse_output(raw)
    assert parsed.tool_calls == []
    if problem:
        assert parsed.error == f"the arguments of 'computer_use' are not plain JSON: {problem}"


def test_json_names_inside_strings_survive_the_python_literal_repair():
    parsed = parse_output(
        "<tool_call>{'name': 'computer_use', 'arguments': {'action': 'type', 'text': 'untrue null'}, 'x': true}</tool_call>"
    )
    assert parsed.tool_calls[0].arguments == {"action": "type", "text": "untrue null"}


def test_too_many_calls_in_one_output_are_refused_as_a_whole():
    parsed = parse_output(call("wait") * 17)
    assert parsed.tool_calls == [] and parsed.error == "the output holds more than 16 tool calls; give one call per answer"
    assert len(parse_output(call("wait") * 16).tool_calls) == 16


# -- never acts on reasoning -------------------------------------------------------------------------------

_drafts = st.lists(
    st.sampled_from(
        [
            TAGGED,
            CALL,
            "<tool_call>",
            "</tool_call>",
            "<think>",
            "{",
            "}",
            "\n",
            " ",
            "x",
            call("type", text="draft"),
            "```json\n",
            "```",
        ]
    ),
    max_size=12,
)


@settings(max_examples=800, deadline=None)
@given(_drafts, st.text(max_size=60))
def test_a_thinking_output_without_its_closing_tag_never_acts(pieces, noise):
    raw = "".join(pieces) + noise.replace("</think>", "")
    parsed = parse_output(raw, thinking=True)
    assert parsed.tool_calls == [] and parsed.cut_off and parsed.error == CUT_OFF
    assert parse_output(raw, thinking=True, server_tool_calls=None).answer == ""


@settings(max_examples=800, deadline=None)
@given(_drafts, _drafts, st.booleans())
def test_nothing_after_an_unclosed_think_block_is_acted_on(answer, drafted, thinking):
    head = "Done.\n</think>\n" if thinking else ""
    before = "".join(answer).replace("<think>", "")
    alone = parse_output(head + before, thinking=thinking)
    with_draft = parse_output(head + before + "<think>" + "".join(drafted), thinking=thinking)
    assert with_draft.tool_calls == alone.tool_calls
    if not alone.tool_calls:  # the same complaint about the answer, or that the reasoning never ended
        assert with_draft.error in (alone.error, CUT_OFF)


def test_the_shapes_of_thinking_and_instruct_outputs():
    closing_only = parse_output(f"The field is at the top.\n</think>\n\n{TAGGED}", thinking=True)
    assert closing_only.reasoning == "The field is at the top." and len(closing_only.tool_calls) == 1
    both_tags = parse_output(f"<think>\nlook\n</think>\n\n{TAGGED}", thinking=True)
    assert both_tags.reasoning == "look" and len(both_tags.tool_calls) == 1
    assert len(parse_output(TAGGED, thinking=False).tool_calls) == 1  # an Instruct model has no think block
    cut = parse_output(f"The field is at the top, so I will answer {TAGGED}", thinking=True)
    assert cut.tool_calls == [] and cut.error == CUT_OFF and cut.reasoning.endswith("</tool_call>")
    # A server with a reasoning parser split the reasoning off: the content is the answer.
    split = parse_output(TAGGED, server_reasoning="\n", thinking=True)
    assert len(split.tool_calls) == 1
    drafted = parse_output("", server_reasoning=f"maybe {TAGGED}", thinking=True)
    assert drafted.tool_calls == [] and drafted.error == "the output holds only reasoning and no <tool_call>"


def test_tool_call_spans_ignore_unfinished_reasoning():
    assert tool_call_spans(f"I will {TAGGED}", thinking=True).action_name == []
    text = f"<tool_call>{CALL}</tool_call><think>{TAGGED}"
    spans = tool_call_spans(text)
    assert len(spans.action_name) == 1 and spans.action_name[0][1] < text.index("<think>")
    assert tool_call_spans(text, 1).action_name == []


# -- linear ------------------------------------------------------------------------------------------------

HOSTILE = {
    "call padded with newlines": ("<tool_call>\n" + CALL + "\n" * MB + "</tool_call>", 1),
    "call padded with spaces in a fence": ("<tool_call>```json\n" + CALL + " " * MB + "```</tool_call>", 1),
    "whitespace before a call": (" \n\t" * (MB // 3) + TAGGED, 1),
    "junk": ("x<y" * (MB // 3), 0),
    "opening tags": ("<tool_call>" * (MB // 11), 0),
    "opening tags and braces": ("<tool_call>{" * (MB // 12), 0),
    "closing tags": ("</tool_call>" * (MB // 12), 0),
    "braces": ("{" * MB, 0),
    "unclosed quote": ("<tool_call>{" + "'" * MB, 0),
    "name keys": ('{"name" ' * (MB // 8), 0),
    "name keys far from a brace": ("{" + " " * MB + '"name": "computer_use"}', 0),
    "think tags": ("<think>" * (MB // 7), 0),
    "python literal": ("<tool_call>{'name': 'x', 'arguments': {'a': [" + "1, " * (MB // 3) + "]}}", 0),
    "backslashes": ('<tool_call>{"' + "\\" * MB, 0),
    "fences": ("```" * (MB // 3), 0),
}


def _line_events(fn: Callable[[], object]) -> int:
    """Python lines run inside agent/parse.py: linear parsing does its per-character work in C."""
    count = 0
    target = parse_module.__file__

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if frame.f_code.co_filename != target:
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_megabyte_outputs_parse_in_linear_time(name):
    raw, calls = HOSTILE[name]
    assert len(raw) >= MB - 20
    for thinking in (False, True):
        text = ("Reasoning.\n</think>\n" + raw) if thinking else raw
        parsed = parse_output(text, thinking=thinking)
        assert len(parsed.tool_calls) == calls and (parsed.error is None) == bool(calls)
    # The Python-level work does not grow with the input: the same line count for 1 MB as for 10 kB
    # (give or take the bounded repair and error bookkeeping).
    small = _line_events(lambda: parse_output(raw[: len(raw) // 100]))
    big = _line_events(lambda: parse_output(raw))
    assert big <= 2 * small + 3000, (small, big)
    # Regex backtracking runs in C, out of the tracer's sight: a generous wall-clock bound catches it
    # (the quadratic version took 2.2 s on 40 k newlines and did not finish 1 MB; this takes milliseconds).
    started = time.perf_counter()
    parse_output(raw)
    assert time.perf_counter() - started < 1.0


def test_confidence_spans_of_a_megabyte_output_are_linear():
    text = (
        "Reasoning.\n</think>\n<tool_call>"
        + '{"name": "computer_use", "arguments": {"action": "type", "text": "'
        + "a" * MB
        + '"}}</tool_call>'
    )
    started = time.perf_counter()
    spans = tool_call_spans(text)
    assert spans.text and spans.text[0][1] - spans.text[0][0] == MB
    assert time.perf_counter() - started < 1.0  # generous: it takes milliseconds


# -- coordinates off the grid --------------------------------------------------------------------------------


def test_coordinates_outside_the_grid_are_refused():
    rel = {"mode": CoordinateMode.relative_1000, "divisor": 1000.0, "css_size": (1280, 800)}
    assert coordinate_error([0, 1000], **rel) is None and coordinate_error([1000, 0], **rel) is None
    assert coordinate_error([1000.5, 10], **rel) == (
        "the coordinate [1000.5, 10] is outside the 0..1000 grid (x and y must each be between 0 and 1000); nothing was done"
    )
    assert coordinate_error([10, -1], **rel) is not None
    assert coordinate_error([500, 500], mode=CoordinateMode.relative_1000, divisor=999.0, css_size=(1, 1)) is None
    assert coordinate_error([1000, 10], mode=CoordinateMode.relative_1000, divisor=999.0, css_size=(1, 1)) is not None
    ab = {"mode": CoordinateMode.absolute, "divisor": 1000.0, "css_size": (1280, 800)}
    assert coordinate_error([1280, 800], **ab) is None
    assert coordinate_error([1281, 5], **ab) == (
        "the coordinate [1281, 5] is outside the 1280x800 screenshot (x from 0 to 1280, y from 0 to 800); nothing was done"
    )
    assert coordinate_error(None, **ab) is None


# -- the loop: several calls in order, errors stop them, the model is told ----------------------------------


class RecordedModel(Backend):
    """Test double for model weights (none can run here): answers each prompt with the next recorded raw
    output. An entry may be a function of the page, to aim at a field the way a model would."""

    name = "recorded"

    def __init__(self, outputs: list[str | Callable[[], str]], *, thinking: bool) -> None:
        self.model = "recorded-qwen3-vl-" + ("thinking" if thinking else "instruct")
        self.thinking = thinking
        self.outputs = list(outputs)
        self.prompts: list[Prompt] = []

    def generate(
        self, prompt: Prompt, sampling: Sampling, *, step: int, attention: bool = False, deadline: float | None = None
    ) -> Generation:
        self.prompts.append(prompt)
        entry = self.outputs.pop(0)
        text = entry() if callable(entry) else entry
        return Generation(text=text, logprobs_reason="a recorded output has no log-probabilities")


class Shop:
    """The bundled shop's login page as the test sees it through the run's own browser."""

    def __init__(self) -> None:
        self.browser: Any = None
        self.values: list[str] = []

    def username_at(self) -> list[int]:
        box = self.browser.page.locator("#username").bounding_box()
        center = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        return from_css(center, css_size=self.browser.settings.viewport)

    def username(self) -> str:
        return self.browser.page.input_value("#username")


def run_recorded(
    tmp_path: Path, outputs: list[str | Callable[[], str]], *, thinking: bool, shop: Shop, max_steps: int = 6
) -> tuple[Path, RecordedModel]:
    task = load_task(TASKS / "publish_product.yaml")
    task = task.model_copy(
        update={"limits": task.limits.model_copy(update={"max_steps": max_steps, "max_consecutive_errors": 3})}
    )
    model = RecordedModel(outputs, thinking=thinking)

    def factory(task: Any, browser: Any) -> QwenPolicy:
        shop.browser = browser
        return QwenPolicy(model, task)

    result = run_task(task, runs_dir=tmp_path / "runs", policy_factory=factory)
    return result.run_dir, model


def prompt_text(prompt: Prompt) -> str:
    return "\n".join(m.text() for m in prompt.messages)


@pytest.mark.usefixtures("chromium")
def test_two_tool_calls_in_one_output_run_in_order_as_two_steps(tmp_path):
    shop = Shop()

    def two_calls() -> str:
        shop.values.append(shop.username())
        return (
            "The username field is empty.\n</think>\n\n"
            + call("left_click", coordinate=shop.username_at())
            + "\n"
            + call("type", text="-two-calls")
        )

    def finish() -> str:
        shop.values.append(shop.username())
        return "Typed.\n</think>\n\n" + call("terminate", status="failure")

    run_dir, model = run_recorded(tmp_path, [two_calls, finish], thinking=True, shop=shop)
    steps = read_steps(run_dir)
    assert [s.action.action for s in steps] == ["left_click", "type", "terminate"]
    assert [(s.call_index, s.calls_in_output) for s in steps] == [(0, 2), (1, 2), (0, 1)]
    assert [s.outcome for s in steps] == ["ok", "ok", "ok"]
    assert steps[0].element is not None and steps[0].element.tag == "input"
    assert shop.values[1] == shop.values[0] + "-two-calls"  # clicked into the field, then typed there, in that order
    assert len(model.prompts) == 2  # the second call ran without asking the model again
    first, second = steps[0], steps[1]
    assert second.raw_output == first.raw_output and second.reasoning == first.reasoning == "The username field is empty."
    assert [c.arguments["action"] for c in first.tool_calls] == ["left_click"]
    assert [c.arguments["action"] for c in second.tool_calls] == ["type"]
    assert second.prompt is not None and second.prompt[1].images == [first.screenshot]  # what the model was shown
    assert second.screenshot != first.screenshot  # the screen the second call acted on
    assert "step 0" in second.unavailable["token_counts"]
    assert read_run(run_dir).summary.model_calls == 2


@pytest.mark.usefixtures("chromium")
def test_a_cut_off_thought_and_an_off_grid_call_are_error_steps_fed_back(tmp_path):
    shop = Shop()

    def drafted() -> str:  # cut off mid-reasoning: the drafted calls must not run
        shop.values.append(shop.username())
        return (
            "I should click the username field at "
            + call("left_click", coordinate=shop.username_at())
            + " and then type "
            + call("type", text="drafted")
        )

    def off_grid() -> str:
        shop.values.append(shop.username())
        return "Click far right.\n</think>\n\n" + call("left_click", coordinate=[1200, 300]) + call("type", text="after-an-error")

    def finish() -> str:
        shop.values.append(shop.username())
        return "Stop.\n</think>\n\n" + call("terminate", status="failure")

    run_dir, model = run_recorded(tmp_path, [drafted, off_grid, finish], thinking=True, shop=shop)
    steps = read_steps(run_dir)
    assert len(steps) == 3 and len(model.prompts) == 3
    cut, grid, end = steps
    assert cut.outcome == "error" and cut.error_kind == "parse" and cut.error == CUT_OFF
    assert cut.action is None and cut.tool_calls == [] and cut.calls_in_output == 0
    assert "I should click the username field" in cut.reasoning
    assert grid.outcome == "error" and grid.error_kind == "action" and grid.action is None
    assert grid.error == (
        "the coordinate [1200, 300] is outside the 0..1000 grid (x and y must each be between 0 and 1000); nothing was done"
    )
    assert (grid.call_index, grid.calls_in_output) == (0, 2) and grid.coordinate is None
    assert grid.tool_calls[0].arguments["coordinate"] == [1200, 300]
    assert (
        end.action is not None and end.action.model_dump() == {"action": "terminate", "status": "failure"} and end.call_index == 0
    )  # the 2nd call never ran
    assert shop.values[0] == shop.values[1] == shop.values[2]  # nothing was typed
    assert CUT_OFF in prompt_text(model.prompts[1])  # each error is fed back to the model on its next turn
    assert grid.error in prompt_text(model.prompts[2])


def test_true_and_false_are_no_coordinates() -> None:
    """JSON booleans are ints to pydantic: [true, false] was clicked at pixel (1, 0) and the step recorded as ok."""
    from tools.actions import ActionError, ToolCall, parse_tool_call

    with pytest.raises(ActionError, match="not true/false"):
        parse_tool_call(ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [True, False]}))
    assert parse_tool_call(ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [1, 0]}))
