"""Step records as the code before typed actions wrote them still load, typed, and write back unchanged (new
fields only add their empty defaults)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.prompt import describe_step
from replays.diff import describe
from tools.actions import DoubleClick, GotoUrl, Key, LeftClick, Scroll, Terminate, ToolCall, Type, Wait
from tracer.graph import run_graph
from tracer.schema import RunRecord, RunStatus, StepErrorKind, StepRecord
from tracer.store import read_steps

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "steps_schema2.jsonl"  # see fixtures/SOURCES.md
LINES = FIXTURE.read_bytes().splitlines()


def _without_new_empty_fields(written: object, original: object) -> object:
    """``written`` less the keys ``original`` lacks whose value is empty: fields added later (e.g.
    ``timings.settle_ms``, ``blocked_tabs_more``) write their default into an old record, and nothing else may
    change."""
    if isinstance(written, dict) and isinstance(original, dict):
        return {
            k: _without_new_empty_fields(v, original.get(k))
            for k, v in written.items()
            if k in original or v not in (None, [], {}, 0)
        }
    return written


@pytest.mark.parametrize("number", range(len(LINES)))
def test_a_recorded_step_loads_and_writes_back_unchanged(number: int) -> None:
    step = StepRecord.model_validate_json(LINES[number])
    original = json.loads(LINES[number])
    written = json.loads(step.model_dump_json())
    assert _without_new_empty_fields(written, original) == original
    assert list(written)[: len(original)] == list(original)  # the same fields in the same order


def test_the_loaded_steps_hold_typed_actions_tool_calls_and_error_kinds(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "steps.jsonl")
    steps = read_steps(tmp_path)
    assert [type(s.action) for s in steps] == [
        LeftClick,
        Type,
        Key,
        Key,
        Scroll,
        Wait,
        GotoUrl,
        type(None),  # held back by a gate
        DoubleClick,
        Terminate,
    ]
    click, typed, failed, _, scroll, wait, goto, skipped, _, end = steps
    assert isinstance(click.action, LeftClick) and click.action.coordinate == [500.0, 500.0]
    assert isinstance(typed.action, Type) and typed.action.text == "<secret>password</secret>"
    assert isinstance(scroll.action, Scroll) and (scroll.action.pixels, scroll.action.coordinate) == (-5, None)
    assert isinstance(wait.action, Wait) and wait.action.time == 0.1
    assert isinstance(goto.action, GotoUrl) and goto.action.url == "http://fake.invalid/done"
    assert isinstance(end.action, Terminate) and end.action.status == "success"
    assert all(isinstance(c, ToolCall) for s in steps for c in s.tool_calls)
    assert click.tool_calls == [ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [500, 500]})]
    assert goto.tool_calls[0].name == "goto_url"
    assert failed.error_kind is StepErrorKind.executor and failed.error == "no field has focus"
    assert [s.error_kind for s in steps if s is not failed] == [None] * 9
    assert skipped.gate is not None and isinstance(skipped.gate.model_action, DoubleClick)
    assert skipped.gate.model_action.coordinate == [10.0, 20.0]


def test_an_error_kind_is_recorded_as_its_value_and_read_from_it() -> None:
    step = StepRecord.model_validate_json(LINES[2])
    assert json.loads(step.model_dump_json())["error_kind"] == "executor"
    assert step.error_kind == "executor"  # a str enum: old comparisons keep working
    assert [k.value for k in StepErrorKind] == ["parse", "backend", "action", "executor", "low_confidence", "diverged"]
    bad = LINES[2].replace(b'"error_kind":"executor"', b'"error_kind":"gremlins"')
    with pytest.raises(ValueError, match="error_kind"):
        StepRecord.model_validate_json(bad)


def test_readers_describe_every_recorded_action_including_a_scroll_without_a_point() -> None:
    steps = [StepRecord.model_validate_json(line) for line in LINES]
    # The scroll has no coordinate: the readers used to index a None there (a TypeError in the prompt's history).
    assert describe_step(steps[4]) == 'scroll {"pixels": -5}'
    assert describe(steps[4]) == "scroll by -5 px"  # words, not a dict (the diff page and `glassbox diff` show it)
    assert describe_step(steps[0]) == "left_click at (500, 500)"
    assert describe_step(steps[2]) == "key ctrl+a -> error: no field has focus"
    assert describe_step(steps[7]) == "double_click at (10, 20) -> not performed: guard skipped it (not now)"
    assert describe_step(steps[9]) == 'terminate {"status": "success"}'
    run = RunRecord.model_validate(
        {
            "run_id": "r",
            "task_name": "fake-task",
            "task_file": None,
            "task": {},
            "policy": "script",
            "status": RunStatus.succeeded,
            "started_at": steps[0].started_at,
            "pid": 1,
            "host": "h",
        }
    )
    graph = run_graph(run, steps)
    labels = [graph.nodes[f"act:{s.index}"]["label"] for s in steps if f"act:{s.index}" in graph]
    assert labels == [
        "left_click (500, 500)",
        "type <secret>password</secret>",
        "key ['ctrl', 'a']",
        "key ['ctrl', 'a']",
        "scroll -5",
        "wait",
        "goto_url http://fake.invalid/done",
        "skip: double_click (10, 20)",  # held back by a gate: what was proposed, said so
        "double_click (10, 20)",
        "terminate success",
    ]


def test_a_step_whose_action_no_longer_validates_is_kept_not_dropped(tmp_path: Path) -> None:
    # e.g. a goto_url whose port the scrubber masked: the step stays in the run, its action shown as found
    line = json.loads(LINES[0])
    line["action"] = {"action": "goto_url", "url": "http://127.0.0.1:****/admin"}
    (tmp_path / "steps.jsonl").write_bytes(LINES[0] + b"\n" + json.dumps(line).encode() + b"\n")
    steps = read_steps(tmp_path)
    assert len(steps) == 2
    assert steps[1].action is None and steps[1].unreadable_action == line["action"]
    assert isinstance(steps[0].action, LeftClick) and steps[0].unreadable_action is None
