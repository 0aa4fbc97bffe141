"""The output parser: every real shape, the usual damage, and thousands of random damages without an exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.parse import parse_output, split_reasoning
from tools.actions import ActionError, parse_tool_call

CALL = '{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [183, 524]}}'

SHAPES = [
    # (name, raw output, expected reasoning, expected arguments)
    ("cookbook instruct", f"<tool_call>\n{CALL}\n</tool_call>", "", {"action": "left_click", "coordinate": [183, 524]}),
    (
        "thinking, closing tag only",
        f"The third issue is at (183, 524).\n</think>\n\n<tool_call>\n{CALL}\n</tool_call>",
        "The third issue is at (183, 524).",
        {"action": "left_click", "coordinate": [183, 524]},
    ),
    ("think block", f"<think>\nlook\n</think>\n\n<tool_call>\n{CALL}\n</tool_call>", "look", None),
    ("thought/action prefix", f'Thought: click it.\nAction: "click"\n<tool_call>\n{CALL}\n</tool_call>\n', "", None),
    ("code fence", f"<tool_call>\n```json\n{CALL}\n```\n</tool_call>", "", None),
    ("fence without tags", f"```json\n{CALL}\n```", "", None),
    ("trailing text", f"<tool_call>{CALL}</tool_call> I clicked the issue.", "", None),
    ("trailing text inside", f"<tool_call>{CALL} done</tool_call>", "", None),
    ("missing closing tag", f"<tool_call>\n{CALL}", "", None),
    ("missing final brace", "<tool_call>\n" + CALL[:-1], "", None),
    ("single quotes", "<tool_call>" + CALL.replace('"', "'") + "</tool_call>", "", None),
    (
        "arguments as string",
        '<tool_call>{"name": "computer_use", "arguments": "{\\"action\\": \\"left_click\\", '
        '\\"coordinate\\": [183, 524]}"}</tool_call>',
        "",
        None,
    ),
    ("chinese reasoning", f"第三个问题在左侧。\n</think>\n<tool_call>\n{CALL}\n</tool_call>", "第三个问题在左侧。", None),
]


@pytest.mark.parametrize("name, raw, reasoning, arguments", SHAPES, ids=[s[0] for s in SHAPES])
def test_real_shapes_parse_to_the_action(name, raw, reasoning, arguments):
    parsed = parse_output(raw)
    assert parsed.error is None, parsed.error
    assert parsed.reasoning == reasoning
    [call] = parsed.tool_calls
    action = parse_tool_call(call)
    assert action.action == "left_click" and action.coordinate == [183.0, 524.0]
    if arguments:
        assert call.arguments == arguments


def test_several_tool_calls():
    raw = (
        f"<tool_call>\n{CALL}\n</tool_call>\n<tool_call>\n"
        '{"name": "computer_use", "arguments": {"action": "type", "text": "lamp"}}\n</tool_call>'
    )
    assert [c.arguments["action"] for c in parse_output(raw).tool_calls] == ["left_click", "type"]


def test_openai_tool_calls_and_reasoning_fields():
    calls = [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "computer_use", "arguments": json.dumps({"action": "key", "keys": ["enter"]})},
        },
        {"function": {"name": "computer_use", "arguments": {"action": "wait"}}},
    ]
    parsed = parse_output("", server_reasoning="Press enter to submit.", server_tool_calls=calls)
    assert parsed.reasoning == "Press enter to submit."
    assert [c.arguments for c in parsed.tool_calls] == [{"action": "key", "keys": ["enter"]}, {"action": "wait"}]


def test_coordinates_are_never_read_from_the_reasoning():
    parsed = parse_output(f"<think>I will call {CALL}</think>\nI am not sure what to do.")
    assert parsed.tool_calls == [] and "no <tool_call>" in parsed.error
    parsed = parse_output("The button is at [183, 524] so I click left_click there.")
    assert parsed.tool_calls == [] and parsed.error


def test_errors_say_what_is_wrong():
    assert "only reasoning" in parse_output("<think>still thinking about the form").error
    assert "malformed JSON" in parse_output("<tool_call>{nope: ]</tool_call>").error
    assert "no 'arguments'" in parse_output('<tool_call>{"name": "computer_use"}</tool_call>').error
    assert "no 'name'" in parse_output('<tool_call>{"arguments": {}}</tool_call>').error
    with pytest.raises(ActionError, match="unknown computer_use action"):
        parse_tool_call(
            parse_output('<tool_call>{"name": "computer_use", "arguments": {"action": "fly"}}</tool_call>').tool_calls[0]
        )


def test_split_reasoning_shapes():
    assert split_reasoning("a</think>b") == ("a", "b")
    assert split_reasoning("<think>a</think>b") == ("a", "b")
    assert split_reasoning("x<think>a") == ("a", "x")
    assert split_reasoning("b", server_reasoning="r") == ("r", "b")


_pieces = st.sampled_from(
    [
        "<tool_call>",
        "</tool_call>",
        "<think>",
        "</think>",
        "{",
        "}",
        "[",
        "]",
        '"',
        "'",
        ":",
        ",",
        "\n",
        "```",
        "```json",
        CALL,
        '"name"',
        '"arguments"',
        '"action"',
        '"left_click"',
        '"coordinate"',
        "183",
        "-5",
        "1e309",
        "NaN",
        "null",
        "true",
        "\\",
        "\\u",
        "不",
        "\x00",
        " ",
    ]
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_pieces, max_size=30), st.text(max_size=40), st.integers(0, len(CALL)))
def test_damaged_outputs_never_raise(pieces, noise, cut):
    raw = "".join(pieces) + noise + "<tool_call>" + CALL[:cut]
    parsed = parse_output(raw)
    assert (parsed.error is None) == bool(parsed.tool_calls)
    for call in parsed.tool_calls:
        try:
            parse_tool_call(call)
        except ActionError:
            pass  # a structured error the loop records


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text):
    parsed = parse_output(text, server_reasoning=text[:10] or None)
    assert isinstance(parsed.reasoning, str)
