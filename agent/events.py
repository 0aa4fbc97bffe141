"""The loop as a sequence of typed events, and the one registry everything that watches a run subscribes to.

A run publishes, in this order::

    RunStarted                      the record is on disk; nothing has been perceived yet
    StepDecided, StepRecorded       per step: the policy decided (before anything acts), the step was recorded
    ...
    RunEnded                        last, also when the harness broke (status failed) or Ctrl-C stopped it

Subscribers (the CLI printer, the run summary, evaluation, OpenTelemetry: :mod:`agent.otel`) register on a :class:`Hooks` and
never reach into the loop, the way smolagents' ``CallbackRegistry`` and httpx's ``event_hooks`` work::

    hooks = Hooks()
    hooks.on(StepRecorded, lambda e: print(e.step.index, e.step.outcome))
    hooks.subscribe(events.append)                  # every event
    run_task(task, hooks=hooks)

Callbacks run in registration order, in the loop's thread. One that raises is logged (``glassbox.events``) and
the run goes on; a ``KeyboardInterrupt`` is not caught (it interrupts the run, like Ctrl-C anywhere else).
Events carry the records as written: secrets masked, the screenshot by size and path, never its bytes.

**Holding a step.** A :class:`StepGate` (a person's approval, a guard) is asked after the policy decided and
before the executor acts, for every step that has an action to perform::

    class Approve:
        name = "terminal"
        def before_act(self, event: StepDecided) -> GateDecision:
            return GateDecision.proceed() if input(f"{event.decision.action}? ") == "y" else GateDecision.skip("no")

    hooks.add_gate(Approve(), timeout_s=120)

Gates are asked in registration order, each with its own timeout; the first answer other than proceed decides
the step and the gates after it are not asked. The step records the answer in ``StepRecord.gate``:

- ``proceed``: the step acts as the policy decided.
- ``skip``: nothing is performed; the step is recorded with outcome ``skipped`` (not an error) and the model's
  action in ``gate.model_action``; the run goes on (the policy sees the skipped step in its history).
- ``stop``: nothing is performed; the step is recorded as skipped and the run ends with status
  ``interrupted`` (a person or guard ended it on purpose: like Ctrl-C, no success checks run and no verdict is
  given) and the end reason ``stopped by <gate> at step N: <reason>``.
- ``replace(action)``: the given action is validated like a model's (the task's tools, the coordinate grid) and
  performed instead; ``action`` holds it and ``gate.model_action`` the model's. An invalid replacement is an
  action error step.

A gate that raises, or answers something that is not a :class:`GateDecision`, counts as proceed (recorded
with ``error``, and logged). A gate that does not answer within its timeout counts as proceed too (recorded
with ``timed_out``): the timeout is how long a run may wait, not a veto; unless the gate was added with
``on_timeout``, a decision or a function of the event (called in the loop's thread, so a gate can withdraw its
question) that answers instead: a person's approval stops or skips a step nobody answered
(:mod:`agent.approval`). A gate that must fail closed catches its own errors and answers ``stop``. A gate left
waiting runs on in a daemon thread; its late answer is dropped.

A decision may say who answered for the gate (``by``: "viewer", "terminal", "timeout"), recorded as
``gate.answered_by`` with ``gate.answered_at``; a ``stop`` may end the run as failed rather than interrupted
(``fail_run``) and give the run's end reason (``end_reason``) instead of ``stopped by <gate> at step N``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar, Union, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tools.actions import Action, ToolCall
from tools.views import ElementInfo
from tracer.logs import get_logger
from tracer.schema import GateRecord, RunRecord, RunStatus, StepErrorKind, StepRecord

log = get_logger("glassbox.events")

DEFAULT_GATE_TIMEOUT_S = 300.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- events -------------------------------------------------------------------------------------------------------


class RunStarted(_Frozen):
    """The run record is written; the loop is about to take its first screenshot."""

    kind: Literal["run_started"] = "run_started"
    run: RunRecord
    run_dir: Path


class ObservationSummary(_Frozen):
    """What the policy looked at, without the screenshot's bytes (``StepRecorded`` gives its path)."""

    url: str | None
    title: str | None
    screenshot_size: tuple[int, int]  # device pixels
    css_size: tuple[int, int]
    device_scale_factor: float
    screenshot: str | None = None  # the step's screenshot, relative to the run folder (written before gates ask)


class Decision(_Frozen):
    """The policy's decision for this step: the tool call it runs and the action that came of it (None, with
    ``error``, when the output cannot be acted on: a parse error, an invalid action, low confidence)."""

    tool_calls: list[ToolCall] = Field(default_factory=list)
    action: Action | None = None
    reasoning: str | None = None
    confidence: float | None = None
    call_index: int = 0  # this step runs call ``call_index`` of ``calls_in_output`` of one model output
    calls_in_output: int = 1
    error: str | None = None
    error_kind: StepErrorKind | None = None


class StepDecided(_Frozen):
    """The policy decided; nothing has acted yet. Gates are asked with this event."""

    kind: Literal["step_decided"] = "step_decided"
    run_id: str
    index: int
    observation: ObservationSummary
    decision: Decision
    policy: str
    model: str | None = None
    # The element under the proposed point before anything acted, where the executor knows it (a browser) and a
    # gate judges the reasoning against it (on_mismatch: stop / ask); None otherwise.
    element: ElementInfo | None = None
    budget_left_s: float | None = None  # what is left of the run's time budget: no gate holds the step longer


class StepRecorded(_Frozen):
    """The step is on disk (``steps.jsonl``); ``step`` is the record as written."""

    kind: Literal["step_recorded"] = "step_recorded"
    run_id: str
    step: StepRecord


class RunEnded(_Frozen):
    """The run record is final (status, end reason, checks, summary)."""

    kind: Literal["run_ended"] = "run_ended"
    run: RunRecord
    run_dir: Path
    status: RunStatus
    end_reason: str


RunEvent = Annotated[Union[RunStarted, StepDecided, StepRecorded, RunEnded], Field(discriminator="kind")]
EVENT_TYPES: tuple[type[BaseModel], ...] = (RunStarted, StepDecided, StepRecorded, RunEnded)

E = TypeVar("E", RunStarted, StepDecided, StepRecorded, RunEnded)


# -- gates --------------------------------------------------------------------------------------------------------


class GateDecision(_Frozen):
    """A gate's answer: proceed, skip, stop, or replace the action (``action``), with a reason."""

    decision: Literal["proceed", "skip", "stop", "replace"]
    reason: str | None = None
    action: Action | None = None  # replace only
    by: str | None = None  # who answered for the gate (recorded as gate.answered_by)
    fail_run: bool = False  # stop only: the run ends as failed, not interrupted
    end_reason: str | None = None  # stop only: the run's end reason

    @model_validator(mode="after")
    def _action_for_replace(self) -> "GateDecision":
        if (self.decision == "replace") != (self.action is not None):
            raise ValueError("an action goes with replace, and only with replace")
        if self.decision != "stop" and (self.fail_run or self.end_reason is not None):
            raise ValueError("fail_run and end_reason go with stop, and only with stop")
        return self

    @classmethod
    def proceed(cls, reason: str | None = None, *, by: str | None = None) -> "GateDecision":
        return cls(decision="proceed", reason=reason, by=by)

    @classmethod
    def skip(cls, reason: str | None = None, *, by: str | None = None) -> "GateDecision":
        return cls(decision="skip", reason=reason, by=by)

    @classmethod
    def stop(
        cls, reason: str | None = None, *, by: str | None = None, fail_run: bool = False, end_reason: str | None = None
    ) -> "GateDecision":
        return cls(decision="stop", reason=reason, by=by, fail_run=fail_run, end_reason=end_reason)

    @classmethod
    def replace(cls, action: Action, reason: str | None = None, *, by: str | None = None) -> "GateDecision":
        return cls(decision="replace", action=action, reason=reason, by=by)


@runtime_checkable
class StepGate(Protocol):
    """Something that may hold a step before it acts (see the module docstring)."""

    def before_act(self, event: StepDecided) -> GateDecision: ...


class GateOutcome(_Frozen):
    """What the gates concluded for one step: the deciding answer and the record the step keeps."""

    decision: GateDecision
    record: GateRecord


OnTimeout = Union[GateDecision, Callable[[StepDecided], GateDecision]]


class _Gate:
    def __init__(
        self, ask: Callable[[StepDecided], Any], name: str, timeout_s: float | None, on_timeout: OnTimeout | None = None
    ) -> None:
        self.ask, self.name, self.timeout_s, self.on_timeout = ask, name, timeout_s, on_timeout


class _Answer:
    """One gate's answer as the registry saw it."""

    def __init__(
        self, gate: str, decision: GateDecision, waited_ms: float, timed_out: bool = False, error: str | None = None
    ) -> None:
        self.gate, self.decision, self.waited_ms, self.timed_out, self.error = gate, decision, waited_ms, timed_out, error
        self.at = datetime.now(timezone.utc)


# -- the registry -------------------------------------------------------------------------------------------------


class Hooks:
    """Subscribers and gates of a run. ``gate_timeout_s`` is how long a gate may hold a step unless
    :meth:`add_gate` says otherwise."""

    def __init__(self, *, gate_timeout_s: float = DEFAULT_GATE_TIMEOUT_S) -> None:
        if not gate_timeout_s > 0:
            raise ValueError(f"gate_timeout_s must be positive, not {gate_timeout_s!r}")
        self.gate_timeout_s = gate_timeout_s
        self._subscribers: list[tuple[type[BaseModel] | None, Callable[[Any], object]]] = []
        self._gates: list[_Gate] = []

    def on(self, event_type: type[E], callback: Callable[[E], object]) -> Callable[[], None]:
        """Call ``callback`` with every event of ``event_type``; returns a function that unsubscribes it."""
        if event_type not in EVENT_TYPES:
            raise TypeError(f"not a run event type: {event_type!r}")
        return self._add(event_type, callback)

    def subscribe(self, callback: Callable[[RunStarted | StepDecided | StepRecorded | RunEnded], object]) -> Callable[[], None]:
        """Call ``callback`` with every event; returns a function that unsubscribes it."""
        return self._add(None, callback)

    def add_gate(
        self,
        gate: StepGate | Callable[[StepDecided], GateDecision],
        *,
        timeout_s: float | None = None,
        name: str | None = None,
        on_timeout: OnTimeout | None = None,
    ) -> Callable[[], None]:
        """Ask ``gate`` (a :class:`StepGate`, or a function of the event) before each step acts, waiting at most
        ``timeout_s`` (default: the registry's), then answering ``on_timeout`` (default: proceed); returns a
        function that removes it."""
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s!r}")
        if on_timeout is not None and not (isinstance(on_timeout, GateDecision) or callable(on_timeout)):
            raise TypeError(f"on_timeout must be a GateDecision or a function of the event, not {on_timeout!r}")
        ask = gate.before_act if isinstance(gate, StepGate) else gate
        label = name or getattr(gate, "name", None) or getattr(gate, "__qualname__", None) or type(gate).__name__
        entry = _Gate(ask, str(label), timeout_s, on_timeout)
        self._gates.append(entry)
        return lambda: self._gates.remove(entry) if entry in self._gates else None

    @property
    def has_gates(self) -> bool:
        return bool(self._gates)

    def copy(self) -> "Hooks":
        """A registry with the same subscribers and gates; adding to it leaves this one as it is."""
        other = Hooks(gate_timeout_s=self.gate_timeout_s)
        other._subscribers, other._gates = list(self._subscribers), list(self._gates)
        return other

    def publish(self, event: RunStarted | StepDecided | StepRecorded | RunEnded) -> None:
        """Give ``event`` to its subscribers in registration order; a failing one is logged and skipped."""
        for event_type, callback in list(self._subscribers):
            if event_type is not None and not isinstance(event, event_type):
                continue
            try:
                callback(event)
            except Exception as exc:  # a subscriber never breaks the run (KeyboardInterrupt is no Exception)
                log.error(
                    "subscriber failed",
                    kind=event.kind,
                    subscriber=_name(callback),
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=True,
                )

    def before_act(self, event: StepDecided, *, deadline: float | None = None) -> GateOutcome | None:
        """Ask the gates about ``event`` in order; None when there are none. ``deadline`` (``time.monotonic()``):
        when the run's time budget runs out; no gate holds the step past it (its ``on_timeout`` applies then)."""
        if not self._gates:
            return None
        answers: list[_Answer] = []
        for gate in list(self._gates):
            answer = self._ask(gate, event, deadline)
            answers.append(answer)
            if answer.decision.decision != "proceed":
                break
        deciding = answers[-1]
        if deciding.decision.decision == "proceed":
            deciding = next((a for a in answers if a.timed_out or a.error), deciding)
        decision = deciding.decision
        model_action = None
        if decision.decision != "proceed" and event.decision.action is not None:
            model_action = event.decision.action
        record = GateRecord(
            who=deciding.gate,
            decision=decision.decision,
            reason=decision.reason,
            waited_ms=round(sum(a.waited_ms for a in answers), 2),
            timed_out=deciding.timed_out,
            error=deciding.error,
            model_action=model_action,
            answered_by=decision.by,
            answered_at=deciding.at if decision.by is not None else None,
        )
        return GateOutcome(decision=decision, record=record)

    def _add(self, event_type: type[BaseModel] | None, callback: Callable[[Any], object]) -> Callable[[], None]:
        if not callable(callback):
            raise TypeError(f"a subscriber must be callable, not {callback!r}")
        entry = (event_type, callback)
        self._subscribers.append(entry)
        return lambda: self._subscribers.remove(entry) if entry in self._subscribers else None

    def _ask(self, gate: _Gate, event: StepDecided, deadline: float | None = None) -> _Answer:
        timeout = gate.timeout_s if gate.timeout_s is not None else self.gate_timeout_s
        if deadline is not None:
            timeout = max(0.01, min(timeout, deadline - time.monotonic()))
        box: list[tuple[Any, BaseException | None]] = []
        done = threading.Event()

        def run() -> None:
            try:
                box.append((gate.ask(event), None))
            except BaseException as exc:  # noqa: BLE001  # reported to the loop's thread, which decides
                box.append((None, exc))
            finally:
                done.set()

        started = time.perf_counter()
        # A daemon thread: a gate that never answers cannot keep the process alive after the run.
        threading.Thread(target=run, name=f"glassbox-gate-{gate.name}", daemon=True).start()
        answered = done.wait(timeout)
        waited = round((time.perf_counter() - started) * 1000, 2)
        if not answered:
            log.warning("gate timed out", gate=gate.name, step=event.index, timeout_s=timeout)
            if gate.on_timeout is None:
                reason = f"no answer within {timeout:g} s; the step went on"
                return _Answer(gate.name, GateDecision.proceed(reason), waited, timed_out=True)
            return self._timed_out(gate, event, timeout, waited)
        value, exc = box[0]
        if exc is not None:
            error = f"{type(exc).__name__}: {exc}"
            log.error("gate failed", gate=gate.name, step=event.index, error=error)
            return _Answer(gate.name, GateDecision.proceed("the gate failed; the step went on"), waited, error=error)
        if not isinstance(value, GateDecision):
            error = f"the gate answered {type(value).__name__}, not a GateDecision"
            log.error("gate failed", gate=gate.name, step=event.index, error=error)
            return _Answer(gate.name, GateDecision.proceed("the gate failed; the step went on"), waited, error=error)
        return _Answer(gate.name, value, waited)

    def _timed_out(self, gate: _Gate, event: StepDecided, timeout: float, waited: float) -> _Answer:
        """The gate's ``on_timeout`` answer (a function of it that fails: stop, since the gate asked not to proceed)."""
        fallback = gate.on_timeout
        if isinstance(fallback, GateDecision):
            return _Answer(gate.name, fallback, waited, timed_out=True)
        assert fallback is not None
        value: object = None
        error: str | None = None
        try:
            value = fallback(event)
        except Exception as exc:  # noqa: BLE001  # recorded; KeyboardInterrupt still interrupts
            error = f"{type(exc).__name__}: {exc}"
        if error is None and not isinstance(value, GateDecision):
            error = f"on_timeout answered {type(value).__name__}, not a GateDecision"
        if error is not None or not isinstance(value, GateDecision):
            log.error("gate on_timeout failed", gate=gate.name, step=event.index, error=error)
            reason = f"no answer within {timeout:g} s, and on_timeout failed; the run stopped"
            return _Answer(gate.name, GateDecision.stop(reason), waited, timed_out=True, error=error)
        return _Answer(gate.name, value, waited, timed_out=True)


def _name(callback: object) -> str:
    return str(getattr(callback, "__qualname__", None) or type(callback).__name__)
