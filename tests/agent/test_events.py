"""The loop's events and the hook registry, on the fake executor (no Chromium, no display): what subscribers get,
in which order, that a failing subscriber cannot break a run, and how gates hold, skip, stop and replace steps."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent import load_task, run_task
from agent.events import (
    GateDecision,
    Hooks,
    RunEnded,
    RunStarted,
    StepDecided,
    StepRecorded,
)
from agent.prompt import describe_step, tool_response
from tools.actions import LeftClick
from tools.errors import HarnessError
from tools.fake import FakeExecutor, FakePage
from tracer import RunStatus, read_run, read_steps

SECRET = "s3cret-Pw-77"


def task_file(tmp_path: Path, script: str, *, limits: str = "{max_steps: 10}") -> Path:
    path = tmp_path / "events.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: events-task
        goal: Sign in as {{username}} and finish.
        inputs:
          username: ada
          password: {{value: {SECRET}, secret: true}}
        target: {{start_url: "http://fake.invalid/login"}}
        limits: {limits}
        script:
        """)
        + textwrap.indent(textwrap.dedent(script), "  "),
        encoding="utf-8",
    )
    return path


THREE_STEPS = """\
    - {action: left_click, coordinate: [500, 500]}
    - {action: type, text: "{password}"}
    - {action: terminate, status: success}
    """


def run(
    tmp_path: Path, hooks: Hooks | None = None, *, script: str = THREE_STEPS, fake: FakeExecutor | None = None, **kwargs: object
):
    task = load_task(task_file(tmp_path, script))
    fake = fake or FakeExecutor(secrets=task.secret_values())
    result = run_task(task, policy="script", runs_dir=tmp_path / "runs", executor=fake, hooks=hooks, **kwargs)
    return result, fake


def collect(hooks: Hooks) -> list[RunStarted | StepDecided | StepRecorded | RunEnded]:
    events: list[RunStarted | StepDecided | StepRecorded | RunEnded] = []
    hooks.subscribe(events.append)
    return events


def sequence(events: list) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    for event in events:
        index = event.index if isinstance(event, StepDecided) else event.step.index if isinstance(event, StepRecorded) else None
        out.append((event.kind, index))
    return out


# -- the sequence ------------------------------------------------------------------------------------------------


def test_a_scripted_run_publishes_its_events_in_order(tmp_path):
    hooks = Hooks()
    events = collect(hooks)
    result, fake = run(tmp_path, hooks)
    assert result.status is RunStatus.succeeded, result.end_reason
    assert sequence(events) == [
        ("run_started", None),
        ("step_decided", 0),
        ("step_recorded", 0),
        ("step_decided", 1),
        ("step_recorded", 1),
        ("step_decided", 2),
        ("step_recorded", 2),
        ("run_ended", None),
    ]
    started, ended = events[0], events[-1]
    assert isinstance(started, RunStarted) and started.run.status is RunStatus.running
    assert started.run_dir == result.run_dir and started.run.run_id == result.run_id
    assert isinstance(ended, RunEnded) and ended.status is RunStatus.succeeded and ended.run.steps == 3
    assert ended.end_reason == result.end_reason == "the agent ended the task (success)"
    decided = events[1]
    assert isinstance(decided, StepDecided) and decided.run_id == result.run_id
    assert decided.observation.screenshot_size == (1280, 800) and "ivbor" not in decided.model_dump_json().lower()
    assert decided.observation.screenshot == "steps/0000/screenshot.png"  # by path (on disk before gates ask)
    assert isinstance(decided.decision.action, LeftClick) and decided.decision.action.coordinate == [500, 500]
    assert decided.decision.reasoning and decided.decision.error is None
    recorded = [e.step for e in events if isinstance(e, StepRecorded)]
    assert [s.model_dump() for s in recorded] == [s.model_dump() for s in read_steps(result.run_dir)]
    assert all(s.gate is None for s in recorded)  # no gate registered: nothing recorded about gates
    # Frozen: a subscriber cannot change what the next one sees.
    with pytest.raises(ValidationError):
        decided.index = 5  # type: ignore[misc]


def test_subscribers_are_called_in_registration_order_and_by_type(tmp_path):
    calls: list[str] = []
    hooks = Hooks()
    hooks.subscribe(lambda e: calls.append(f"all:{e.kind}"))
    hooks.on(StepRecorded, lambda e: calls.append(f"recorded:{e.step.index}"))
    hooks.on(RunEnded, lambda e: calls.append("ended"))
    unsubscribe = hooks.on(StepDecided, lambda e: calls.append("never"))
    unsubscribe()
    run(tmp_path, hooks, script="- {action: terminate, status: success}\n")
    assert calls == ["all:run_started", "all:step_decided", "all:step_recorded", "recorded:0", "all:run_ended", "ended"]
    with pytest.raises(TypeError):
        hooks.on(dict, print)  # type: ignore[arg-type]


def test_on_start_and_on_step_still_work_and_do_not_stay_on_the_callers_hooks(tmp_path):
    starts, steps = [], []
    hooks = Hooks()
    events = collect(hooks)
    result, _ = run(
        tmp_path,
        hooks,
        on_start=lambda record, run_dir: starts.append((record.run_id, run_dir)),
        on_step=lambda step: steps.append(step.index),
    )
    assert starts == [(result.run_id, result.run_dir)] and steps == [0, 1, 2]
    assert len(events) == 8
    assert len(hooks._subscribers) == 1  # the shorthands went on a copy


# -- subscribers cannot break a run -------------------------------------------------------------------------------


def test_a_raising_subscriber_is_logged_and_the_run_goes_on(tmp_path):
    hooks = Hooks()

    def broken(event: StepRecorded) -> None:
        raise RuntimeError(f"printer fell over at step {event.step.index}")

    hooks.on(StepRecorded, broken)
    hooks.subscribe(lambda e: (_ for _ in ()).throw(ValueError("everything fails")))
    events = collect(hooks)  # registered after the broken ones: still called
    result, fake = run(tmp_path, hooks)
    assert result.status is RunStatus.succeeded and result.steps == 3
    assert len(events) == 8 and fake.typed == [SECRET]
    logged = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    failures = [e for e in logged if e["event"] == "subscriber failed"]
    assert [(e["kind"], e["error"]) for e in failures if "broken" in e["subscriber"]] == [
        ("step_recorded", f"RuntimeError: printer fell over at step {i}") for i in range(3)
    ]
    assert {e["kind"] for e in failures if "ValueError" in e["error"]} == {
        "run_started",
        "step_decided",
        "step_recorded",
        "run_ended",
    }
    assert all(e["level"] == "error" and e["logger"] == "glassbox.events" for e in failures)


def test_ctrl_c_in_a_subscriber_interrupts_the_run(tmp_path):
    hooks = Hooks()

    def interrupt(event: StepRecorded) -> None:
        if event.step.index == 1:
            raise KeyboardInterrupt

    hooks.on(StepRecorded, interrupt)
    events = collect(hooks)
    result, _ = run(tmp_path, hooks)
    assert (result.status, result.end_reason, result.steps) == (RunStatus.interrupted, "interrupted by the user", 2)
    assert isinstance(events[-1], RunEnded) and events[-1].status is RunStatus.interrupted


# -- gates --------------------------------------------------------------------------------------------------------


def test_a_gate_that_skips_a_step_records_it_as_skipped_and_the_run_goes_on(tmp_path):
    asked: list[int] = []
    hooks = Hooks()

    def guard(event: StepDecided) -> GateDecision:
        asked.append(event.index)
        return GateDecision.skip("not now") if event.index == 1 else GateDecision.proceed()

    hooks.add_gate(guard, name="guard")
    result, fake = run(tmp_path, hooks)
    assert result.status is RunStatus.succeeded, result.end_reason
    steps = read_steps(result.run_dir)
    assert [(s.outcome, s.error) for s in steps] == [("ok", None), ("skipped", None), ("ok", None)]
    skipped = steps[1]
    assert skipped.action is None and skipped.gate is not None
    assert (skipped.gate.who, skipped.gate.decision, skipped.gate.reason) == ("guard", "skip", "not now")
    assert skipped.gate.model_action is not None
    assert skipped.gate.model_action.model_dump() == {"action": "type", "text": "<secret>password</secret>"}
    assert steps[0].gate is not None and steps[0].gate.decision == "proceed" and steps[0].gate.model_action is None
    # The script leaves the skipped step behind and goes on (playing it again would loop while the gate skips):
    # the secret was never typed.
    assert fake.typed == [] and [a.action for a in fake.performed] == ["left_click", "terminate"]
    assert asked == [0, 1, 2]
    assert read_run(result.run_dir).errors == 0
    # A model is told that its action was held back, not that it was done.
    assert tool_response(skipped) == "Your last action was not performed: guard skipped it (not now). Choose the next action."
    assert describe_step(skipped) == 'type "<secret>password</secret>" -> not performed: guard skipped it (not now)'


def test_a_gate_that_stops_ends_the_run_with_its_reason(tmp_path):
    hooks = Hooks()
    hooks.add_gate(lambda e: GateDecision.stop("a person said no") if e.index == 1 else GateDecision.proceed(), name="approver")
    events = collect(hooks)
    result, fake = run(tmp_path, hooks)
    assert result.status is RunStatus.interrupted
    assert result.end_reason == "stopped by approver at step 1: a person said no"
    assert result.steps == 2 and result.checks == []
    steps = read_steps(result.run_dir)
    assert steps[1].outcome == "skipped" and steps[1].gate is not None and steps[1].gate.decision == "stop"
    assert [a.action for a in fake.performed] == ["left_click"] and fake.typed == []
    assert read_run(result.run_dir).status is RunStatus.interrupted
    assert isinstance(events[-1], RunEnded) and events[-1].end_reason == result.end_reason


def test_a_gate_that_replaces_the_action_has_the_replacement_performed_and_both_recorded(tmp_path):
    hooks = Hooks()
    hooks.add_gate(
        lambda e: (
            GateDecision.replace(LeftClick(action="left_click", coordinate=[100, 100]), "the button is further up")
            if e.index == 0
            else GateDecision.proceed()
        ),
        name="person",
    )
    result, fake = run(tmp_path, hooks)
    assert result.status is RunStatus.succeeded, result.end_reason
    assert fake.points == [(128, 80)]  # the person's click, not the model's (640, 400)
    step = read_steps(result.run_dir)[0]
    assert step.outcome == "ok" and step.action is not None
    assert step.action.model_dump() == {"action": "left_click", "coordinate": [100.0, 100.0]}
    assert step.coordinate is not None and step.coordinate.css == (128, 80)
    assert step.gate is not None and (step.gate.who, step.gate.decision) == ("person", "replace")
    assert step.gate.model_action is not None
    assert step.gate.model_action.model_dump() == {"action": "left_click", "coordinate": [500.0, 500.0]}
    assert step.tool_calls[0].arguments["coordinate"] == [500, 500]  # what the model said stays
    assert describe_step(step) == "left_click at (100, 100) (performed instead of your left_click at (500, 500))"


def test_an_invalid_replacement_is_an_action_error(tmp_path):
    hooks = Hooks()
    hooks.add_gate(
        lambda e: (
            GateDecision.replace(LeftClick(action="left_click", coordinate=[5000, 10]))
            if e.index == 0
            else GateDecision.proceed()
        ),
        name="person",
    )
    result, fake = run(tmp_path, hooks)
    step = read_steps(result.run_dir)[0]
    assert step.outcome == "error" and step.error_kind == "action"
    assert step.error is not None and step.error.startswith("the replacement from person is not valid: ")
    assert fake.points[0] == (640, 400)  # the script repeated its step, which went through


def test_a_gate_that_never_answers_times_out_and_the_step_proceeds(tmp_path):
    release = threading.Event()
    hooks = Hooks(gate_timeout_s=60)
    hooks.add_gate(lambda e: release.wait(30) and GateDecision.skip(), name="asleep", timeout_s=0.05)
    try:
        began = time.monotonic()
        result, fake = run(tmp_path, hooks)
        took = time.monotonic() - began
    finally:
        release.set()
    assert result.status is RunStatus.succeeded and fake.typed == [SECRET]
    steps = read_steps(result.run_dir)
    assert all(s.outcome == "ok" and s.gate is not None for s in steps)
    gate = steps[0].gate
    assert gate is not None and (gate.who, gate.decision, gate.timed_out) == ("asleep", "proceed", True)
    assert gate.reason == "no answer within 0.05 s; the step went on" and 45 <= gate.waited_ms < 2000
    assert took < 5


def test_a_gate_that_fails_counts_as_proceed_and_the_failure_is_recorded(tmp_path):
    hooks = Hooks()
    hooks.add_gate(lambda e: 1 / 0, name="broken")
    hooks.add_gate(lambda e: GateDecision.proceed("fine"), name="fine")
    result, fake = run(tmp_path, hooks)
    assert result.status is RunStatus.succeeded and len(fake.performed) == 3
    gate = read_steps(result.run_dir)[0].gate
    assert gate is not None and (gate.who, gate.decision, gate.error) == (
        "broken",
        "proceed",
        "ZeroDivisionError: division by zero",
    )


def test_gate_decisions_validate_their_action():
    with pytest.raises(ValueError):
        GateDecision(decision="skip", action=LeftClick(action="left_click", coordinate=[1, 1]))
    with pytest.raises(ValueError):
        GateDecision(decision="replace")
    with pytest.raises(ValueError):
        Hooks(gate_timeout_s=0)


# -- secrets ------------------------------------------------------------------------------------------------------


def test_no_secret_reaches_a_subscriber_or_a_gate(tmp_path):
    dumps: list[str] = []
    hooks = Hooks()
    hooks.subscribe(lambda e: dumps.append(e.model_dump_json()))
    hooks.add_gate(lambda e: dumps.append(e.model_dump_json()) or GateDecision.proceed(), name="spy")
    script = f"""\
        - {{action: left_click, coordinate: [500, 500], note: "the password is {SECRET}"}}
        - {{action: type, text: "{{password}}"}}
        - {{action: terminate, status: success}}
        """
    task = load_task(task_file(tmp_path, script))
    fake = FakePage(url=f"http://fake.invalid/login?token={SECRET}", secrets=task.secret_values())
    result = run_task(task, policy="script", runs_dir=tmp_path / "runs", executor=fake, hooks=hooks)
    assert result.status is RunStatus.succeeded and fake.typed == [SECRET]
    assert len(dumps) == 8 + 3
    assert not [d for d in dumps if SECRET in d]
    assert any("the password is" in d for d in dumps) and any("fake.invalid/login" in d for d in dumps)


def test_a_policy_that_cannot_be_asked_is_a_backend_error_not_a_parse_error(tmp_path):
    # A server that is down is not the model's mistake: it must not count as a parse error or draw as one.
    from agent.policy import Policy
    from tracer.graph import run_graph

    class Unreachable(Policy):
        name = "unreachable"

        def decide(self, task, history, observation):
            raise ConnectionError("the model server refused the connection")

    task = load_task(task_file(tmp_path, THREE_STEPS, limits="{max_steps: 5, max_consecutive_errors: 2}"))
    result = run_task(
        task,
        runs_dir=tmp_path / "runs",
        executor=FakeExecutor(secrets=task.secret_values()),
        policy_factory=lambda task_, executor: Unreachable(),
    )
    steps = read_steps(result.run_dir)
    assert [s.error_kind for s in steps] == ["backend", "backend"]
    assert "refused the connection" in (steps[0].error or "")
    run_record = read_run(result.run_dir)
    assert run_record.summary.parse_errors == 0
    kinds = {data["kind"] for _, data in run_graph(run_record, steps).nodes(data=True)}
    assert "backend_error" in kinds and "parse_error" not in kinds


# -- a harness crash ----------------------------------------------------------------------------------------------


class _CrashingFake(FakeExecutor):
    """The device breaks on the second look at the screen, with the secret in its message (a page's text)."""

    def perceive(self):
        if len(self.actions) == 1:
            raise RuntimeError(f"renderer died showing {SECRET}")
        return super().perceive()


def test_a_harness_crash_keeps_its_traceback_in_the_run_log_without_secrets(tmp_path):
    task = load_task(task_file(tmp_path, THREE_STEPS))
    with pytest.raises(HarnessError, match="harness error: RuntimeError: renderer died showing") as raised:
        run_task(task, policy="script", runs_dir=tmp_path / "runs", executor=_CrashingFake(secrets=task.secret_values()))
    assert SECRET not in str(raised.value)
    [run_dir] = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert read_run(run_dir).status is RunStatus.failed and len(read_steps(run_dir)) == 1  # the step before is kept
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    [crash] = [e for e in lines if e["event"] == "run crashed"]
    assert "Traceback" in crash["exception"] and "in perceive" in crash["exception"]
    assert SECRET not in (run_dir / "log.jsonl").read_text(encoding="utf-8")
