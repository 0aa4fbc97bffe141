"""Replay a recorded run without the model, stopping (or falling back to a policy) where the screen changed;
resume a run from any step, applying a person's correction first.

    result = replay(Path("runs"), "20261123-0837", fallback="none")
    result = replay(Path("runs"), run_id, fallback="policy", policy="script", layout_seed=3)
    result = resume(Path("runs"), run_id, from_step=12, policy="qwen3vl", policy_overrides={"model": "models/x"})

A replay is a new run linked to the original (``parent_run``), so the decision graph shows it as a branch.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Literal
from urllib.parse import urlsplit

from agent.events import Hooks
from agent.loop import RunResult, StepCallback, run_task
from agent.policies import check_policy, make_policy, with_policy_overrides
from agent.policy import ModelTrace, Policy, PolicyDecision, PolicyOutput, StandIn
from agent.task import Task, TaskError, load_task
from replays.compare import Thresholds, compare_screens, screen_signature, side_by_side
from replays.labels import Correction, Labels, correction_call
from replays.ocr_check import ReadScreen, read_with_engine, recorded_text, text_check
from replays.policy_plan import plan_policy, recorded_policy
from tools.errors import UsageError
from tools.executor import Executor
from tools.images import UnreadableImage
from tools.views import ElementInfo, Observation
from tracer.schema import ReplayInfo, RunRecord, StepRecord
from tracer.store import MissingRunFile, RunStore, missing_screenshots, read_run, read_step_file, read_steps

Fallback = Literal["none", "policy"]
NO_MODEL = "replayed from the recording: no model was asked"


class ReplayError(UsageError, ValueError):
    """The run cannot be replayed (no task file, nothing recorded, bad step)."""


class ReplayPolicy(Policy):
    """Re-executes recorded actions while the screen matches; diverges, corrects, or hands over to a policy."""

    name = "replay"

    def __init__(
        self,
        source: RunRecord,
        source_dir: Path,
        steps: list[StepRecord],
        *,
        fallback: Policy | None,
        hand_over_at: int | None = None,
        corrections: dict[int, Correction] | None = None,
        thresholds: Thresholds | None = None,
        element_at: Callable[[tuple[int, int]], ElementInfo | None] | None = None,
        read_screen: ReadScreen = read_with_engine,
    ) -> None:
        self.source, self.source_dir = source, source_dir
        # Only steps that acted: parse errors and failed actions changed nothing worth repeating.
        self.recorded = [s for s in steps if s.action is not None and s.outcome == "ok"]
        self.fallback = fallback
        self.hand_over_at = hand_over_at
        self.corrections = corrections or {}
        self.thresholds = thresholds or Thresholds()
        self.element_at = element_at
        self.read_screen = read_screen
        # Decode and shrink the recorded screenshots ahead of the steps that need them, off the loop's path.
        self._signatures: dict[int, Future[Any]] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-signatures")
        for step in self.recorded:
            self._signatures[step.index] = self._pool.submit(_signature_of, source_dir, step)
        self.position = 0
        self.handed_over = False
        self.model = fallback.model if fallback else None

    def decide(self, task: Task, history: list[StepRecord], observation: Observation) -> PolicyOutput:
        if (
            self.handed_over
            or self.position >= len(self.recorded)
            or (
                self.hand_over_at is not None
                and self.recorded[self.position].index >= self.hand_over_at
                and self.recorded[self.position].index not in self.corrections
            )
        ):
            return self._hand_over(task, history, observation)
        step = self.recorded[self.position]
        self.position += 1
        if step.index in self.corrections:
            self.handed_over = True  # fix and continue: the policy takes it from here
            return self._corrected(step, self.corrections[step.index])
        try:
            recorded_png = read_step_file(self.source_dir, step.screenshot, step.index)
        except (MissingRunFile, ValueError) as exc:  # deleted while replaying: stop with the reason, record it
            return _cannot_replay(step.index, "is gone", exc)
        point = box = None
        if step.evidence is not None:
            point, box = step.evidence.point, step.evidence.box
        elif step.coordinate is not None:
            s = step.coordinate.device_scale_factor
            point = (round(step.coordinate.css[0] * s), round(step.coordinate.css[1] * s))
        url_ok = _same_page(step.url, observation.url)
        target = self._target_check(step)
        try:
            if point is None and box is None or target is not None:
                diff = compare_screens(
                    recorded_png,
                    observation.screenshot_png,
                    thresholds=self.thresholds,
                    recorded_signature=self._signatures[step.index].result(),
                    names=(step.screenshot, "the screenshot now"),
                )
            else:
                diff = compare_screens(
                    recorded_png,
                    observation.screenshot_png,
                    point=point,
                    box=box,
                    thresholds=self.thresholds,
                    names=(step.screenshot, "the screenshot now"),
                )
        except UnreadableImage as exc:  # a run folder is untrusted: a corrupt or oversized screenshot stops here
            return _cannot_replay(step.index, "cannot be read", exc)
        if target is not None:
            # The browser can tell what is under the point: same element there means the target did not move,
            # whatever the colours; the whole screen is still measured and recorded.
            diff.matches, diff.reason = target == "", target or None
        # The recording read the text under its point (OCR): a different text there now is a divergence too.
        recorded_ocr = recorded_text(self.source_dir, step.index) if diff.matches else None
        text_changed = recorded_ocr and text_check(recorded_ocr, observation.screenshot_png, self.read_screen)
        if text_changed:
            diff.matches, diff.reason = False, text_changed
        info = ReplayInfo(
            source_run=self.source.run_id,
            source_step=step.index,
            decision="replayed",
            screen_diff=diff.screen_diff,
            region_diff=diff.region_diff,
            url_matches=url_ok,
        )
        if diff.matches and url_ok:
            return PolicyOutput(
                decision=PolicyDecision(
                    tool_calls=step.tool_calls[:1], confidence_reason=NO_MODEL, policy_state=step.policy_state
                ),
                trace=ModelTrace(
                    raw_output=step.raw_output,
                    reasoning=f"Replayed step {step.index} of {self.source.run_id} (screen diff {diff.screen_diff:.3f}"
                    + (f", target region {diff.region_diff:.3f}" if diff.region_diff is not None else "")
                    + ").",
                    unavailable={"prompt": NO_MODEL, "token_counts": NO_MODEL, "cache_hit": NO_MODEL, "attention": NO_MODEL},
                ),
                stand_in=StandIn(policy_name="replay", replay=info),
            )
        reason = "; ".join(
            r for r in (diff.reason, None if url_ok else f"the page is {observation.url}, the recording was on {step.url}") if r
        )
        info.decision, info.reason = "diverged", reason
        artifacts = {"side_by_side.png": side_by_side(recorded_png, observation.screenshot_png, box=box)}
        if self.fallback is None:
            return PolicyOutput(
                decision=PolicyDecision(confidence_reason=NO_MODEL),
                trace=ModelTrace(reasoning=f"The screen changed at recorded step {step.index}.", artifacts=artifacts),
                stand_in=StandIn(policy_name="replay", replay=info, stop=f"diverged at recorded step {step.index}: {reason}"),
            )
        out = self._ask_fallback(task, history, observation)
        info.decision = "fallback"
        assert out.stand_in is not None  # _ask_fallback names the fallback
        return out.model_copy(
            update={
                "trace": out.trace.model_copy(update={"artifacts": artifacts}),
                "stand_in": out.stand_in.model_copy(update={"replay": info}),
            }
        )

    def _target_check(self, step: StepRecord) -> str | None:
        """ "" when the element under the recorded point is the same one, a reason when not, None when unknown."""
        if self.element_at is None or step.element is None or step.coordinate is None:
            return None
        now = self.element_at(step.coordinate.css)
        was = step.element
        if now is None:
            return f"no element at {step.coordinate.css} now (the recording had <{was.tag}> {was.text[:40]!r})"
        moved = max(
            abs(now.box.x - was.box.x),
            abs(now.box.y - was.box.y),
            abs(now.box.width - was.box.width),
            abs(now.box.height - was.box.height),
        )
        if now.tag != was.tag or " ".join(now.text.split()) != " ".join(was.text.split()) or moved > 4:
            return (
                f"the target changed: the recording had <{was.tag}> {was.text[:40]!r} at {step.coordinate.css}, "
                f"now <{now.tag}> {now.text[:40]!r} is there" + (f" (box moved {moved:.0f} px)" if moved > 4 else "")
            )
        return ""

    def _hand_over(self, task: Task, history: list[StepRecord], observation: Observation) -> PolicyOutput:
        if self.fallback is None:
            return PolicyOutput(
                decision=PolicyDecision(confidence_reason=NO_MODEL),
                stand_in=StandIn(policy_name="replay", stop="the recording has no more steps and no fallback policy was given"),
            )
        self.handed_over = True
        return self._ask_fallback(task, history, observation)

    def _ask_fallback(self, task: Task, history: list[StepRecord], observation: Observation) -> PolicyOutput:
        assert self.fallback is not None
        out = self.fallback.decide(task, history, observation)
        stand_in = out.stand_in or StandIn()  # the fallback is a normal policy: it leaves stand_in None
        return out.model_copy(
            update={
                "stand_in": stand_in.model_copy(
                    update={
                        "policy_name": stand_in.policy_name or self.fallback.name,
                        "model": stand_in.model or self.fallback.model,
                    }
                )
            }
        )

    def _corrected(self, step: StepRecord, correction: Correction) -> PolicyOutput:
        call = correction_call(correction, step)
        where = f" at ({correction.coordinate[0]:.0f}, {correction.coordinate[1]:.0f})" if correction.coordinate else ""
        return PolicyOutput(
            decision=PolicyDecision(
                tool_calls=[call],
                confidence_reason="a person's correction, not a model's decision",
                policy_state=step.policy_state,
            ),
            trace=ModelTrace(
                reasoning=f"A person corrected step {step.index} of {self.source.run_id}: {correction.action}{where}"
            ),
            stand_in=StandIn(
                policy_name="correction",
                replay=ReplayInfo(source_run=self.source.run_id, source_step=step.index, decision="corrected"),
            ),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.fallback is not None:
            self.fallback.close()


def _cannot_replay(index: int, what: str, exc: Exception) -> PolicyOutput:
    """Stop the replay at a recorded step whose screenshot is gone or unreadable, saying why (recorded in the run)."""
    return PolicyOutput(
        decision=PolicyDecision(confidence_reason=NO_MODEL),
        trace=ModelTrace(reasoning=f"The screenshot of recorded step {index} {what}."),
        stand_in=StandIn(policy_name="replay", stop=f"cannot replay recorded step {index}: {exc}"),
    )


def _same_page(recorded: str | None, current: str | None) -> bool:
    """Same path and query (the host differs between runs: sites get OS-assigned ports)."""
    if not recorded or not current:
        return True
    a, b = urlsplit(recorded), urlsplit(current)
    return (a.path, a.query) == (b.path, b.query)


def _signature_of(source_dir: Path, step: StepRecord) -> Any:
    return screen_signature(read_step_file(source_dir, step.screenshot, step.index), what=step.screenshot)


def _with_recorded_settings(
    source: RunRecord, steps: list[StepRecord], policy: str, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    """The settings the source run recorded for ``policy`` (its served model's URL and name, its local model
    folder), under the ones given now: handing over to the policy that recorded them needs no flags again."""
    recorded = plan_policy(source, steps).overrides() if policy == recorded_policy(source, steps) else {}
    return {**recorded, **{k: v for k, v in (overrides or {}).items() if v is not None}}


def _require_screenshots(run: RunRecord, run_dir: Path, steps: list[StepRecord], before: int | None = None) -> None:
    """A replay compares each recorded screen with the live one: every step it replays needs its screenshot."""
    replayed = [s for s in steps if s.action is not None and s.outcome == "ok" and (before is None or s.index < before)]
    missing = missing_screenshots(run_dir, replayed)
    if missing:
        names = ", ".join(f"step {s.index} ({s.screenshot})" for s in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ReplayError(
            f"cannot replay run {run.run_id}: the screenshot of {names} is missing from {run_dir} "
            "(deleted?); a replay compares each recorded screen with the live one"
        )


def _source(
    runs_dir: Path, run_id: str, files_root: Path | None = None, allow_programs: bool | None = None
) -> tuple[RunRecord, Path, list[StepRecord], Task]:
    try:
        run_dir = RunStore(runs_dir).run_dir(run_id)
        run, steps = read_run(run_dir), read_steps(run_dir, whole=True)  # a step left out would act out of order
    except (FileNotFoundError, ValueError) as exc:
        raise ReplayError(str(exc)) from None
    if not steps:
        raise ReplayError(f"run {run.run_id} has no recorded steps")
    if not run.task_file or not Path(run.task_file).is_file():
        raise ReplayError(
            f"run {run.run_id} was recorded from {run.task_file or 'an unnamed task'}, which is not "
            "here: a replay needs the task file (its secrets and files are not kept in the record)"
        )
    try:
        task = load_task(run.task_file, files_root=files_root, allow_programs=allow_programs)
    except TaskError as exc:
        raise ReplayError(f"the task file of run {run.run_id} no longer loads: {exc}") from None
    return run, run_dir, steps, task


def replay(
    runs_dir: Path,
    run_id: str,
    *,
    fallback: Fallback = "none",
    policy: str | None = None,
    policy_overrides: dict[str, Any] | None = None,
    layout_seed: int | None = None,
    site_url: str | None = None,
    headed: bool | None = None,
    thresholds: Thresholds | None = None,
    new_run_id: str | None = None,
    on_step: StepCallback | None = None,
    on_start: Callable[[RunRecord, Path], None] | None = None,
    files_root: Path | None = None,
    allow_programs: bool | None = None,
    hooks: Hooks | None = None,
) -> RunResult:
    """Replay ``run_id`` from the same task state; the new run is recorded in ``runs_dir``."""
    source, source_dir, steps, task = _source(runs_dir, run_id, files_root, allow_programs)
    _require_screenshots(source, source_dir, steps)
    if fallback == "policy":
        policy = policy or recorded_policy(source, steps, task.policy.name)
        policy_overrides = _with_recorded_settings(source, steps, policy, policy_overrides)
        check_policy(policy, with_policy_overrides(task, policy_overrides))  # before the site and browser start

    def factory(task_: Task, executor: Executor) -> Policy:
        fb = make_policy(policy, task_, executor) if fallback == "policy" and policy else None
        return ReplayPolicy(source, source_dir, steps, fallback=fb, thresholds=thresholds, element_at=executor.element_at)

    return run_task(
        task,
        runs_dir=runs_dir,
        layout_seed=source.layout_seed if layout_seed is None else layout_seed,
        site_url=site_url,
        headed=headed,
        policy_overrides=policy_overrides,
        policy_factory=factory,
        parent_run=source.run_id,
        parent_step=0,
        run_id=new_run_id,
        on_step=on_step,
        on_start=on_start,
        hooks=hooks,
    )


def resume(
    runs_dir: Path,
    run_id: str,
    *,
    from_step: int,
    policy: str | None = None,
    policy_overrides: dict[str, Any] | None = None,
    layout_seed: int | None = None,
    site_url: str | None = None,
    headed: bool | None = None,
    thresholds: Thresholds | None = None,
    new_run_id: str | None = None,
    on_step: StepCallback | None = None,
    on_start: Callable[[RunRecord, Path], None] | None = None,
    files_root: Path | None = None,
    allow_programs: bool | None = None,
    hooks: Hooks | None = None,
) -> RunResult:
    """Replay the steps before ``from_step``, then hand over to ``policy``. A step from ``from_step`` on that a
    person labelled wrong (with a correction) is replayed up to and executed as corrected, then the policy goes on."""
    source, source_dir, steps, task = _source(runs_dir, run_id, files_root, allow_programs)
    if not 0 <= from_step <= steps[-1].index:
        raise ReplayError(f"run {source.run_id} has steps 0..{steps[-1].index}; cannot resume from step {from_step}")
    labels = [lbl for lbl in Labels(runs_dir).list(source.run_id) if lbl.step >= from_step]
    latest: dict[int, Correction | None] = {}
    for label in labels:
        latest[label.step] = label.correction if label.verdict == "wrong" else None
    corrections = {step: c for step, c in latest.items() if c is not None}
    first_fix = min(corrections) if corrections else None
    corrections = {first_fix: corrections[first_fix]} if first_fix is not None else {}
    _require_screenshots(source, source_dir, steps, before=from_step if first_fix is None else first_fix)
    policy = policy or recorded_policy(source, steps, task.policy.name)
    policy_overrides = _with_recorded_settings(source, steps, policy, policy_overrides)
    check_policy(policy, with_policy_overrides(task, policy_overrides))  # before the site and browser start

    def factory(task_: Task, executor: Executor) -> Policy:
        return ReplayPolicy(
            source,
            source_dir,
            steps,
            fallback=make_policy(policy, task_, executor),
            hand_over_at=from_step if first_fix is None else first_fix,
            corrections=corrections,
            thresholds=thresholds,
            element_at=executor.element_at,
        )

    return run_task(
        task,
        runs_dir=runs_dir,
        layout_seed=source.layout_seed if layout_seed is None else layout_seed,
        site_url=site_url,
        headed=headed,
        policy_overrides=policy_overrides,
        policy_factory=factory,
        parent_run=source.run_id,
        parent_step=from_step,
        run_id=new_run_id,
        on_step=on_step,
        on_start=on_start,
        hooks=hooks,
    )
