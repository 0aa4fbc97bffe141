"""A person in the loop (agent.approval): steps held for approval, answered in the viewer (real Chromium, real
viewer server), on a terminal, or by the timeout; Pause / Resume. The gate logic itself runs on the fake executor.

The low-confidence decisions come from :class:`Unsure`, a test double for the loop's policy (not a model): it
answers scripted tool calls with the confidence each test gives."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from agent import load_task, run_task
from agent.approval import (
    ANSWER_FILE,
    PENDING_FILE,
    ApprovalAnswer,
    ApprovalIn,
    PendingStep,
    StepCorrection,
    announce_viewer,
    give_answer,
    read_pending,
    viewer_running,
    withdraw_viewer,
)
from agent.events import GateDecision, Hooks
from agent.policy import ModelTrace, Policy, PolicyDecision, PolicyOutput
from agent.task import Task, TaskError, parse_task
from replays.labels import Labels
from tests.conftest import ROOT
from tools.actions import ToolCall
from tools.fake import FakeExecutor
from tracer import RunStatus, read_run, read_steps
from tracer.labels import current_labels, read_label_events

CLICK = ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [500, 500]})
DONE = ToolCall(name="computer_use", arguments={"action": "terminate", "status": "success"})


class Unsure(Policy):
    """A test double for the loop: plays ``calls`` in order with the given confidences (None: unknown)."""

    name = "unsure"

    def __init__(self, calls: list[ToolCall], confidences: list[float | None], model: str | None = None) -> None:
        self.calls, self.confidences, self.model = calls, confidences, model
        self.decided = 0

    def decide(self, task, history, observation) -> PolicyOutput:
        i = min(len(history), len(self.calls) - 1)
        self.decided += 1
        return PolicyOutput(
            decision=PolicyDecision(
                tool_calls=[self.calls[i]],
                confidence=self.confidences[i],
                confidence_reason=None if self.confidences[i] is not None else "the test double gives none",
            ),
            trace=ModelTrace(
                raw_output=json.dumps(self.calls[i].model_dump()),
                reasoning=f"Step {len(history)}: the Sign in form is in the middle, so I click there.",
            ),
        )


def make_task(tmp_path: Path, policy: str, *, extra: str = "", target: str = '{start_url: "http://fake.invalid/"}') -> Task:
    return load_task(task_file(tmp_path, policy, extra=extra, target=target))


def task_file(tmp_path: Path, policy: str, *, extra: str = "", target: str = '{start_url: "http://fake.invalid/"}') -> Path:
    text = textwrap.dedent(f"""\
        name: approval-task
        goal: Sign in.
        target: {target}
        limits: {{max_steps: 6}}
        policy: {policy}
        script:
          - {{action: left_click, coordinate: [500, 500]}}
          - {{action: terminate, status: success}}
        """) + textwrap.dedent(extra)
    path = tmp_path / "approval.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def answer_when_asked(runs: Path, make: Callable[[str], ApprovalAnswer], *, times: int = 1) -> threading.Thread:
    """Answer the next ``times`` held steps of the run in ``runs`` through the file channel, as a viewer does."""

    def go() -> None:
        answered: set[str] = set()
        deadline = time.monotonic() + 60
        while len(answered) < times and time.monotonic() < deadline:
            for run_dir in runs.iterdir() if runs.is_dir() else []:
                pending = read_pending(run_dir) if run_dir.is_dir() else None
                if pending is not None and pending.id not in answered:
                    give_answer(run_dir, make(pending.id))
                    answered.add(pending.id)
            time.sleep(0.02)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def by_viewer(choice: str, correction: StepCorrection | None = None) -> Callable[[str], ApprovalAnswer]:
    return lambda id: ApprovalAnswer(
        id=id, choice=choice, correction=correction, by="viewer", answered_at=datetime.now(timezone.utc)
    )


def labels_of(run_dir: Path) -> list[tuple[int, str, dict | None]]:
    return [(c.label.step, c.label.verdict, c.label.correction) for c in current_labels(read_label_events(run_dir)[0])]


# -- the gate, on the fake executor ---------------------------------------------------------------------------------


def test_a_low_confidence_step_waits_and_an_approval_lets_it_act(tmp_path):
    task = make_task(tmp_path, "{min_confidence: 0.5, on_low_confidence: ask, approval_timeout_s: 60}")
    runs = tmp_path / "runs"
    fake = FakeExecutor()
    helper = answer_when_asked(runs, by_viewer("approve"))
    policy = Unsure([CLICK, DONE], [0.2, 0.9])
    result = run_task(task, runs_dir=runs, executor=fake, policy_factory=lambda t, e: policy)
    helper.join(5)
    assert result.status is RunStatus.succeeded, result.end_reason
    assert fake.points == [(640, 400)]
    held, done = read_steps(result.run_dir)
    assert held.outcome == "ok" and held.gate is not None
    assert (held.gate.who, held.gate.decision, held.gate.answered_by) == ("approval", "proceed", "viewer")
    assert held.gate.reason == "confidence 0.20 is below 0.5; approved in the viewer"
    assert held.gate.answered_at is not None and not held.gate.timed_out
    # A confident step is not held: the gate answered itself, nobody was asked.
    assert done.gate is not None and done.gate.answered_by is None and done.gate.decision == "proceed"
    assert labels_of(result.run_dir) == [(0, "correct", None)]
    assert not (result.run_dir / PENDING_FILE).exists() and not (result.run_dir / ANSWER_FILE).exists()


def test_a_correction_acts_at_the_corrected_point_and_is_labelled_wrong(tmp_path):
    task = make_task(tmp_path, "{min_confidence: 0.5, on_low_confidence: ask, approval_timeout_s: 30}")
    runs = tmp_path / "runs"
    fake = FakeExecutor()
    helper = answer_when_asked(runs, by_viewer("correct", StepCorrection(action="double_click", coordinate=(250, 100))))
    result = run_task(task, runs_dir=runs, executor=fake, policy_factory=lambda t, e: Unsure([CLICK, DONE], [0.2, 0.9]))
    helper.join(5)
    assert result.status is RunStatus.succeeded, result.end_reason
    assert fake.points == [(320, 80)]  # (250, 100) on the grid of a 1280x800 screen
    step = read_steps(result.run_dir)[0]
    assert step.action is not None and step.action.model_dump() == {"coordinate": [250.0, 100.0], "action": "double_click"}
    assert step.gate is not None and step.gate.decision == "replace" and step.gate.answered_by == "viewer"
    assert step.gate.model_action is not None
    assert step.gate.model_action.model_dump() == {"coordinate": [500.0, 500.0], "action": "left_click"}
    assert step.consistency is None  # the model's reasoning is not judged against the person's point
    assert labels_of(result.run_dir) == [
        (0, "wrong", {"action": "double_click", "coordinate": [250.0, 100.0], "pixel": [320, 80]})
    ]


def test_stop_ends_the_run_as_failed_stopped_by_a_person(tmp_path):
    task = make_task(tmp_path, "{min_confidence: 0.5, on_low_confidence: ask, approval_timeout_s: 30}")
    runs = tmp_path / "runs"
    fake = FakeExecutor()
    helper = answer_when_asked(runs, by_viewer("stop"))
    result = run_task(task, runs_dir=runs, executor=fake, policy_factory=lambda t, e: Unsure([CLICK, DONE], [0.2, 0.9]))
    helper.join(5)
    assert result.status is RunStatus.failed
    assert result.end_reason == "stopped by a person at step 0 (viewer)"
    assert fake.points == [] and result.steps == 1
    step = read_steps(result.run_dir)[0]
    assert step.outcome == "skipped" and step.gate is not None and step.gate.decision == "stop"
    assert labels_of(result.run_dir) == [(0, "wrong", None)]


@pytest.mark.parametrize(
    ("on_timeout", "status", "points", "outcome"),
    [
        ("proceed", RunStatus.succeeded, [(640, 400)], "ok"),
        ("skip", RunStatus.succeeded, [], "skipped"),
        ("stop", RunStatus.failed, [], "skipped"),
    ],
)
def test_nobody_answers_and_on_timeout_applies(tmp_path, on_timeout, status, points, outcome):
    task = make_task(
        tmp_path, f"{{min_confidence: 0.5, on_low_confidence: ask, approval_timeout_s: 0.3, on_timeout: {on_timeout}}}"
    )
    fake = FakeExecutor()
    with capture_logs() as logs:
        result = run_task(
            task, runs_dir=tmp_path / "runs", executor=fake, policy_factory=lambda t, e: Unsure([CLICK, DONE], [0.2, 0.9])
        )
    assert result.status is status, result.end_reason
    assert fake.points == points
    # Said when it is held: where to answer (no terminal here, so the viewer) and what happens without an answer.
    [held] = [entry for entry in logs if entry["event"] == "step held for a person"]
    assert held["answer"] == f"in the viewer (glassbox view --runs-dir {tmp_path / 'runs'})"
    assert held["then"] == f"{on_timeout} after 0.3 s without an answer"
    step = read_steps(result.run_dir)[0]
    assert step.outcome == outcome and step.gate is not None
    assert (step.gate.answered_by, step.gate.timed_out) == ("timeout", True)
    assert step.gate.reason == f"confidence 0.20 is below 0.5; no answer within 0.3 s (on_timeout: {on_timeout})"
    # The wait is the gate's, not the action's: the step's timings keep them apart.
    assert step.timings.wait_ms == step.gate.waited_ms >= 250 and step.timings.act_ms < step.timings.wait_ms
    if on_timeout == "stop":
        assert result.end_reason == "no answer from a person within 0.3 s at step 0 (on_timeout: stop)"
    assert labels_of(result.run_dir) == []  # nobody judged the step
    assert not (result.run_dir / PENDING_FILE).exists()


def test_the_script_is_held_only_for_ask_before_and_unknown_confidence_of_a_model_counts_as_below(tmp_path):
    task = make_task(
        tmp_path, "{min_confidence: 0.5, on_low_confidence: ask, approval_timeout_s: 30}", extra="ask_before: [terminate]\n"
    )
    runs = tmp_path / "runs"
    helper = answer_when_asked(runs, by_viewer("approve"))
    result = run_task(task, policy="script", runs_dir=runs, executor=FakeExecutor())
    helper.join(5)
    assert result.status is RunStatus.succeeded
    steps = read_steps(result.run_dir)
    assert [s.gate.answered_by if s.gate else None for s in steps] == [None, "viewer"]  # only terminate waited
    assert steps[1].gate is not None and steps[1].gate.reason == "terminate is in ask_before; approved in the viewer"

    # A policy that names a model and gives no confidence: held (unknown counts as below).
    task = make_task(tmp_path, "{min_confidence: 0.5, on_low_confidence: ask, approval_timeout_s: 30}")
    helper = answer_when_asked(runs, by_viewer("skip"))
    result = run_task(
        task, runs_dir=runs, executor=FakeExecutor(), policy_factory=lambda t, e: Unsure([CLICK, DONE], [None, 0.9], "m")
    )
    helper.join(5)
    step = read_steps(result.run_dir)[0]
    assert step.outcome == "skipped" and step.gate is not None
    assert step.gate.reason == "confidence unknown (counts as below 0.5); skipped in the viewer"


def test_the_terminal_asks_when_no_viewer_runs_and_not_when_one_does(tmp_path):
    task = make_task(tmp_path, "{min_confidence: 0.5, on_low_confidence: ask, approval_timeout_s: 30}")
    runs = tmp_path / "runs"
    seen: list[int] = []

    def terminal(pending, cancelled):
        seen.append(pending.step)
        return "approve"

    result = run_task(
        task,
        runs_dir=runs,
        executor=FakeExecutor(),
        policy_factory=lambda t, e: Unsure([CLICK, DONE], [0.2, 0.9]),
        terminal_ask=terminal,
    )
    assert result.status is RunStatus.succeeded and seen == [0]
    step = read_steps(result.run_dir)[0]
    assert step.gate is not None and step.gate.answered_by == "terminal"
    assert step.gate.reason == "confidence 0.20 is below 0.5; approved on the terminal"
    assert labels_of(result.run_dir) == [(0, "correct", None)]

    announced = announce_viewer(runs, "http://127.0.0.1:1")
    try:
        assert viewer_running(runs)
        seen.clear()
        helper = answer_when_asked(runs, by_viewer("approve"))
        result = run_task(
            task,
            runs_dir=runs,
            executor=FakeExecutor(),
            policy_factory=lambda t, e: Unsure([CLICK, DONE], [0.2, 0.9]),
            terminal_ask=terminal,
        )
        helper.join(5)
        assert seen == [] and read_steps(result.run_dir)[0].gate.answered_by == "viewer"  # type: ignore[union-attr]
    finally:
        withdraw_viewer(announced)
    assert not viewer_running(runs)

    # A viewer killed without notice does not count, and the next one to start clears its file.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = runs / ".viewers" / "stale.json"
    stale.write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname()}))
    assert not viewer_running(runs)
    withdraw_viewer(announce_viewer(runs, "http://127.0.0.1:2"))
    assert not stale.exists()
    # A second viewer on the same runs dir leaves the first one's file: when it stops, the first still serves.
    first = announce_viewer(runs, "http://127.0.0.1:3")
    withdraw_viewer(announce_viewer(runs, "http://127.0.0.1:4"))
    assert first.exists() and viewer_running(runs)
    withdraw_viewer(first)


def test_a_late_or_foreign_answer_is_refused(tmp_path):
    task = make_task(tmp_path, "{min_confidence: 0.5, on_low_confidence: ask, approval_timeout_s: 30}")
    runs = tmp_path / "runs"
    refusals: list[str] = []

    def go() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for run_dir in runs.iterdir() if runs.is_dir() else []:
                pending = read_pending(run_dir) if run_dir.is_dir() else None
                if pending is None:
                    continue
                for bad in (
                    by_viewer("approve")("0" * 32),  # another request's id
                    by_viewer("correct", StepCorrection(action="upload_file", coordinate=(5, 5)))(pending.id),
                ):
                    try:
                        give_answer(run_dir, bad)
                    except Exception as exc:  # noqa: BLE001
                        refusals.append(str(exc))
                give_answer(run_dir, by_viewer("approve")(pending.id))
                try:
                    give_answer(run_dir, by_viewer("stop")(pending.id))  # a second answer to the same step
                except Exception as exc:  # noqa: BLE001
                    refusals.append(str(exc))
                return
            time.sleep(0.02)

    helper = threading.Thread(target=go, daemon=True)
    helper.start()
    result = run_task(task, runs_dir=runs, executor=FakeExecutor(), policy_factory=lambda t, e: Unsure([CLICK, DONE], [0.2, 0.9]))
    helper.join(5)
    assert result.status is RunStatus.succeeded
    assert refusals[0] == "step 0 is waiting now; that answer was for another request"
    assert refusals[1].startswith("the correction is not a valid action: ")  # this task offers no upload_file
    assert refusals[2] in ("step 0 has been answered already", "no step of this run is waiting for an answer")


def test_task_settings_are_checked():
    base = 'name: t\ngoal: g\ntarget: {start_url: "http://x.invalid/"}\n'
    with pytest.raises(TaskError, match="unknown action 'terminat' in ask_before; use any of: key, type"):
        parse_task(base + "ask_before: [terminat]\n")
    with pytest.raises(TaskError, match="on_low_confidence: ask needs min_confidence"):
        parse_task(base + "policy: {on_low_confidence: ask}\n")
    with pytest.raises(TaskError, match="on_timeout"):
        parse_task(base + "policy: {min_confidence: 0.3, on_low_confidence: ask, on_timeout: wait}\n")
    task = parse_task(base + "ask_before: [terminate, upload_file, terminate]\n")
    assert task.ask_before == ["terminate", "upload_file"]
    assert (task.policy.approval_timeout_s, task.policy.on_timeout) == (300.0, "stop")


def test_a_gate_added_with_on_timeout_answers_that_when_it_does_not_answer():
    from agent.events import Decision, ObservationSummary, StepDecided

    event = StepDecided(
        run_id="r",
        index=3,
        observation=ObservationSummary(url=None, title=None, screenshot_size=(1, 1), css_size=(1, 1), device_scale_factor=1),
        decision=Decision(),
        policy="p",
    )
    release = threading.Event()
    hooks = Hooks()
    hooks.add_gate(
        lambda e: release.wait(30) and GateDecision.proceed(),
        name="slow",
        timeout_s=0.05,
        on_timeout=GateDecision.skip("late", by="timeout"),
    )
    try:
        outcome = hooks.before_act(event)
    finally:
        release.set()
    assert outcome is not None
    assert (outcome.decision.decision, outcome.record.timed_out, outcome.record.answered_by) == ("skip", True, "timeout")
    hooks = Hooks()
    asleep = threading.Event()
    hooks.add_gate(
        lambda e: asleep.wait(30) and GateDecision.proceed(), name="broken", timeout_s=0.05, on_timeout=lambda e: 1 / 0
    )
    try:
        outcome = hooks.before_act(event)
    finally:
        asleep.set()
    assert (
        outcome is not None
        and outcome.decision.decision == "stop"
        and outcome.record.error == "ZeroDivisionError: division by zero"
    )
    with pytest.raises(ValueError, match="fail_run and end_reason go with stop"):
        GateDecision(decision="skip", fail_run=True)


# -- in the viewer, in real Chromium ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(chromium_module):
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings(viewport=(1440, 900))) as browser:
        yield browser.page


@pytest.fixture(scope="module")
def chromium_module():
    from tests.conftest import require_chromium

    require_chromium()


class Background:
    """A run in another process (its own Chromium and shop), as with ``glassbox view`` beside ``glassbox run``,
    driven by :class:`Unsure` (``main`` below), while the test drives the viewer page."""

    def __init__(self, task_file: Path, runs: Path, calls: list[ToolCall], confidences: list[float | None]) -> None:
        spec = json.dumps(
            {"task": str(task_file), "runs": str(runs), "calls": [c.model_dump() for c in calls], "conf": confidences}
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from tests.replays.test_approval import main; main(sys.argv[1])", spec],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def join(self) -> Path:
        try:
            _, err = self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("the run did not end") from None
        assert self.proc.returncode == 0, err.decode(errors="replace")[-3000:]
        return Path(err.decode().strip().splitlines()[-1])


def main(spec_json: str) -> None:
    """The run of :class:`Background`: prints its folder last on stderr."""
    spec = json.loads(spec_json)
    policy = Unsure([ToolCall(**c) for c in spec["calls"]], spec["conf"])
    result = run_task(load_task(Path(spec["task"])), runs_dir=Path(spec["runs"]), policy_factory=lambda t, e: policy)
    print(result.run_dir, file=sys.stderr)


def wait_for_pending(runs: Path, step: int, run: Background) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not run.alive():
            raise AssertionError(f"the run ended before step {step} waited: {run.proc.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
        for run_dir in runs.iterdir() if runs.is_dir() else []:
            pending = read_pending(run_dir) if run_dir.is_dir() else None
            if pending is not None and pending.step == step:
                return run_dir
        time.sleep(0.02)
    raise AssertionError(f"no step {step} waited for a person")


SHOP = "{site: shop, path: /login}"


def test_the_viewer_shows_the_held_step_refuses_foreign_answers_and_approve_lets_it_act(tmp_path, page):
    from replays.viewer import ViewerServer

    runs = tmp_path / "runs"
    task = task_file(tmp_path, "{min_confidence: 0.5, on_low_confidence: ask, approval_timeout_s: 120}", target=SHOP)
    with ViewerServer(runs) as viewer:
        run = Background(task, runs, [CLICK, DONE], [0.2, 0.9])
        run_dir = wait_for_pending(runs, 0, run)
        listed = httpx.get(f"{viewer.url}/api/runs/rows").json()["html"]  # the runs list says so, too
        assert "step 0 waits for you" in listed
        page.goto(f"{viewer.url}/runs/{run_dir.name}")
        page.wait_for_selector("#pending:not([hidden])")
        page.wait_for_function("document.getElementById('pending-shot').naturalWidth === 1280")
        assert page.inner_text("#pending-title") == "Step 0 waits for you"
        assert "left_click at (500, 500)" in page.inner_text("#pending-proposed") and "0.20" in page.inner_text(
            "#pending-proposed"
        )
        assert page.inner_text("#pending-reasoning") == "Step 0: the Sign in form is in the middle, so I click there."
        assert page.locator("#pending-overlay circle.proposed").count() == 1
        for name in ("Approve", "Correct", "Skip", "Stop"):
            assert page.get_by_role("button", name=name, exact=True).is_visible()
        page.screenshot(path=str(tmp_path / "approval.png"))

        # Writes without the token, or from another origin, are refused; the step keeps waiting.
        pending = read_pending(run_dir)
        assert pending is not None
        url = f"{viewer.url}/api/runs/{run_dir.name}/approval"
        body = {"id": pending.id, "choice": "stop"}
        assert httpx.post(url, json=body, headers={"Origin": viewer.url}).status_code == 403
        evil = {"Origin": "http://evil.example", "X-Glassbox-Token": viewer.token}
        assert httpx.post(url, json=body, headers=evil).status_code == 403
        assert read_pending(run_dir) == pending and not (run_dir / ANSWER_FILE).exists()

        # Pause while the step waits: once approved, the run holds before step 1 until Resume.
        page.get_by_role("button", name="Pause", exact=True).click()
        page.wait_for_selector("#pause-btn:text('Resume')")
        page.get_by_role("button", name="Approve", exact=True).click()
        page.wait_for_selector("#pause-note:text('paused before step 1')")
        assert len(read_steps(run_dir)) == 1 and not (run_dir / "steps" / "0001").exists()  # not even perceived
        page.wait_for_selector("#pending", state="hidden")
        page.get_by_role("button", name="Resume", exact=True).click()
        assert run.join() == run_dir
        page.wait_for_selector("#run-status:text('succeeded')")
        assert "waits for you" not in httpx.get(f"{viewer.url}/api/runs/rows").json()["html"]
    assert read_run(run_dir).status is RunStatus.succeeded, read_run(run_dir).end_reason
    step = read_steps(run_dir)[0]
    assert step.outcome == "ok" and step.coordinate is not None and step.coordinate.css == (640, 400)
    assert step.gate is not None and (step.gate.decision, step.gate.answered_by) == ("proceed", "viewer")
    assert labels_of(run_dir) == [(0, "correct", None)]


def test_correct_acts_at_the_clicked_spot_and_stop_ends_the_run(tmp_path, page):
    from replays.viewer import ViewerServer

    runs = tmp_path / "runs"
    task = task_file(tmp_path, "{min_confidence: 0.5, on_low_confidence: ask, approval_timeout_s: 120}", target=SHOP)
    with ViewerServer(runs) as viewer:
        run = Background(task, runs, [CLICK, CLICK, DONE], [0.2, 0.3, 0.9])
        run_dir = wait_for_pending(runs, 0, run)
        page.goto(f"{viewer.url}/runs/{run_dir.name}")
        page.wait_for_function("document.getElementById('pending-shot').naturalWidth === 1280")
        page.get_by_role("button", name="Correct", exact=True).click()
        offered = page.eval_on_selector_all("#ap-action option", "os => os.map(o => o.value)")
        assert "upload_file" not in offered and {"goto_url", "answer", "left_click"} <= set(offered)  # a click step
        box = page.locator("#pending-shot").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.40)
        assert page.locator("#pending-overlay circle.pick").count() == 1
        page.click("#ap-send")
        # The page updates itself for the next held step (no reload).
        page.wait_for_selector("#pending-title:text('Step 1 waits for you')")
        page.wait_for_selector("#film-0")  # step 0 is on the page now, selected or selectable
        page.keyboard.press("c")  # while a step waits, the label keys do not label another step
        page.keyboard.press("u")
        # The page is driven by a Glassbox executor, whose own dialog policy would answer a real confirm first.
        page.evaluate("window.confirm = (message) => { window.asked = message; return false; }")
        page.get_by_role("button", name="Stop", exact=True).click()  # a misclick: asked, and Cancel keeps the run
        assert str(page.evaluate("window.asked")).startswith("End this run here, as failed?")
        assert page.is_visible("#pending") and not page.is_disabled("#ap-stop")
        page.evaluate("window.confirm = () => true")
        page.get_by_role("button", name="Stop", exact=True).click()
        assert run.join() == run_dir
        page.wait_for_selector("#run-status:text('failed')")
        page.wait_for_selector("#pending", state="hidden")
        assert page.inner_text("#end-reason") == "stopped by a person at step 1 (viewer)"
    record = read_run(run_dir)
    assert record.status is RunStatus.failed and record.end_reason == "stopped by a person at step 1 (viewer)"
    corrected, stopped = read_steps(run_dir)
    labels = labels_of(run_dir)
    assert [(s, v) for s, v, _ in labels] == [(0, "wrong"), (1, "wrong")]
    correction = labels[0][2]
    assert correction is not None and correction["action"] == "left_click"
    x, y = correction["coordinate"]
    assert abs(x - 250) <= 2 and abs(y - 400) <= 2
    assert corrected.coordinate is not None and corrected.coordinate.css == (round(x / 1000 * 1280), round(y / 1000 * 800))
    assert corrected.gate is not None and (corrected.gate.decision, corrected.gate.answered_by) == ("replace", "viewer")
    assert stopped.outcome == "skipped" and stopped.gate is not None and stopped.gate.decision == "stop"


def test_the_viewer_takes_answers_and_pauses_only_for_a_running_run_and_checks_them(tmp_path):
    from replays.viewer import ViewerServer
    from tracer.run_files import atomic_write

    task = make_task(tmp_path, "{min_confidence: 0.5, on_low_confidence: ask, approval_timeout_s: 30}")
    runs = tmp_path / "runs"
    result = run_task(task, policy="script", runs_dir=runs, executor=FakeExecutor())
    pending = {
        "id": "ab" * 16,
        "run_id": result.run_id,
        "step": 0,
        "screenshot": "steps/0000/screenshot.png",
        "screenshot_size": [1280, 800],
        "css_size": [1280, 800],
        "action": {"action": "left_click", "coordinate": [500, 500]},
        "policy": "unsure",
        "why": "low_confidence",
        "why_text": "confidence 0.20 is below 0.5",
        "asked_at": "2026-01-01T00:00:00Z",
        "timeout_s": 30,
        "on_timeout": "stop",
    }
    atomic_write(result.run_dir / PENDING_FILE, json.dumps(pending).encode())
    with ViewerServer(runs) as viewer:
        headers = {"Origin": viewer.url, "X-Glassbox-Token": viewer.token}
        url = f"{viewer.url}/api/runs/{result.run_id}"
        finished = httpx.post(url + "/approval", json={"id": pending["id"], "choice": "approve"}, headers=headers)
        assert finished.status_code == 409 and "is not running (it is succeeded)" in finished.text
        assert httpx.post(url + "/pause", json={"paused": True}, headers=headers).status_code == 409
        assert httpx.get(url).json()["pending"] is None  # a finished run waits for nobody

        record = json.loads((result.run_dir / "run.json").read_text())
        record.update(status="running", pid=os.getpid(), host=socket.gethostname())
        atomic_write(result.run_dir / "run.json", json.dumps(record).encode())
        assert httpx.get(url).json()["pending"]["id"] == pending["id"]
        bad = httpx.post(
            url + "/approval",
            json={"id": pending["id"], "choice": "correct", "correction": {"action": "left_click"}},
            headers=headers,
        )
        assert bad.status_code == 422 and "left_click needs a point" in bad.text
        key = {"id": pending["id"], "choice": "correct", "correction": {"action": "key", "keys": ["notakey!!"]}}
        unknown = httpx.post(url + "/approval", json=key, headers=headers)  # refused now, not when the step acts
        assert unknown.status_code == 422 and "unknown key name 'notakey!!'" in unknown.text, unknown.text
        other = httpx.post(url + "/approval", json={"id": "cd" * 16, "choice": "skip"}, headers=headers)
        assert other.status_code == 409 and "another request" in other.text
        assert not (result.run_dir / ANSWER_FILE).exists()
        ok = httpx.post(url + "/approval", json={"id": pending["id"], "choice": "skip", "note": "not now"}, headers=headers)
        assert ok.status_code == 202 and ok.json() == {"step": 0, "choice": "skip"}
        again = httpx.post(url + "/approval", json={"id": pending["id"], "choice": "stop"}, headers=headers)
        assert again.status_code == 409 and again.json()["error"] == "step 0 has been answered already"
        written = json.loads((result.run_dir / ANSWER_FILE).read_text())
        assert (written["choice"], written["by"], written["note"]) == ("skip", "viewer", "not now")

        assert httpx.post(url + "/pause", json={"paused": True}).status_code == 403  # no token, no origin
        assert not (result.run_dir / "pause.json").exists()
        assert httpx.post(url + "/pause", json={"paused": True}, headers=headers).json() == {
            "paused": True,
            "holding_before": None,
        }
        assert httpx.get(url).json()["pause"]["paused"] is True
        assert httpx.post(url + "/pause", json={"paused": False}, headers=headers).json()["paused"] is False


# -- the command line -------------------------------------------------------------------------------------------------


def glassbox(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_ask_below_must_be_a_confidence(tmp_path):
    done = glassbox("run", str(task_file(tmp_path, "{}")), "--ask-below", "1.5", cwd=tmp_path)
    assert done.returncode == 2 and "--ask-below must be a confidence between 0 and 1, not 1.5" in done.stderr


def test_a_run_with_nobody_to_ask_applies_on_timeout_and_exits_1(tmp_path, chromium):
    # No viewer and no terminal (stdin is not a TTY): the terminate step waits, then on_timeout stops the run.
    task = task_file(tmp_path, "{approval_timeout_s: 0.5, on_timeout: stop}", target=SHOP, extra="ask_before: [terminate]\n")
    done = glassbox("run", str(task), "--policy", "script", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "no answer from a person within 0.5 s at step 1 (on_timeout: stop)" in done.stdout
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / "run.json").is_file()]
    steps = read_steps(run_dir)
    assert [s.outcome for s in steps] == ["ok", "skipped"]
    assert steps[1].gate is not None and (steps[1].gate.answered_by, steps[1].gate.decision) == ("timeout", "stop")
    assert read_run(run_dir).status is RunStatus.failed


def test_the_terminal_prompt_reads_an_answer_and_stops_when_answered_elsewhere():
    from cli.app import _ask_on_terminal

    pending = read_pending_from(
        {
            "id": "ab" * 16,
            "run_id": "r",
            "step": 2,
            "screenshot": None,
            "screenshot_size": [1280, 800],
            "css_size": [1280, 800],
            "reasoning": "the Publish button",
            "action": {"action": "left_click", "coordinate": [500, 500]},
            "point": [500, 500],
            "policy": "unsure",
            "why": "ask_before",
            "why_text": "left_click is in ask_before",
            "asked_at": "2026-01-01T00:00:00Z",
            "timeout_s": 30,
            "on_timeout": "skip",
        }
    )
    read_fd, write_fd = os.pipe()
    saved = sys.stdin
    try:
        sys.stdin = os.fdopen(read_fd, "r")
        os.write(write_fd, b"maybe\nstop\n")
        assert _ask_on_terminal(pending, threading.Event()) == "stop"  # "maybe" is asked again
        cancelled = threading.Event()
        box: list[str | None] = []
        asking = threading.Thread(target=lambda: box.append(_ask_on_terminal(pending, cancelled)))
        asking.start()
        cancelled.set()  # the viewer answered first
        asking.join(5)
        assert box == [None]
    finally:
        sys.stdin.close()
        sys.stdin = saved
        os.close(write_fd)


def read_pending_from(data: dict) -> PendingStep:
    return PendingStep.model_validate(data)


def test_a_script_step_a_person_skips_is_left_behind_and_the_script_goes_on(tmp_path):
    task = make_task(tmp_path, "{approval_timeout_s: 0.2, on_timeout: skip}", extra="ask_before: [left_click]\n")
    result = run_task(task, policy="script", runs_dir=tmp_path / "runs", executor=FakeExecutor())
    steps = read_steps(result.run_dir)
    # The click is skipped once (nobody answered: on_timeout skip), then the script's next step: not the click
    # proposed again until the step limit.
    assert [(s.outcome, s.action.action if s.action else None) for s in steps] == [("skipped", None), ("ok", "terminate")]
    assert result.status is RunStatus.succeeded, result.end_reason


def test_a_secret_a_person_types_into_an_answer_is_kept_by_name_and_controls_are_refused(tmp_path):
    secret = "Zq-approval-77-secret"
    task = make_task(
        tmp_path,
        "{approval_timeout_s: 60}",
        extra=f"ask_before: [left_click, type]\ninputs:\n  password: {{value: {secret}, secret: true}}\n",
    )
    runs = tmp_path / "runs"
    typed = StepCorrection(action="type", text=f"pw {secret}")
    helper = answer_when_asked(
        runs,
        lambda id: ApprovalAnswer(
            id=id, choice="correct", correction=typed, note=f"it is {secret}", by="viewer", answered_at=datetime.now(timezone.utc)
        ),
    )
    result = run_task(task, policy="script", runs_dir=runs, executor=FakeExecutor(secrets=task.secret_values()))
    helper.join(5)
    [(step, verdict, correction)] = labels_of(result.run_dir)
    assert (step, verdict) == (0, "wrong") and correction is not None
    assert correction["text"] == "pw <secret>password</secret>"
    leaked = [p for p in runs.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
    # What the label form refuses, the answer refuses too (it would be typed, then vanish from the labels).
    for bad in ({"text": "a\x07b"}, {"text": "fine \u202eenif"}):
        with pytest.raises(ValueError, match="control character"):
            StepCorrection(action="type", **bad)
    with pytest.raises(ValueError, match="control character"):
        ApprovalIn(id="0" * 16, choice="skip", note="bell\x07")


def test_a_person_s_correction_no_label_can_hold_still_leaves_the_verdict(tmp_path):
    task = make_task(tmp_path, "{approval_timeout_s: 60}", extra="ask_before: [left_click]\n")
    runs = tmp_path / "runs"
    helper = answer_when_asked(runs, by_viewer("correct", StepCorrection(action="scroll", coordinate=(500, 500))))
    result = run_task(task, policy="script", runs_dir=runs, executor=FakeExecutor())
    helper.join(5)
    listed = Labels(runs).list(result.run_id)
    assert [(lbl.step, lbl.verdict, lbl.correction) for lbl in listed] == [(0, "wrong", None)]  # not vanished


def test_a_step_waiting_for_a_person_waits_no_longer_than_the_runs_time_budget(tmp_path):
    task = make_task(tmp_path, "{approval_timeout_s: 300, on_timeout: stop}", extra="ask_before: [left_click]\n")
    task.limits.time_budget_s = 1.5
    seen: list[float] = []

    def watch() -> None:  # what the viewer would count down from
        deadline = time.monotonic() + 20
        while not seen and time.monotonic() < deadline:
            for run_dir in (tmp_path / "runs").iterdir() if (tmp_path / "runs").is_dir() else []:
                if run_dir.is_dir() and (held := read_pending(run_dir)) is not None:
                    seen.append(held.timeout_s)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    result = run_task(task, policy="script", runs_dir=tmp_path / "runs", executor=FakeExecutor())
    watcher.join(5)
    assert seen and seen[0] <= 1.5, seen  # the budget's time, not the approval's 300 s
    assert time.monotonic() - started < 30  # not the 300 s the approval allows
    assert result.status is RunStatus.failed
    assert "no answer from a person before the run's time budget ran out" in result.end_reason, result.end_reason


def test_a_script_whose_end_is_skipped_stops_at_the_error_limit_not_the_step_limit(tmp_path):
    task = make_task(tmp_path, "{approval_timeout_s: 0.2, on_timeout: skip}", extra="ask_before: [terminate]\n")
    task.limits.max_steps = 40
    result = run_task(task, policy="script", runs_dir=tmp_path / "runs", executor=FakeExecutor())
    steps = read_steps(result.run_dir)
    # click, its own terminate skipped, the no-more-steps terminate skipped, then errors to the limit (3)
    assert len(steps) <= 2 + 1 + task.limits.max_consecutive_errors, [(s.action, s.outcome) for s in steps]
    assert result.status is RunStatus.failed
    assert "the script has no more steps, and ending the run was skipped" in result.end_reason, result.end_reason
