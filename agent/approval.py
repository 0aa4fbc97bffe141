"""A person in the loop: steps held for approval, and a pause button, over a small file channel in the run folder.

A task asks for approval with ``policy.on_low_confidence: ask`` (and ``min_confidence``; ``glassbox run
--ask-below CONF`` sets both) and/or ``ask_before: [terminate, upload_file, ...]``. A step is held before it
acts when its action is listed in ``ask_before``, or when its confidence is below ``min_confidence``; for a
model policy (one that names a model) an unknown confidence counts as below. The script policy is not a model:
it is held only for ``ask_before``.

The channel is a few files in the run folder, the same whether the viewer runs in this process (``glassbox run
--view``) or in another one (``glassbox view`` on the same runs dir)::

    pending.json    the run: the held step (screenshot path, reasoning, proposed action and point, why, when)
    approval.json   the viewer: the answer to it (Approve, Correct with an action, Skip, Stop), by request id
    pause.json      the viewer: Pause pressed (removed by Resume)
    holding.json    the run: it is holding before step N because of the pause

Each file is written whole (temporary file, then rename); an answer is created only when none is there
(``os.link``), so two viewers cannot both answer one step. The gate polls for the answer every 50 ms.

Who asks: a running viewer (one announced in ``RUNS/.viewers/``, even with no page open) answers in the page;
without one, a terminal on a TTY asks too (``terminal_ask``, from the CLI); with neither, nobody answers and
``policy.on_timeout`` applies after ``policy.approval_timeout_s``. ``pending.json`` is written in every case, so
a viewer started while the step waits can still answer it.

What an answer does, and the label it leaves on the step (``labels.jsonl``, as a person's label in the viewer):

=========  ===============================================  ===========================================
Approve    the step acts as the policy decided              correct
Correct    the step acts as the person said (the 0..1000    wrong, with the correction (action, point)
           grid over the screenshot, like labels)
Skip       nothing is done; the run goes on                 wrong, no correction
Stop       nothing is done; the run ends as failed,         wrong, no correction
           "stopped by a person at step N (viewer)"
(timeout)  ``on_timeout``: proceed, skip or stop (default    none: nobody judged the step
           stop, after 300 s; the run ends as failed)
=========  ===============================================  ===========================================

The step records the answer in ``StepRecord.gate``: ``who`` "approval", ``decision``, ``reason`` (why it was
held and what was answered), ``answered_by`` ("viewer", "terminal", "timeout"), ``answered_at``, ``waited_ms``.

Pause holds the loop before its next step (after the step in progress is recorded) until Resume. The time a
step waits for a person or a run is paused counts towards the task's ``time_budget_s``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.events import GateDecision, Hooks, RunEnded, RunStarted, StepDecided, StepRecorded
from agent.prompt import offered_browser_tools
from agent.task import Task
from tools.actions import BROWSER_TOOLS, COMPUTER_USE_ACTIONS, POINT_ACTIONS, Action, ActionError, ToolCall, parse_tool_call
from tools.coords import CoordinateMode
from tools.keys import playwright_chord
from tracer.labels import LabelAdded, append_label_event, new_label_id
from tracer.logs import get_logger
from tracer.run_files import atomic_write, process_alive
from tracer.safe_text import key_names, no_control
from tracer.schema import StepRecord
from tracer.secrets import with_placeholders

log = get_logger("glassbox.approval")

PENDING_FILE = "pending.json"
ANSWER_FILE = "approval.json"
PAUSE_FILE = "pause.json"
HOLDING_FILE = "holding.json"
VIEWERS_DIR = ".viewers"
POLL_S = 0.05
GATE_NAME = "approval"
MAX_FILE = 1_000_000  # a channel file larger than this is not ours

Choice = Literal["approve", "correct", "skip", "stop"]
OnTimeout = Literal["proceed", "skip", "stop"]
Why = Literal["low_confidence", "ask_before", "mismatch"]
# policy.on_mismatch: ask: why a decided step's point does not show what its reasoning named, or None.
MismatchCheck = Callable[["StepDecided"], "str | None"]
# A terminal prompt: shown the held step, answers a choice, or None when ``cancelled`` is set first.
TerminalAsk = Callable[["PendingStep", threading.Event], "Choice | None"]


class StepCorrection(BaseModel):
    """What the step should do instead: an action, its point on the 0..1000 grid over the screenshot, text or keys."""

    model_config = ConfigDict(extra="forbid")

    action: str = "left_click"
    coordinate: tuple[float, float] | None = None
    text: str | None = Field(default=None, max_length=2000)
    keys: list[str] | None = Field(default=None, max_length=16)

    @field_validator("text")
    @classmethod
    def _text_clean(cls, text: str | None) -> str | None:
        return no_control(text)  # typed into the page and kept in the label: as the label form refuses them

    @field_validator("keys")
    @classmethod
    def _keys_clean(cls, keys: list[str] | None) -> list[str] | None:
        return key_names(keys)

    @model_validator(mode="after")
    def _valid(self) -> "StepCorrection":
        names = (*COMPUTER_USE_ACTIONS, *BROWSER_TOOLS)
        if self.action not in names:
            raise ValueError(f"unknown action {self.action!r}; use one of: {', '.join(names)}")
        if self.coordinate is not None and not all(0 <= c <= 1000 for c in self.coordinate):
            raise ValueError("coordinate must be within 0..1000 (the grid over the screenshot)")
        if self.action in POINT_ACTIONS and self.coordinate is None:
            raise ValueError(f"{self.action} needs a point: click on the screenshot")
        if self.action in ("type", "answer") and not self.text:
            raise ValueError(f"{self.action} needs text")
        if self.action == "key" and not self.keys:
            raise ValueError("key needs keys, e.g. ctrl+a")
        return self


class PendingStep(BaseModel):
    """``pending.json``: a step held before it acts, as a person is shown it (secrets masked, like the step)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=r"^[0-9a-f]{16,64}$")  # this request; an answer names it
    run_id: str
    step: int = Field(ge=0)
    screenshot: str | None  # relative to the run folder
    screenshot_size: tuple[int, int]
    css_size: tuple[int, int]
    reasoning: str | None = None
    action: dict[str, Any]  # what the policy proposes
    point: tuple[float, float] | None = None  # the proposed point on the 0..1000 grid over the screenshot
    confidence: float | None = None
    policy: str
    model: str | None = None
    why: Literal["low_confidence", "ask_before", "mismatch"]
    why_text: str
    asked_at: datetime
    timeout_s: float
    on_timeout: OnTimeout
    coordinate_mode: CoordinateMode = CoordinateMode.relative_1000
    coordinate_divisor: float = 1000.0


class ApprovalIn(BaseModel):
    """A person's answer as the viewer receives it (``POST /api/runs/{id}/approval``)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[0-9a-f]{16,64}$")
    choice: Choice
    correction: StepCorrection | None = None
    note: str | None = Field(default=None, max_length=2000)

    @field_validator("note")
    @classmethod
    def _note_clean(cls, note: str | None) -> str | None:
        return no_control(note)

    @model_validator(mode="after")
    def _correction_for_correct(self) -> "ApprovalIn":
        if (self.choice == "correct") != (self.correction is not None):
            raise ValueError("a correction goes with correct, and only with correct")
        return self


class ApprovalAnswer(ApprovalIn):
    """``approval.json``: the answer, who gave it and when."""

    by: Literal["viewer", "terminal"] = "viewer"
    answered_at: datetime


class PauseState(BaseModel):
    paused: bool  # Pause pressed, not yet resumed
    holding_before: int | None = None  # the run is holding before this step


class AnswerRefused(Exception):
    """An answer that cannot be taken (nothing waits, another step waits, already answered, invalid correction)."""


# -- the channel --------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE + 1)
    except OSError:
        return None
    if len(data) > MAX_FILE:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def read_pending(run_dir: Path) -> PendingStep | None:
    """The step waiting for a person in ``run_dir``, or None (nothing waits, or the file is not a valid request)."""
    data = _read_json(run_dir / PENDING_FILE)
    if data is None:
        return None
    try:
        return PendingStep.model_validate(data)
    except ValidationError:
        return None


def correction_action(correction: StepCorrection, pending: PendingStep, browser_tools: tuple[str, ...] = BROWSER_TOOLS) -> Action:
    """The action a correction stands for, its point moved from the 0..1000 grid onto the task's coordinates;
    raises :class:`AnswerRefused` when it is not a valid action."""
    args: dict[str, Any] = {"action": correction.action}
    if correction.coordinate is not None:
        x, y = correction.coordinate
        if pending.coordinate_mode is CoordinateMode.relative_1000:
            scale_x = scale_y = pending.coordinate_divisor / 1000
        else:  # absolute: pixels of what the model was shown, measured like the loop's grid check (CSS size)
            scale_x, scale_y = pending.css_size[0] / 1000, pending.css_size[1] / 1000
        args["coordinate"] = [round(x * scale_x, 1), round(y * scale_y, 1)]
    if correction.action in ("type", "answer"):
        args["text"] = correction.text
    if correction.action == "key":
        args["keys"] = correction.keys
    if correction.action in ("scroll", "hscroll"):
        args["pixels"] = pending.action.get("pixels", -300 if correction.action == "scroll" else 300)
    if correction.action == "terminate":
        args["status"] = pending.action.get("status", "success")
    if correction.action == "wait":
        args["time"] = pending.action.get("time", 1.0)
    name = "computer_use"
    if correction.action in BROWSER_TOOLS:
        name = correction.action
        args.pop("action")
        if correction.action == "upload_file":
            args["file"] = pending.action.get("file")
        if correction.action == "goto_url":
            args["url"] = correction.text
    try:
        if correction.action == "key":  # known key names (both executors know the same ones), not at act time
            playwright_chord(correction.keys or [])
        return parse_tool_call(ToolCall(name=name, arguments=args), browser_tools=browser_tools)
    except ActionError as exc:
        raise AnswerRefused(f"the correction is not a valid action: {exc}") from None


def give_answer(run_dir: Path, answer: ApprovalAnswer) -> PendingStep:
    """Answer the step waiting in ``run_dir``; returns it. Raises :class:`AnswerRefused` when no step waits, the
    answer is for another request, a correction is not valid, or the step was answered already."""
    pending = read_pending(run_dir)
    if pending is None:
        raise AnswerRefused("no step of this run is waiting for an answer")
    if not secrets.compare_digest(pending.id, answer.id):
        raise AnswerRefused(f"step {pending.step} is waiting now; that answer was for another request")
    if answer.correction is not None:
        correction_action(answer.correction, pending)
    tmp = run_dir / f".{ANSWER_FILE}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        atomic_write(tmp, answer.model_dump_json().encode())
        try:
            os.link(tmp, run_dir / ANSWER_FILE)  # fails when an answer is there: the first one counts
        except FileExistsError:
            raise AnswerRefused(f"step {pending.step} has been answered already") from None
    finally:
        _remove(tmp)
    return pending


def pause_state(run_dir: Path) -> PauseState:
    holding = _read_json(run_dir / HOLDING_FILE)
    before = holding.get("before_step") if isinstance(holding, dict) else None
    return PauseState(
        paused=(run_dir / PAUSE_FILE).is_file(),
        holding_before=before if isinstance(before, int) and not isinstance(before, bool) and before >= 0 else None,
    )


def set_paused(run_dir: Path, paused: bool) -> PauseState:
    """Pause (the run holds before its next step) or resume the run in ``run_dir``."""
    if paused:
        atomic_write(run_dir / PAUSE_FILE, json.dumps({"paused_at": datetime.now(timezone.utc).isoformat()}).encode())
    else:
        _remove(run_dir / PAUSE_FILE)
    return pause_state(run_dir)


# -- viewers announce themselves ----------------------------------------------------------------------------------


def announce_viewer(runs_dir: Path, url: str) -> Path:
    """Tell runs writing into ``runs_dir`` that a viewer serves it (so they ask there, not on the terminal);
    returns the file to remove when the viewer stops (:func:`withdraw_viewer`)."""
    folder = runs_dir / VIEWERS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for stale, alive in _announced(runs_dir):
        if not alive:  # a viewer killed without notice; one still serving keeps its file
            _remove(stale)
    path = folder / f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.json"
    info = {"pid": os.getpid(), "host": socket.gethostname(), "url": url, "since": datetime.now(timezone.utc).isoformat()}
    atomic_write(path, json.dumps(info).encode())
    return path


def withdraw_viewer(path: Path) -> None:
    _remove(path)


def viewer_running(runs_dir: Path) -> bool:
    """Whether a viewer that is still alive announced itself for ``runs_dir`` (one killed without notice is not)."""
    return any(alive for _, alive in _announced(runs_dir))


def _announced(runs_dir: Path) -> list[tuple[Path, bool]]:
    """The viewer files of ``runs_dir`` and whether each one's process is alive."""
    try:
        files = list((runs_dir / VIEWERS_DIR).glob("*.json"))
    except OSError:
        return []
    found = []
    for path in files:
        info = _read_json(path)
        if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
            continue
        host = info.get("host") if isinstance(info.get("host"), str) else None
        found.append((path, process_alive(info["pid"], host)))
    return found


# -- the gate -----------------------------------------------------------------------------------------------------


class _Request:
    """One held step: its question, and the answer once taken (guarded by ``lock`` against the timeout)."""

    def __init__(self, pending: PendingStep) -> None:
        self.pending = pending
        self.lock = threading.Lock()
        self.cancelled = threading.Event()
        self.answer: ApprovalAnswer | None = None
        self.decision: GateDecision | None = None


class PersonInTheLoop:
    """The approval gate and the pause hold of one run (see the module docstring). :func:`attach_person` adds it."""

    name = GATE_NAME

    def __init__(
        self, task: Task, runs_dir: Path, *, terminal_ask: TerminalAsk | None = None, mismatch: MismatchCheck | None = None
    ) -> None:
        settings = task.policy
        self.mismatch = mismatch
        self.task = task
        self.runs_dir = runs_dir
        self.ask_below = settings.min_confidence if settings.on_low_confidence == "ask" else None
        self.ask_before = tuple(task.ask_before)
        self.timeout_s = settings.approval_timeout_s
        self.on_timeout: OnTimeout = settings.on_timeout
        self.terminal_ask = terminal_ask
        self.run_dir: Path | None = None
        self._request: _Request | None = None
        self._answers: dict[int, ApprovalAnswer] = {}  # step -> the person's answer, labelled once recorded

    @property
    def asks(self) -> bool:
        return self.ask_below is not None or bool(self.ask_before) or self.mismatch is not None

    # subscribers

    def started(self, event: RunStarted) -> None:
        self.run_dir = event.run_dir
        for name in (PENDING_FILE, ANSWER_FILE, HOLDING_FILE):  # a resumed folder may hold stale ones
            _remove(event.run_dir / name)
        self.hold_while_paused(0)

    def recorded(self, event: StepRecorded) -> None:
        step = event.step
        answer = self._answers.pop(step.index, None)
        if answer is not None and self.run_dir is not None:
            self._label(step, answer)
        ends = step.gate is not None and step.gate.decision == "stop"
        if ends or (step.action is not None and step.action.action == "terminate" and step.outcome == "ok"):
            return  # the run ends now: nothing to hold before
        self.hold_while_paused(step.index + 1)

    def ended(self, event: RunEnded) -> None:
        for name in (PENDING_FILE, ANSWER_FILE, PAUSE_FILE, HOLDING_FILE):
            _remove(event.run_dir / name)

    def hold_while_paused(self, next_step: int) -> None:
        """Hold the loop (this runs in its thread) while the run is paused; Ctrl-C still interrupts."""
        run_dir = self.run_dir
        if run_dir is None or not (run_dir / PAUSE_FILE).is_file():
            return
        log.info("run paused", step=next_step)
        atomic_write(run_dir / HOLDING_FILE, json.dumps({"before_step": next_step}).encode())
        try:
            while (run_dir / PAUSE_FILE).is_file():
                time.sleep(POLL_S * 2)
        finally:
            _remove(run_dir / HOLDING_FILE)
        log.info("run resumed", step=next_step)

    # the gate

    def held_for(self, event: StepDecided) -> tuple[Why, str] | None:
        """Why this step waits for a person, or None."""
        action = event.decision.action
        name = getattr(action, "action", None)
        if name in self.ask_before:
            return "ask_before", f"{name} is in ask_before"
        if self.mismatch is not None and action is not None:
            reason = self.mismatch(event)
            if reason is not None:
                return "mismatch", reason
        if self.ask_below is None:
            return None
        confidence = event.decision.confidence
        if confidence is None:
            if event.model is None:  # not a model (the script): nothing to be unsure of
                return None
            return "low_confidence", f"confidence unknown (counts as below {self.ask_below:g})"
        if confidence < self.ask_below:
            return "low_confidence", f"confidence {confidence:.2f} is below {self.ask_below:g}"
        return None

    def before_act(self, event: StepDecided) -> GateDecision:
        held = self.held_for(event)
        if held is None or self.run_dir is None or event.decision.action is None:
            return GateDecision.proceed()
        request = _Request(self._pending(event, *held))
        self._request = request
        run_dir = self.run_dir
        _remove(run_dir / ANSWER_FILE)
        atomic_write(run_dir / PENDING_FILE, request.pending.model_dump_json().encode())
        ask = self.terminal_ask if not viewer_running(self.runs_dir) else None
        # Where to answer and what happens otherwise: a run with no viewer and no terminal only waits it out.
        where = "on this terminal" if ask is not None else f"in the viewer (glassbox view --runs-dir {self.runs_dir})"
        log.info(
            "step held for a person",
            step=event.index,
            why=held[1],
            answer=where,
            then=f"{self.on_timeout} after {self.timeout_s:g} s without an answer",
        )
        terminal: list[Choice | None] = []
        if ask is not None:
            threading.Thread(
                target=lambda: terminal.append(ask(request.pending, request.cancelled)), name="glassbox-ask", daemon=True
            ).start()
        try:
            while not request.cancelled.is_set():
                answer = self._take_answer(run_dir, request)
                if answer is None and terminal and terminal[0] is not None:
                    answer = ApprovalAnswer(
                        id=request.pending.id, choice=terminal[0], by="terminal", answered_at=datetime.now(timezone.utc)
                    )
                if answer is not None:
                    with request.lock:
                        if request.cancelled.is_set():  # the timeout came first; its answer stands
                            break
                        request.answer, request.decision = answer, self._decide(event, request.pending, answer)
                        self._answers[event.index] = answer
                        request.cancelled.set()  # a terminal prompt stops asking
                        return request.decision
                time.sleep(POLL_S)
        finally:
            self._withdraw(run_dir, request)
        return GateDecision.proceed()  # not used: the registry has applied on_timeout

    def timed_out(self, event: StepDecided) -> GateDecision:
        """Nobody answered in time (called by the registry in the loop's thread): withdraw the question and
        apply ``on_timeout`` (or the answer that came in at the very last moment)."""
        request = self._request
        if request is not None:
            with request.lock:
                request.cancelled.set()
                decided = request.decision
            if self.run_dir is not None:
                self._withdraw(self.run_dir, request)
            if decided is not None:
                return decided
        why = request.pending.why_text if request is not None else "held"
        waited = (datetime.now(timezone.utc) - request.pending.asked_at).total_seconds() if request else self.timeout_s
        within = (
            f"no answer within {self.timeout_s:g} s"
            if waited >= self.timeout_s - 0.5
            else f"no answer before the run's time budget ran out ({waited:.0f} s)"  # the registry cut the wait short
        )
        reason = f"{why}; {within} (on_timeout: {self.on_timeout})"
        if self.on_timeout == "proceed":
            return GateDecision.proceed(reason, by="timeout")
        if self.on_timeout == "skip":
            return GateDecision.skip(reason, by="timeout")
        return GateDecision.stop(
            reason,
            by="timeout",
            fail_run=True,
            end_reason=f"{within.replace('no answer', 'no answer from a person')} at step {event.index} (on_timeout: stop)",
        )

    def _pending(self, event: StepDecided, why: Why, why_text: str) -> PendingStep:
        action = event.decision.action
        assert action is not None
        settings = self.task.policy
        point = None
        coordinate = getattr(action, "coordinate", None)
        if coordinate is not None:
            if settings.coordinate_mode is CoordinateMode.relative_1000:
                point = (coordinate[0] / settings.coordinate_divisor * 1000, coordinate[1] / settings.coordinate_divisor * 1000)
            else:
                css_w, css_h = event.observation.css_size
                point = (coordinate[0] / css_w * 1000, coordinate[1] / css_h * 1000)
            point = (round(min(max(point[0], 0), 1000), 1), round(min(max(point[1], 0), 1000), 1))
        return PendingStep(
            id=secrets.token_hex(16),
            run_id=event.run_id,
            step=event.index,
            screenshot=event.observation.screenshot,
            screenshot_size=event.observation.screenshot_size,
            css_size=event.observation.css_size,
            reasoning=event.decision.reasoning,
            action=action.model_dump(mode="json"),
            point=point,
            confidence=event.decision.confidence,
            policy=event.policy,
            model=event.model,
            why=why,
            why_text=why_text,
            asked_at=datetime.now(timezone.utc),
            # what the viewer counts down: the approval's time, or less when the run's budget ends the wait first
            timeout_s=min(self.timeout_s, event.budget_left_s) if event.budget_left_s is not None else self.timeout_s,
            on_timeout=self.on_timeout,
            coordinate_mode=settings.coordinate_mode,
            coordinate_divisor=settings.coordinate_divisor,
        )

    def _take_answer(self, run_dir: Path, request: _Request) -> ApprovalAnswer | None:
        path = run_dir / ANSWER_FILE
        data = _read_json(path)
        if data is None:
            if path.exists() and path.stat().st_size > MAX_FILE:
                _remove(path)
            return None
        try:
            answer = ApprovalAnswer.model_validate(data)
        except ValidationError as exc:
            log.warning("approval answer ignored", error=str(exc).splitlines()[0])
            _remove(path)
            return None
        if answer.id != request.pending.id:  # for an earlier request: not this step's
            _remove(path)
            return None
        return answer

    def _decide(self, event: StepDecided, pending: PendingStep, answer: ApprovalAnswer) -> GateDecision:
        where = "in the viewer" if answer.by == "viewer" else "on the terminal"
        note = f": {answer.note}" if answer.note else ""
        if answer.choice == "approve":
            return GateDecision.proceed(f"{pending.why_text}; approved {where}{note}", by=answer.by)
        if answer.choice == "skip":
            return GateDecision.skip(f"{pending.why_text}; skipped {where}{note}", by=answer.by)
        if answer.choice == "stop":
            return GateDecision.stop(
                f"{pending.why_text}; stopped {where}{note}",
                by=answer.by,
                fail_run=True,
                end_reason=f"stopped by a person at step {event.index} ({answer.by})",
            )
        assert answer.correction is not None  # ApprovalIn checks it
        try:
            action = correction_action(answer.correction, pending, offered_browser_tools(self.task))
        except AnswerRefused as exc:  # the viewer checked it; a hand-written answer may still be wrong
            return GateDecision.skip(f"{pending.why_text}; the correction {where} could not be used ({exc})", by=answer.by)
        return GateDecision.replace(action, f"{pending.why_text}; corrected {where}{note}", by=answer.by)

    def _withdraw(self, run_dir: Path, request: _Request) -> None:
        """Remove the question (if it is still this request's) and its answer."""
        current = read_pending(run_dir)
        if current is None or current.id == request.pending.id:
            _remove(run_dir / PENDING_FILE)
            _remove(run_dir / ANSWER_FILE)

    def _label(self, step: StepRecord, answer: ApprovalAnswer) -> None:
        """The person's answer as a label of the step (see the table in the module docstring)."""
        assert self.run_dir is not None
        done = {"approve": "approved", "correct": "corrected", "skip": "skipped", "stop": "stopped the run"}[answer.choice]
        secrets = self.task.secret_values()  # a value a person typed is kept by name, as a label's is
        said = with_placeholders(answer.note, secrets)
        note = f"{done} before acting ({answer.by})" + (f": {said}" if said else "")
        correction = None
        if answer.choice == "correct" and answer.correction is not None:
            correction = answer.correction.model_dump(exclude_none=True)
            if "text" in correction:
                correction["text"] = with_placeholders(correction["text"], secrets)
            if answer.correction.coordinate is not None:
                x, y = answer.correction.coordinate
                width, height = step.screenshot_size
                correction["pixel"] = [round(x / 1000 * width), round(y / 1000 * height)]
        label = LabelAdded(
            id=new_label_id(),
            step=step.index,
            verdict="correct" if answer.choice == "approve" else "wrong",
            correction=correction,
            note=note,
            created_at=answer.answered_at,
        )
        try:
            append_label_event(self.run_dir, label)
        except OSError as exc:
            log.error("approval label not written", step=step.index, error=str(exc))


def attach_person(
    hooks: Hooks, task: Task, runs_dir: Path, *, terminal_ask: TerminalAsk | None = None, mismatch: MismatchCheck | None = None
) -> PersonInTheLoop:
    """Let a person pause the run, and (when the task asks for approval, or ``mismatch`` is given for
    ``on_mismatch: ask``) answer its held steps."""
    person = PersonInTheLoop(task, runs_dir, terminal_ask=terminal_ask, mismatch=mismatch)
    hooks.on(RunStarted, person.started)
    hooks.on(StepRecorded, person.recorded)
    hooks.on(RunEnded, person.ended)
    if person.asks:
        hooks.add_gate(person, timeout_s=person.timeout_s, name=GATE_NAME, on_timeout=person.timed_out)
    return person
