"""The action space, coordinate mapping and key names (no browser needed)."""

from __future__ import annotations

import pytest

from tools.actions import ActionError, LeftClick, ToolCall, parse_tool_call
from tools.coords import CoordinateMode, from_css, to_css
from tools.keys import playwright_chord


def call(**arguments):
    return ToolCall(name="computer_use", arguments=arguments)


def test_every_computer_use_action_validates():
    samples = [
        call(action="key", keys=["ctrl", "a"]),
        call(action="type", text="hi"),
        call(action="mouse_move", coordinate=[1, 2]),
        call(action="left_click", coordinate=[1, 2]),
        call(action="left_click_drag", coordinate=[1, 2]),
        call(action="right_click", coordinate=[1, 2]),
        call(action="middle_click", coordinate=[1, 2]),
        call(action="double_click", coordinate=[1, 2]),
        call(action="triple_click", coordinate=[1, 2]),
        call(action="scroll", pixels=-300),
        call(action="hscroll", pixels=100, coordinate=[5, 5]),
        call(action="wait", time=0.5),
        call(action="terminate", status="failure"),
        call(action="answer", text="42"),
        ToolCall(name="upload_file", arguments={"file": "img", "coordinate": [3, 4]}),
        ToolCall(name="goto_url", arguments={"url": "http://127.0.0.1/x"}),
    ]
    names = [parse_tool_call(c).action for c in samples]
    assert names == [
        "key",
        "type",
        "mouse_move",
        "left_click",
        "left_click_drag",
        "right_click",
        "middle_click",
        "double_click",
        "triple_click",
        "scroll",
        "hscroll",
        "wait",
        "terminate",
        "answer",
        "upload_file",
        "goto_url",
    ]


@pytest.mark.parametrize(
    "bad, message",
    [
        (call(action="fly"), "unknown computer_use action 'fly'"),
        (call(), "needs an 'action' argument"),
        (call(action="left_click"), "coordinate: Field required"),
        (call(action="left_click", coordinate=[1]), "coordinate"),
        (call(action="left_click", coordinate=["a", "b"]), "coordinate"),
        (call(action="terminate", status="done"), "status"),
        (call(action="type", text="x", extra=1), "extra: Extra inputs are not permitted"),
        (ToolCall(name="browser", arguments={}), "unknown tool 'browser'"),
    ],
)
def test_bad_tool_calls_say_what_is_wrong(bad, message):
    with pytest.raises(ActionError) as info:
        parse_tool_call(bad)
    assert message in str(info.value)


def test_browser_tools_can_be_withheld():
    with pytest.raises(ActionError, match="not available in this task"):
        parse_tool_call(ToolCall(name="goto_url", arguments={"url": "http://x"}), browser_tools=("upload_file",))


def test_round_trip_to_tool_call():
    action = parse_tool_call(ToolCall(name="upload_file", arguments={"file": "img", "coordinate": [3, 4]}))
    assert action.to_tool_call() == ToolCall(name="upload_file", arguments={"file": "img", "coordinate": [3.0, 4.0]})
    click = LeftClick(action="left_click", coordinate=[10, 20])
    assert click.to_tool_call().arguments == {"action": "left_click", "coordinate": [10.0, 20.0]}


def test_relative_coordinates_map_to_css_pixels():
    audit = to_css([500, 250], css_size=(1280, 800))
    assert audit.css == (640, 200) and not audit.clamped
    assert to_css([1000, 1000], css_size=(1280, 800)).css == (1279, 799)
    clamped = to_css([1200, -5], css_size=(1280, 800))
    assert clamped.css == (1279, 0) and clamped.clamped


def test_divisor_is_a_setting():
    assert to_css([999, 999], css_size=(1000, 1000), divisor=999).css == (999, 999)
    assert to_css([999, 999], css_size=(1000, 1000), divisor=1000).css == (999, 999)
    assert to_css([499.5, 0], css_size=(1000, 1000), divisor=999).css == (500, 0)


def test_device_scale_factor_is_recorded_and_does_not_change_css_point():
    audit = to_css([500, 500], css_size=(1280, 800), device_scale_factor=2)
    assert audit.css == (640, 400)
    assert audit.screenshot_size == (2560, 1600)


def test_absolute_mode_uses_the_resized_image():
    audit = to_css([640, 400], css_size=(1280, 800), mode=CoordinateMode.absolute, resized_size=(1280, 800))
    assert audit.css == (640, 400)
    half = to_css([320, 200], css_size=(1280, 800), mode=CoordinateMode.absolute, resized_size=(640, 400))
    assert half.css == (640, 400)
    with pytest.raises(ValueError, match="resized image"):
        to_css([1, 1], css_size=(10, 10), mode=CoordinateMode.absolute)


def test_from_css_inverts_to_css_within_a_pixel():
    for x in range(0, 1280, 37):
        rel = from_css((x, 799 - x % 800), css_size=(1280, 800))
        back = to_css(rel, css_size=(1280, 800)).css
        assert abs(back[0] - x) <= 1 and abs(back[1] - (799 - x % 800)) <= 1


def test_key_names():
    assert playwright_chord(["ctrl", "a"]) == "Control+a"
    assert playwright_chord(["Return"]) == "Enter"
    assert playwright_chord(["ctrl+shift+t"]) == "Control+Shift+t"
    assert playwright_chord(["esc"]) == "Escape"
    with pytest.raises(ActionError, match="unknown key name 'hyper'"):
        playwright_chord(["hyper"])
