"""Acting on a mismatch before the step acts: ``policy.on_mismatch: stop | ask`` (``glassbox run --ask-on-mismatch``).

The verdict needs the text at the point *before* the click, so the gate reads the step's screenshot at once
(synchronous OCR, the run's one engine) around the model's proposed point (a crop: the verdict needs only the
text within a few dozen pixels of it), and judges the reasoning against it (:mod:`agent.consistency`). The OCR
worker reads the whole step later, as any other.

- ``stop``: a mismatch ends the run as failed ("stopped at step N: the reasoning names 'Sign in' but ...").
- ``ask``: a mismatch holds the step for a person (:mod:`agent.approval`, like a low confidence).
"""

from __future__ import annotations

from pathlib import Path

from agent.consistency import check_action
from agent.events import GateDecision, Hooks, RunStarted, StepDecided
from agent.ocr_worker import OcrWorker
from agent.task import Task
from tools.coords import to_css
from tools.ocr_views import point_text
from tracer.logs import get_logger
from tracer.run_files import read_step_file
from tracer.schema import ConsistencyCheck

log = get_logger("glassbox.mismatch")

GATE_NAME = "consistency"


def proposed_css(
    task: Task, coordinate: list[float] | tuple[float, float], css_size: tuple[int, int], device_scale_factor: float
) -> tuple[int, int]:
    """Where a model's proposed point lies on the page (CSS pixels), before anything acted."""
    settings = task.policy
    audit = to_css(
        coordinate,
        css_size=css_size,
        device_scale_factor=device_scale_factor,
        mode=settings.coordinate_mode,
        divisor=settings.coordinate_divisor,
        resized_size=None,
    )
    return audit.css


class EarlyConsistency:
    """The reasoning-action verdict of a decided step, from OCR of its screenshot at the proposed point."""

    def __init__(self, task: Task, worker: OcrWorker) -> None:
        self.task = task
        self.worker = worker
        self.run_dir: Path | None = None
        # step -> the verdict given before it acted: the record of a step held back (stopped, skipped) keeps it
        self.verdicts: dict[int, ConsistencyCheck] = {}

    def started(self, event: RunStarted) -> None:
        self.run_dir = event.run_dir

    def verdict(self, event: StepDecided) -> ConsistencyCheck | None:
        action = event.decision.action
        coordinate = getattr(action, "coordinate", None)
        shot = event.observation.screenshot
        if action is None or coordinate is None or shot is None or self.run_dir is None:
            return None
        observation = event.observation
        css = proposed_css(self.task, coordinate, observation.css_size, observation.device_scale_factor)
        scale = observation.device_scale_factor
        point = (round(css[0] * scale), round(css[1] * scale))
        result = self.worker.read_early(event.index, read_step_file(self.run_dir, shot, event.index), point=point)
        where = point_text(result, point, verb="would act on")
        check = check_action(
            action, event.decision.reasoning, goal_values=self.worker.goal_values, element=event.element, point=where
        )
        if check is not None:
            self.verdicts[event.index] = check
        return check

    def mismatch_reason(self, event: StepDecided) -> str | None:
        """Why the step is held ("the reasoning names ... but the point shows ..."), or None when it is not a
        mismatch (or cannot be judged: an unreadable screenshot never holds a step)."""
        try:
            check = self.verdict(event)
        except Exception as exc:  # noqa: BLE001  # OCR failing is no reason to stop a run
            log.error("early consistency check failed", step=event.index, error=f"{type(exc).__name__}: {exc}")
            return None
        if check is None or check.verdict != "mismatch":
            return None
        return f"mismatch: {check.reason}"


class StopOnMismatch:
    """The gate of ``on_mismatch: stop``."""

    name = GATE_NAME

    def __init__(self, early: EarlyConsistency) -> None:
        self.early = early

    def before_act(self, event: StepDecided) -> GateDecision:
        reason = self.early.mismatch_reason(event)
        if reason is None:
            return GateDecision.proceed()
        return GateDecision.stop(reason, fail_run=True, end_reason=f"stopped at step {event.index} on a {reason}")


def attach_mismatch(hooks: Hooks, task: Task, worker: OcrWorker | None) -> EarlyConsistency | None:
    """The early verdict for ``on_mismatch`` stop or ask (ask: the caller hands it to the person's gate)."""
    if task.policy.on_mismatch == "continue":
        return None
    if worker is None:
        from tools.ocr import OcrUnavailable

        raise OcrUnavailable(f"policy.on_mismatch: {task.policy.on_mismatch} needs OCR, and OCR is off for this run")
    early = EarlyConsistency(task, worker)
    hooks.on(RunStarted, early.started)
    if task.policy.on_mismatch == "stop":
        hooks.add_gate(StopOnMismatch(early), name=GATE_NAME, timeout_s=120)
    return early
