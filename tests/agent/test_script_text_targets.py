"""A desktop script's text targets: found by OCR (a stub locator here), clicked at the line's centre, recorded."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from agent.policies import PolicyUnavailable, check_policy, make_policy, uses_text_targets_by_ocr
from agent.script_policy import ScriptPolicy
from agent.task import TaskError, load_task, parse_task
from tests.conftest import TASKS
from tools.ocr_locate import TextMatch, TextNotFound
from tools.views import Observation


def observation(scale: float = 1.0) -> Observation:
    return Observation(
        screenshot_png=b"the screenshot",
        screenshot_size=(round(1024 * scale), round(768 * scale)),
        css_size=(1024, 768),
        device_scale_factor=scale,
        url=None,
        title="Visitor registration",
        taken_at=datetime.now(timezone.utc),
    )


def no_element_tree(target: object) -> None:
    raise AssertionError("a desktop text target must not reach the element-tree locator")


def test_a_text_target_clicks_the_centre_of_the_line_found_and_records_it() -> None:
    task = load_task(TASKS / "desktop_form_ocr.yaml")
    asked: list[tuple[str, bytes]] = []

    def locate_text(text: str, png: bytes) -> TextMatch:
        asked.append((text, png))
        return TextMatch(engine="stub", text=text, match="exact", line="Full name", box=(27, 80, 119, 104), score=0.99)

    policy = ScriptPolicy(task, no_element_tree, locate_text=locate_text)
    output = policy.decide(task, [], observation())
    assert asked == [("Full name", b"the screenshot")]
    [call] = output.decision.tool_calls
    assert call.arguments == {"action": "left_click", "coordinate": [71, 120]}  # (73, 92) of 1024x768 on 0..1000
    assert output.decision.policy_state == {
        "script_step": 0,
        "target": {
            "by": "ocr",
            "engine": "stub",
            "text": "Full name",
            "match": "exact",
            "line": "Full name",
            "box": (27, 80, 119, 104),
            "score": 0.99,
            "ocr_ms": 0.0,
        },
    }
    assert output.trace.reasoning == "Script step 1/9: Focus the full name field"
    # a HiDPI screenshot: the box is in screenshot pixels, the grid is over CSS pixels
    hidpi = policy.decide(task, [], observation(scale=2.0))
    assert hidpi.decision.tool_calls[0].arguments["coordinate"] == [36, 60]


def test_a_text_not_on_the_screen_is_an_error_step_naming_it() -> None:
    task = load_task(TASKS / "desktop_form_ocr.yaml")

    def locate_text(text: str, png: bytes) -> TextMatch:
        raise TextNotFound(f"no text on the screen reads {text!r}: OCR (stub) read 2 line(s); the closest: 'Ful name'")

    output = ScriptPolicy(task, no_element_tree, locate_text=locate_text).decide(task, [], observation())
    assert output.decision.tool_calls == []
    assert output.decision.target_error == (
        "Script step 1/9: no text on the screen reads 'Full name': OCR (stub) read 2 line(s); the closest: 'Ful name'"
    )


def test_desktop_targets_other_than_text_are_refused() -> None:
    text = (TASKS / "desktop_form_ocr.yaml").read_text()
    with pytest.raises(TaskError, match="no element tree to find selector in"):
        parse_task(text.replace("target: {text: Full name}", "target: {selector: '#name'}"))
    with pytest.raises(TaskError, match="no element tree to find role in"):
        parse_task(text.replace("target: {text: Full name}", "target: {text: Full name, role: button}"))
    assert uses_text_targets_by_ocr(parse_task(text))
    assert not uses_text_targets_by_ocr(load_task(TASKS / "desktop_form.yaml"))


def test_without_the_ocr_engine_the_run_is_refused_before_it_starts(monkeypatch) -> None:
    task = load_task(TASKS / "desktop_form_ocr.yaml")
    monkeypatch.setattr("tools.ocr.ocr_available", lambda name: "the rapidocr package is not installed (stub)")
    with pytest.raises(PolicyUnavailable, match="finds its script's text targets on the desktop by OCR: the rapidocr"):
        check_policy("script", task)
    check_policy("script", load_task(TASKS / "desktop_form.yaml"))  # coordinates need no OCR


def test_make_policy_uses_the_tasks_ocr_engine(monkeypatch) -> None:
    task = load_task(TASKS / "desktop_form_ocr.yaml")
    made: list[str] = []

    class Stub:
        name = "stub"

    def get_engine(name: str) -> Stub:
        made.append(name)
        return Stub()

    monkeypatch.setattr("tools.ocr.get_engine", get_engine)
    monkeypatch.setattr("tools.ocr.ocr_available", lambda name: None)
    policy = make_policy("script", task, object())  # type: ignore[arg-type]  # a desktop: no page abilities
    assert isinstance(policy, ScriptPolicy) and made == ["rapidocr"]


def test_a_text_target_with_at_clicks_there_on_the_line_found() -> None:
    text = (TASKS / "desktop_form_ocr.yaml").read_text(encoding="utf-8")
    task = parse_task(text.replace("target: {text: Full name}", "target: {text: Full name, at: [0.0, 1.0]}", 1))

    def locate_text(text: str, png: bytes) -> TextMatch:
        return TextMatch(engine="stub", text=text, match="exact", line="Full name", box=(27, 80, 119, 104), score=0.99)

    output = ScriptPolicy(task, no_element_tree, locate_text=locate_text).decide(task, [], observation())
    assert output.decision.tool_calls[0].arguments["coordinate"] == [26, 135]  # (27, 104) of 1024x768 on 0..1000
