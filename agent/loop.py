"""The perceive -> think -> act -> record loop, with limits and end reasons.

Usage::

    from agent import load_task, run_task

    result = run_task(load_task("tasks/publish_product.yaml"), runs_dir=Path("runs"))
    print(result.status, result.run_dir)
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, TypedDict

import structlog
from pydantic import BaseModel

from agent.approval import TerminalAsk, attach_person
from agent.checks import run_checks
from agent.consistency import check_action
from agent.environment import Environment, open_environment
from agent.events import Decision, GateOutcome, Hooks, ObservationSummary, RunEnded, RunStarted, StepDecided, StepRecorded
from agent.mismatch_gate import EarlyConsistency, attach_mismatch, proposed_css
from agent.ocr_worker import attach_ocr
from agent.parse import coordinate_error
from agent.policies import check_policy, make_policy, with_policy_overrides
from agent.policy import Policy, PolicyDecision, PolicyOutput
from agent.prompt import offered_browser_tools
from agent.setup import SetupFailed, run_setup
from agent.task import Task
from tools.actions import Action, ActionError, Terminate, parse_tool_call
from tools.errors import GlassboxError, HarnessError
from tools.executor import Executor, page_of
from tools.views import ElementInfo, Observation, Outcome
from tracer.attention import AttentionMaps
from tracer.attention import figures as attention_figures
from tracer.logs import RunLog
from tracer.schema import (
    AttentionRef,
    CheckResult,
    Evidence,
    GateRecord,
    RunRecord,
    RunStatus,
    StepErrorKind,
    StepRecord,
    StepTimings,
)
from tracer.secrets import Scrubber
from tracer.store import RunWriter, atomic_write, new_run_id

log = structlog.get_logger("glassbox.loop")

StepCallback = Callable[[StepRecord], None]


class _Links(TypedDict, total=False):
    """Where a run comes from (a replay or resume of another run's step) and the id it is to take."""

    parent_run: str | None
    parent_step: int | None
    run_id: str | None
    eval_id: str | None
    episode_id: str | None


class RunResult(BaseModel):
    """What a finished run reports back to the caller."""

    run_id: str
    run_dir: Path
    status: RunStatus
    end_reason: str
    steps: int
    checks: list[CheckResult]
    target_url: str | None
    # The harness failed around a recorded run (the task's setup): an eval retries it, unlike a task failure,
    # unless the failure is lasting (the task file's own fault: a setup script that does not parse, ...).
    harness_failure: bool = False
    harness_failure_lasting: bool = False


def run_task(
    task: Task,
    *,
    policy: str | None = None,
    runs_dir: Path = Path("runs"),
    layout_seed: int | None = None,
    headed: bool | None = None,
    site_url: str | None = None,
    policy_overrides: dict[str, object] | None = None,
    policy_factory: Callable[[Task, Executor], Policy] | None = None,
    parent_run: str | None = None,
    parent_step: int | None = None,
    run_id: str | None = None,
    on_step: StepCallback | None = None,
    on_start: Callable[[RunRecord, Path], None] | None = None,
    executor: Executor | None = None,
    hooks: Hooks | None = None,
    eval_id: str | None = None,
    episode_id: str | None = None,
    terminal_ask: TerminalAsk | None = None,
) -> RunResult:
    """Run ``task`` in a fresh environment (a browser and, for a site task, a fresh bundled site; or a desktop).

    ``site_url`` points a site task at an already running instance of the site instead of starting one
    (e.g. ``glassbox site shop`` in another terminal). ``policy_overrides`` replace the task's policy
    settings (model, base_url, temperature, ...), as the CLI flags do. ``executor`` runs the task in an
    executor the caller has opened (tests: ``tools.fake.FakeExecutor``) instead of starting an environment.

    ``hooks`` gets the run's events (:mod:`agent.events`: run started, step decided, step recorded, run ended)
    and asks its gates before each step acts. ``eval_id`` / ``episode_id`` tag the run as an episode of an
    evaluation (:mod:`evals`). ``on_start`` and ``on_step`` are shorthands that subscribe to
    ``RunStarted`` and ``StepRecorded``; like every subscriber, one that raises is logged, not fatal.

    A person can pause the run and, when the task asks for approval (``ask_before``, ``on_low_confidence: ask``),
    answers held steps in a viewer or, through ``terminal_ask``, on a terminal (:mod:`agent.approval`).

    A policy name or setting that cannot work raises :class:`PolicyUnavailable` before anything starts.
    """
    task = with_policy_overrides(task, policy_overrides)
    policy_name = policy or task.policy.name
    if policy_factory is None:
        check_policy(policy_name, task)  # a bad --policy fails here, not after the site and Chromium started
        # The run records the task as it ran: its policy section names the policy that decided (--policy openai
        # beside the --base-url and --model it was given), not the file's.
        task = with_policy_overrides(task, {"name": policy_name})
    links: _Links = {
        "parent_run": parent_run,
        "parent_step": parent_step,
        "run_id": run_id,
        "eval_id": eval_id,
        "episode_id": episode_id,
    }
    run_hooks = hooks.copy() if hooks is not None else Hooks()  # the shorthands do not stay on the caller's
    if on_start is not None:
        start_callback = on_start
        run_hooks.on(RunStarted, lambda event: start_callback(event.run, event.run_dir))
    if on_step is not None:
        step_callback = on_step
        run_hooks.on(StepRecorded, lambda event: step_callback(event.step))
    # OCR (off the critical path) and the consistency gate subscribe before the person: a mismatch can hold a step.
    ocr = attach_ocr(run_hooks, task, policy_name)
    early = attach_mismatch(run_hooks, task, ocr)
    mismatch = early.mismatch_reason if early is not None and task.policy.on_mismatch == "ask" else None
    attach_person(run_hooks, task, runs_dir, terminal_ask=terminal_ask, mismatch=mismatch)
    with ExitStack() as stack:
        if ocr is not None:  # its engine loads while the site and the browser start
            stack.callback(ocr.start().abandon)
        if executor is not None:
            env = Environment(task=task, executor=executor)
        else:
            env = stack.enter_context(open_environment(task, layout_seed=layout_seed, site_url=site_url, headed=headed))
        agent_policy = (
            policy_factory(env.task, env.executor) if policy_factory else make_policy(policy_name, env.task, env.executor)
        )
        stack.callback(agent_policy.close)
        return _Loop(env, agent_policy, runs_dir, run_hooks, links, early=early).run()


class _Loop:
    def __init__(
        self,
        env: Environment,
        policy: Policy,
        runs_dir: Path,
        hooks: Hooks,
        links: _Links | None = None,
        *,
        early: EarlyConsistency | None = None,
    ) -> None:
        self.env = env
        self.early = early  # the mismatch gate's verdicts, given before a step acts
        task = env.task
        self.task, self.policy, self.executor = task, policy, env.executor
        self.hooks = hooks
        self.scrub = Scrubber.from_secrets(task.secret_values())  # the writer and the run log mask with it
        self.goal_values = task.goal_values()  # what a reasoning may name (reasoning-action consistency)
        started = datetime.now(timezone.utc)
        links = links or {}
        record = RunRecord(
            run_id=str(links.get("run_id") or new_run_id(task.name, started)),
            task_name=task.name,
            parent_run=links.get("parent_run"),
            parent_step=links.get("parent_step"),
            eval_id=links.get("eval_id"),
            episode_id=links.get("episode_id"),
            task_file=str(task.source.resolve()) if task.source else None,  # replayable from any folder
            task=task.public_dict(),
            goal=self.scrub.scrub_text(task.goal_text()),
            policy=policy.name,
            model=policy.model,
            status=RunStatus.running,
            started_at=started,
            target_url=env.start_url,
            layout_seed=env.layout_seed,
            pid=os.getpid(),
            host=socket.gethostname(),
        )
        runs_dir.mkdir(parents=True, exist_ok=True)
        self.writer = RunWriter.create(runs_dir, record, scrubber=self.scrub)
        self.log = RunLog(self.writer.run_dir, self.scrub)
        log.info("run started", run_id=record.run_id, task=task.name, policy=policy.name, target=env.describe())
        self.history: list[StepRecord] = []
        self.harness_failure = False  # the task's setup failed: the run is recorded, the harness is to blame
        self.harness_failure_lasting = False  # ...and would fail the same way again
        self.deadline: float | None = None  # time.monotonic() when the time budget runs out; acts stop there
        self._pending: _PendingCalls | None = None  # tool calls of the last output still to run
        self._gate_stop: str | None = None  # a gate stopped the run: the end reason
        self._gate_stop_status = RunStatus.interrupted  # or failed, when the gate said so (a person's Stop)
        self._backend_lasting = False  # the last backend error would recur on every ask (PolicyDecision)

    def run(self) -> RunResult:
        limits = self.task.limits
        started = time.monotonic()
        self.deadline = started + limits.time_budget_s
        self.policy.deadline = self.deadline
        consecutive_errors = 0
        status: RunStatus | None = None
        end_reason = f"step limit reached ({limits.max_steps} steps)"
        interrupts = _InterruptWatch()
        try:
            self.hooks.publish(RunStarted(run=self.writer.record.model_copy(deep=True), run_dir=self.writer.run_dir))
            run_setup(self.env, self.writer, deadline=self.deadline)  # the task's setup, before step 0
            if self.writer.record.page_values:  # values the page generated ({utterance}) fill the goal and script
                self.task = self.task.with_runtime(**self.writer.record.page_values)
                self.env = dataclasses.replace(self.env, task=self.task)
                self.writer.record.goal = self.scrub.scrub_text(self.task.goal_text())
                self.writer.save()
            for index in range(limits.max_steps):
                if time.monotonic() - started > limits.time_budget_s:
                    end_reason = f"time budget spent ({limits.time_budget_s:.0f} s)"
                    break
                step, terminate = self._step(index)
                if self._gate_stop is not None:  # a person or guard ended the run on purpose: like Ctrl-C
                    status, end_reason = self._gate_stop_status, self._gate_stop
                    break
                if step.error_kind is StepErrorKind.low_confidence:
                    end_reason = f"stopped on low confidence at step {index}: {step.error}"
                    break
                if step.error_kind is StepErrorKind.diverged:
                    end_reason = step.error or "diverged"
                    break
                if step.error_kind is StepErrorKind.backend and self._backend_lasting:
                    end_reason = f"the model cannot be asked: {step.error}"  # the same ask would fail the same way
                    break
                consecutive_errors = consecutive_errors + 1 if step.outcome == "error" else 0
                if terminate is not None:
                    self.writer.record.agent_verdict = terminate.status
                    end_reason = f"the agent ended the task ({terminate.status})"
                    break
                if consecutive_errors >= limits.max_consecutive_errors:
                    end_reason = (
                        f"{consecutive_errors} consecutive errors (limit {limits.max_consecutive_errors}); last: {step.error}"
                    )
                    break
            if status is None:  # inside the watch: Ctrl-C during the checks still closes the run as interrupted
                checks = run_checks(self.task, page_of(self.executor), self.env.base_url, self.env.display)
                self.writer.record.checks = checks
                passed = all(c.passed for c in checks) if checks else self.writer.record.agent_verdict == "success"
                status = RunStatus.succeeded if passed else RunStatus.failed
        except SetupFailed as exc:  # a harness failure: no steps, no checks; the run says which step failed
            status, end_reason = RunStatus.failed, str(exc)
            self.harness_failure, self.harness_failure_lasting = True, exc.lasting
        except KeyboardInterrupt:
            status, end_reason = RunStatus.interrupted, "interrupted by the user"
        except Exception as exc:
            if not interrupts.seen:  # the harness itself broke (browser crashed, disk full): recorded, then raised
                try:
                    with interrupts.held():
                        self._crashed(exc)
                finally:
                    interrupts.restore()
            # Ctrl-C reaches the whole process group: Chromium and Playwright's driver may go first, or the interrupt
            # may surface wrapped (in a serializer's error); either way the person stopped the run.
            status, end_reason = RunStatus.interrupted, "interrupted by the user"
        try:
            # Written whole, whenever Ctrl-C comes: an interrupt while the end is written is taken after it.
            with interrupts.held():
                record = self.writer.finish(status=status, end_reason=end_reason)
                log.info(
                    "run ended",
                    run_id=record.run_id,
                    status=record.status.value,
                    end_reason=record.end_reason,
                    steps=record.steps,
                )
                self._end(record)
        finally:
            interrupts.restore()
        return RunResult(
            run_id=record.run_id,
            run_dir=self.writer.run_dir,
            status=record.status,
            end_reason=record.end_reason or "",
            steps=record.steps,
            checks=record.checks,
            target_url=record.target_url,
            harness_failure=self.harness_failure,
            harness_failure_lasting=self.harness_failure_lasting,
        )

    def _crashed(self, exc: Exception) -> NoReturn:
        """Record the run as failed by the harness and raise what the caller prints."""
        # A device's message may quote the page, and the page may show a secret the run typed: masked here too.
        reason = self.scrub.scrub_text(f"harness error: {type(exc).__name__}: {exc}")
        # The traceback goes to the run log (scrubbed, like every event); the terminal shows the one line.
        log.error("run crashed", run_id=self.writer.record.run_id, error=reason, exc_info=True)
        self._end(self.writer.finish(status=RunStatus.failed, end_reason=reason))
        if isinstance(exc, GlassboxError):  # already says what went wrong, as one of ours
            raise exc
        # Anything else (a Playwright error from a crashed browser, a full disk) becomes a HarnessError: callers
        # (the CLI) print its message. The original, unmasked, is not chained: its traceback is in the run log.
        raise HarnessError(
            f"{reason} (run {self.writer.record.run_id} is marked failed; the traceback is in its log.jsonl)"
        ) from None

    def _end(self, record: RunRecord) -> None:
        """Tell the subscribers the run ended (its log still open, so a failing one is logged there), then close."""
        try:
            self.hooks.publish(
                RunEnded(
                    run=record.model_copy(deep=True),
                    run_dir=self.writer.run_dir,
                    status=record.status,
                    end_reason=record.end_reason or "",
                )
            )
        finally:
            self.log.close()

    def _step(self, index: int) -> tuple[StepRecord, Terminate | None]:
        started_at = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        observation = self.executor.perceive()
        t1 = time.perf_counter()
        # Written in the background while the step thinks and acts; the step's line waits for it.
        screenshot = self.writer.write_screenshot(index, observation.screenshot_png, wait=False)
        pending, self._pending = self._pending, None
        # The next call of an output that held several runs without asking the model again.
        whole = self._think(observation) if pending is None else pending.output
        call_index = 0 if pending is None else pending.call_index
        calls = len(whole.decision.tool_calls)
        output = _call_view(whole, call_index, pending) if calls > 1 else whole
        t2 = time.perf_counter()
        action: Action | None = None
        outcome: Outcome | None = None
        error_kind: StepErrorKind | None = None
        error: str | None = None
        terminate: Terminate | None = None
        decision = output.decision
        low = self._low_confidence(decision)
        if output.stand_in is not None and output.stand_in.stop is not None:
            error_kind, error = StepErrorKind.diverged, output.stand_in.stop
        elif decision.backend_error is not None:  # not the model's fault: not counted as a parse error
            error_kind, error = StepErrorKind.backend, decision.backend_error
            self._backend_lasting = decision.backend_lasting
        elif decision.parse_error is not None:
            error_kind, error = StepErrorKind.parse, decision.parse_error
        elif decision.target_error is not None:
            error_kind, error = StepErrorKind.executor, decision.target_error
        elif low is not None:
            error_kind, error = StepErrorKind.low_confidence, low
        elif not decision.tool_calls:
            error_kind, error = StepErrorKind.parse, "the output holds no tool call"
        else:
            try:
                # Only the tools the prompt offered (a desktop has no goto_url): anything else is an error step.
                action = parse_tool_call(decision.tool_calls[0], browser_tools=offered_browser_tools(self.task))
            except ActionError as exc:
                error_kind, error = StepErrorKind.action, str(exc)
            off_grid = coordinate_error(
                getattr(action, "coordinate", None),
                mode=self.task.policy.coordinate_mode,
                divisor=self.task.policy.coordinate_divisor,
                css_size=observation.css_size,
            )
            if off_grid is not None:  # refused, not clamped: the model is told and tries again
                action, error_kind, error = None, StepErrorKind.action, off_grid
        decided = self._decided(index, observation, output, action, error_kind, error, (call_index, calls), screenshot)
        self.hooks.publish(decided)
        gate: GateRecord | None = None
        skipped = False
        if action is not None:
            if self.hooks.has_gates:  # a gate looks at the step's screenshot in the run folder (OCR; a person)
                self.writer.flush()  # it is written in the background: on a busy machine it was not there yet
            held = self.hooks.before_act(decided, deadline=self.deadline)
            if held is not None:
                gate = held.record
                action, skipped, replace_error = self._apply_gate(index, held, action, observation)
                if replace_error is not None:
                    error_kind, error = StepErrorKind.action, replace_error
        if action is not None:
            if getattr(action, "coordinate", None) is not None:  # its evidence crop: decoded while it acts
                self.writer.evidence.decode_ahead(observation.screenshot_png)
            outcome = self.executor.act(action, deadline=self.deadline)
            if outcome.status == "error":
                error_kind, error = StepErrorKind.executor, outcome.error
            elif isinstance(action, Terminate):
                terminate = action
        t3 = time.perf_counter()
        step = self._record(
            index,
            started_at,
            observation,
            output,
            action,
            outcome,
            error_kind,
            error,
            (t0, t1, t2, t3),
            screenshot,
            call=(call_index, calls),
            gate=gate,
            skipped=skipped,
        )
        # The rest run in order; an error (or a gate holding this one back) stops them.
        if error is None and not skipped and terminate is None and call_index + 1 < calls:
            first = pending.first if pending is not None else (step.index, step.screenshot)
            self._pending = _PendingCalls(output=whole, call_index=call_index + 1, first=first)
        return step, terminate

    def _decided(
        self,
        index: int,
        observation: Observation,
        output: PolicyOutput,
        action: Action | None,
        error_kind: StepErrorKind | None,
        error: str | None,
        call: tuple[int, int],
        screenshot: str | None = None,
    ) -> StepDecided:
        """The event gates and subscribers get before the step acts (secrets masked, no screenshot bytes)."""
        policy, model = self._decided_by(output)
        event = StepDecided(
            run_id=self.writer.record.run_id,
            index=index,
            observation=ObservationSummary(
                url=observation.url,
                title=observation.title,
                screenshot_size=observation.screenshot_size,
                css_size=observation.css_size,
                device_scale_factor=observation.device_scale_factor,
                screenshot=screenshot,
            ),
            decision=Decision(
                tool_calls=output.decision.tool_calls,
                action=action,
                reasoning=output.trace.reasoning,
                confidence=output.decision.confidence,
                call_index=call[0],
                calls_in_output=max(call[1], 1),
                error=error,
                error_kind=error_kind,
            ),
            policy=policy,
            model=model,
            element=self._element_proposed(action, observation) if self.early is not None else None,
            budget_left_s=max(0.0, self.deadline - time.monotonic()) if self.deadline is not None else None,
        )
        return self.scrub.scrub(event)

    def _element_proposed(self, action: Action | None, observation: Observation) -> ElementInfo | None:
        """The element under the action's point before it acts (for the mismatch gate: a form field's label is
        evidence OCR cannot read off an empty field), in the loop's thread, which owns the executor."""
        coordinate = getattr(action, "coordinate", None)
        if coordinate is None:
            return None
        try:
            css = proposed_css(self.task, coordinate, observation.css_size, observation.device_scale_factor)
            return self.executor.element_at(css)
        except Exception:  # noqa: BLE001  # evidence, not a requirement: the gate judges without it
            return None

    def _decided_by(self, output: PolicyOutput) -> tuple[str, str | None]:
        """The policy and model recorded for a step: the running policy's, unless one stood in for it (a replay)."""
        stand_in = output.stand_in
        name = stand_in.policy_name if stand_in is not None and stand_in.policy_name else self.policy.name
        model = stand_in.model if stand_in is not None and stand_in.model else self.policy.model
        return name, model

    def _apply_gate(
        self, index: int, held: GateOutcome, action: Action, observation: Observation
    ) -> tuple[Action | None, bool, str | None]:
        """What the step performs after the gates: (action or None, skipped, an error for a bad replacement)."""
        answer, who = held.decision, held.record.who
        if answer.decision == "proceed":
            return action, False, None
        if answer.decision == "skip":
            log.info("step skipped by a gate", step=index, gate=who, reason=answer.reason)
            return None, True, None
        if answer.decision == "stop":
            self._gate_stop = answer.end_reason or f"stopped by {who} at step {index}" + (
                f": {answer.reason}" if answer.reason else ""
            )
            self._gate_stop_status = RunStatus.failed if answer.fail_run else RunStatus.interrupted
            log.info("run stopped by a gate", step=index, gate=who, reason=answer.reason)
            return None, True, None
        assert answer.action is not None  # GateDecision checks that replace carries an action
        try:  # the replacement passes the checks a model's action does
            replacement = parse_tool_call(answer.action.to_tool_call(), browser_tools=offered_browser_tools(self.task))
        except ActionError as exc:
            return None, False, f"the replacement from {who} is not valid: {exc}"
        off_grid = coordinate_error(
            getattr(replacement, "coordinate", None),
            mode=self.task.policy.coordinate_mode,
            divisor=self.task.policy.coordinate_divisor,
            css_size=observation.css_size,
        )
        if off_grid is not None:
            return None, False, f"the replacement from {who} is not valid: {off_grid}"
        log.info("step action replaced by a gate", step=index, gate=who, reason=answer.reason)
        return replacement, False, None

    def _write_attention(
        self, index: int, maps: AttentionMaps, observation: Observation, outcome: Outcome | None, evidence: Evidence | None
    ) -> list[AttentionRef]:
        path = self.writer.step_dir(index) / "attention.npz"
        maps.save(path)
        rel = path.relative_to(self.writer.run_dir).as_posix()
        click = None
        if outcome is not None and outcome.coordinate is not None:
            scale = observation.device_scale_factor
            click = (outcome.coordinate.css[0] * scale, outcome.coordinate.css[1] * scale)
        refs = []
        for key, grid in maps.maps.items():
            target, group = key.split("/", 1)
            fig = attention_figures(
                grid,
                observation.screenshot_size,
                click_px=click if target == "action" else None,
                evidence_box=evidence.box if evidence and target == "action" else None,
            )
            refs.append(AttentionRef(key=key, target=target, group=group, path=rel, **fig.model_dump()))
        return refs

    def _low_confidence(self, decision: PolicyDecision) -> str | None:
        """The stop reason when the task stops on low confidence and this decision is below the bar."""
        settings = self.task.policy
        if settings.min_confidence is None or settings.on_low_confidence != "stop" or decision.confidence is None:
            return None
        if decision.confidence >= settings.min_confidence:
            return None
        return f"confidence {decision.confidence:.3f} is below min_confidence {settings.min_confidence}; not acting"

    def _think(self, observation: Observation) -> PolicyOutput:
        try:
            return self.policy.decide(self.task, self.history, observation)
        except Exception as exc:  # a policy bug or backend failure is a recorded error step, not a crash
            return PolicyOutput(decision=PolicyDecision(backend_error=f"the policy failed: {type(exc).__name__}: {exc}"))

    def _record(
        self,
        index: int,
        started_at: datetime,
        observation: Observation,
        output: PolicyOutput,
        action: Action | None,
        outcome: Outcome | None,
        error_kind: StepErrorKind | None,
        error: str | None,
        marks: tuple[float, ...],
        screenshot: str,
        call: tuple[int, int] = (0, 1),
        gate: GateRecord | None = None,
        skipped: bool = False,
    ) -> StepRecord:
        t0, t1, t2, t3 = marks
        decision, trace = output.decision, output.trace
        unavailable = dict(trace.unavailable)
        evidence = None
        if outcome is not None and outcome.coordinate is not None:
            element_box = outcome.element.box if outcome.element else None
            evidence = self.writer.evidence.submit(
                index,
                observation.screenshot_png,
                observation.screenshot_size,
                outcome.coordinate.css,
                observation.device_scale_factor,
                element_box,
            )
        else:
            unavailable["evidence"] = "no point was acted on in this step"
        if outcome is None or outcome.coordinate is None:
            unavailable.setdefault(
                "coordinate",
                "the action has no coordinate" if action is not None else "a gate held the step back" if skipped else "no action",
            )
        if outcome is None or outcome.element is None:
            unavailable.setdefault("element", "no element under an acting point")
        if decision.confidence is None:
            unavailable.setdefault("confidence", decision.confidence_reason or "the policy gave no confidence")
        attention = []
        if trace.attention_maps is not None:
            attention = self._write_attention(index, trace.attention_maps, observation, outcome, evidence)
        replay = output.stand_in.replay if output.stand_in is not None else None
        for name, content in trace.artifacts.items():
            path = self.writer.step_dir(index) / name
            atomic_write(path, content)
            if replay is not None and name == "side_by_side.png":
                replay = replay.model_copy(update={"side_by_side": path.relative_to(self.writer.run_dir).as_posix()})
        prompt = None
        if trace.prompt is not None:  # the policy names the current screenshot before it has a path
            prompt = [
                m.model_copy(update={"images": [screenshot if r == "current" else r for r in m.images]}) for m in trace.prompt
            ]
        policy_name, model = self._decided_by(output)
        consistency = None
        if gate is not None and gate.decision == "replace":
            # A person's correction acted, not the model's choice: its reasoning is not judged against their point.
            consistency = self.early.verdicts.get(index) if self.early is not None else None
        elif outcome is not None and outcome.coordinate is not None:
            consistency = check_action(action, trace.reasoning, goal_values=self.goal_values, element=outcome.element)
        elif self.early is not None:  # held back before it acted: the verdict that held it (on_mismatch stop, ask)
            consistency = self.early.verdicts.get(index)
        data = {
            "index": index,
            "started_at": started_at,
            "timings": StepTimings(
                perceive_ms=_ms(t1 - t0),
                think_ms=_ms(t2 - t1),
                act_ms=max(0.0, _ms(t3 - t2) - (gate.waited_ms if gate is not None else 0.0)),
                wait_ms=gate.waited_ms if gate is not None else 0.0,
            ),
            "url": observation.url,
            "title": observation.title,
            "screenshot": screenshot,
            "screenshot_size": observation.screenshot_size,
            "device_scale_factor": observation.device_scale_factor,
            "policy": policy_name,
            "model": model,
            "prompt": prompt,
            "raw_output": trace.raw_output,
            "reasoning": trace.reasoning,
            "tool_calls": decision.tool_calls,
            "call_index": call[0],
            "calls_in_output": call[1],
            "action": action,
            "coordinate": outcome.coordinate if outcome else None,
            "element": outcome.element if outcome else None,
            "evidence": evidence,
            "confidence": decision.confidence,
            "confidence_parts": decision.confidence_parts,
            "confidence_reason": decision.confidence_reason,
            "token_counts": trace.token_counts,
            "cache_hit": trace.cache_hit,
            "decoding": trace.decoding,
            "attention": attention,
            "outcome": "error" if error else "skipped" if skipped else "ok",
            "error": error,
            "gate": gate,
            "error_kind": error_kind,
            "unavailable": unavailable,
            "policy_state": decision.policy_state,
            "replay": replay,
            "consistency": consistency,
            "dialogs": outcome.dialogs if outcome is not None else [],
            "dialogs_more": outcome.dialogs_more if outcome is not None else 0,
            "tab_change": outcome.tab_change if outcome is not None else None,
            "downloads": outcome.downloads if outcome is not None else [],
            "blocked_tabs": outcome.blocked_tabs if outcome is not None else [],
            "blocked_tabs_more": outcome.blocked_tabs_more if outcome is not None else 0,
        }
        step = StepRecord.model_validate(data)
        step.timings.settle_ms = outcome.settle_ms if outcome is not None else None
        if error:
            kind = error_kind.value if error_kind is not None else None
            log.warning("step error", run_id=self.writer.record.run_id, step=index, kind=kind, error=step.error)
        step.timings.record_ms = _ms(time.perf_counter() - t3)
        step = self.writer.write_step(step)  # the masked copy, on disk: history and subscribers never see a secret
        self.writer.save(wait=False)  # run.json is written while the next step perceives
        self.history.append(step)
        self.hooks.publish(StepRecorded(run_id=self.writer.record.run_id, step=step.model_copy(deep=True)))
        return step


class _PendingCalls(BaseModel):
    """The rest of an output that held several tool calls: each runs as its own step, in order."""

    output: PolicyOutput
    call_index: int  # the call the next step runs
    first: tuple[int, str]  # the step that ran call 0: its index and screenshot (the one the model saw)


def _call_view(output: PolicyOutput, call_index: int, pending: _PendingCalls | None) -> PolicyOutput:
    """The output as the step running call ``call_index`` records it: that call, its own confidence, and
    (after the first call) the prompt's screenshot named by the step that was shown it."""
    decision, trace = output.decision, output.trace
    chosen: dict[str, Any] = {"tool_calls": [decision.tool_calls[call_index]]}
    scores = decision.call_confidence
    if call_index < len(scores):
        score = scores[call_index]
        chosen.update(confidence=score.value, confidence_parts=score.parts, confidence_reason=score.reason)
    elif call_index and decision.confidence is not None:  # the figure is the first call's: not this one's
        chosen.update(
            confidence=None, confidence_parts={}, confidence_reason="the policy scored only the first tool call of this output"
        )
    if pending is not None:
        first_index, first_screenshot = pending.first
        shared = f"shared with step {first_index}, which ran the first tool call of the same output"
        trace = trace.model_copy(
            update={
                "prompt": [
                    m.model_copy(update={"images": [first_screenshot if r == "current" else r for r in m.images]})
                    for m in trace.prompt
                ]
                if trace.prompt is not None
                else None,
                "token_counts": None,
                "decoding": None,
                "attention_maps": None,
                "artifacts": {},
                "unavailable": {**trace.unavailable, "token_counts": shared, "attention": shared},
            }
        )
    return output.model_copy(update={"decision": decision.model_copy(update=chosen), "trace": trace})


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class _InterruptWatch:
    """For one run: Ctrl-C (SIGINT) and `kill` (SIGTERM) raise KeyboardInterrupt, as Ctrl-C does anywhere, and are
    remembered, so that an interrupt that surfaces as another error is still told apart from a crash. Handlers are
    only set from the main thread, and only over Python's defaults (a caller's own handler is left alone)."""

    def __init__(self) -> None:
        self.seen = False
        self._holding = self._pending = False
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
            if signal.getsignal(signum) is default:
                self._previous[signum] = default
                signal.signal(signum, self._raise)

    def _raise(self, signum: int, frame: object) -> None:
        self.seen = True
        if self._holding:
            self._pending = True  # taken when the hold ends
            return
        raise KeyboardInterrupt

    @contextmanager
    def held(self) -> Iterator[None]:
        """Inside: an interrupt waits (the run's end is written whole); it is raised when the block ends."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            if self._pending:
                self._pending = False
                raise KeyboardInterrupt

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
