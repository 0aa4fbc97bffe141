"""Where two runs of the same task first differ: the action taken, or the screen it was taken on."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, Field

from replays.compare import compare_screens
from tools.actions import Action
from tracer.schema import RunRecord, StepRecord
from tracer.store import MissingRunFile, read_run, read_step_file, read_steps

COORD_TOLERANCE = 5.0  # on the 0..1000 grid


class RunDiff(BaseModel):
    step: int | None  # None: no difference
    reason: str = ""
    a: str = ""
    b: str = ""
    compared: int = 0
    screen_diff: float | None = None
    # Steps before the first difference whose screens could not be compared (a screenshot gone or unreadable):
    # only their actions were; the first one's reason.
    screens_unchecked: list[int] = Field(default_factory=list)
    unchecked_reason: str | None = None
    # The runs' outcomes when they differ (status or checks), whatever the steps did: the same steps can end
    # otherwise (a flaky site, a check that reads the server).
    outcomes: str | None = None


def describe_action(action: Action) -> str:
    """``left_click at (183, 524)``, ``type “Aurora”``, ``key ctrl+a``, ``terminate (success)``: words, no dict."""
    parts: list[str] = [str(action.action)]
    coordinate = getattr(action, "coordinate", None)
    for key, value in action.model_dump(mode="json", exclude={"action", "coordinate"}, exclude_none=True).items():
        if key in ("text", "file"):
            text = str(value)
            parts.append(f"“{text[:60]}{'…' if len(text) > 60 else ''}”" if key == "text" else f"file {text}")
        elif key == "keys" and isinstance(value, list):
            parts.append("+".join(str(k) for k in value))
        elif key == "status":
            parts.append(f"({value})")
        elif key == "pixels":
            parts.append(f"by {value} px")
        elif key == "time":
            parts.append(f"{value} s")
        else:
            parts.append(str(value) if key == "url" else f"{key} {value}")
    if coordinate is not None:
        parts.append(f"at ({coordinate[0]:.0f}, {coordinate[1]:.0f})")
    return " ".join(parts)


def describe(step: StepRecord | None) -> str:
    if step is None:
        return "(no step)"
    if step.action is None:
        kind = step.error_kind.value if step.error_kind is not None else "error"
        return f"no action ({kind}: {step.error})" if step.error else f"no action ({kind})"
    return describe_action(step.action)


def describe_outcome(step: StepRecord) -> str:
    """``ok``, ``error: the element is covered``, ``skipped (a person said skip)``."""
    if step.outcome == "ok":
        return "ok"
    if step.outcome == "skipped":
        reason = step.gate.reason if step.gate is not None and step.gate.reason else None
        return f"skipped ({reason})" if reason else "skipped"
    return f"error: {step.error}" if step.error else "error"


def _differs(a: Action | None, b: Action | None) -> str | None:
    if (a is None) != (b is None):
        return "one run acted and the other did not"
    if a is None or b is None:
        return None
    if a.action != b.action:
        return f"different actions ({a.action} vs {b.action})"
    point_a, point_b = getattr(a, "coordinate", None), getattr(b, "coordinate", None)
    if point_a is not None and point_b is not None:
        d = math.dist(point_a, point_b)
        if d > COORD_TOLERANCE:
            return f"the point differs by {d:.0f} on the 0..1000 grid"
    for key in ("text", "keys", "status", "url", "file", "pixels"):
        if getattr(a, key, None) != getattr(b, key, None):
            return f"different {key}"
    return None


def _pairs(
    a_steps: Sequence[StepRecord], b_steps: Sequence[StepRecord]
) -> list[tuple[int, StepRecord | None, StepRecord | None]]:
    """Step N of A with step N of B, by step index (a step line that could not be read leaves a gap, not a shift)."""
    a_by, b_by = {s.index: s for s in a_steps}, {s.index: s for s in b_steps}
    return [(i, a_by.get(i), b_by.get(i)) for i in sorted(set(a_by) | set(b_by))]


def _missing(i: int, a: StepRecord | None, a_steps: Sequence[StepRecord], b_steps: Sequence[StepRecord]) -> str:
    """Why only one run has step ``i``: the other ended earlier, or its step could not be read."""
    side, steps = ("A", a_steps) if a is None else ("B", b_steps)
    if not steps or i > max(s.index for s in steps):
        return "one run ended earlier" + (f" (run {side} after step {max(s.index for s in steps)})" if steps else "")
    return f"run {side} has no readable step {i}"


def first_step_difference(a_steps: Sequence[StepRecord], b_steps: Sequence[StepRecord]) -> RunDiff:
    """Where two runs first differ by their steps alone: the action (kind, point within ``COORD_TOLERANCE``,
    text, keys...) or its outcome. No screenshot is read, so it is cheap enough for every flipped episode of
    an eval; ``diff_runs`` also compares the screens."""
    pairs = _pairs(a_steps, b_steps)
    for i, a, b in pairs:
        if a is None or b is None:
            return RunDiff(step=i, reason=_missing(i, a, a_steps, b_steps), a=describe(a), b=describe(b), compared=i)
        reason = _differs(a.action, b.action)
        if reason is None and a.outcome != b.outcome:
            reason = f"different outcomes ({a.outcome} vs {b.outcome})"
        if reason:
            return RunDiff(step=i, reason=reason, a=describe(a), b=describe(b), compared=i)
    return RunDiff(step=None, compared=len(pairs))


def diff_runs(a_dir: Path, b_dir: Path) -> RunDiff:
    """Where two runs first differ: the screen before a step (a perceptual comparison), or the action taken.
    ``glassbox diff`` prints this and the diff page highlights it: both say the same."""
    a_steps, b_steps = read_steps(a_dir), read_steps(b_dir)
    outcomes = _outcomes(read_run(a_dir), read_run(b_dir))  # both must be runs
    pairs = _pairs(a_steps, b_steps)
    unchecked: list[int] = []
    why_unchecked: list[str] = []

    def found(step: int | None, **fields: Any) -> RunDiff:
        why = next(iter(why_unchecked), None)
        return RunDiff(step=step, screens_unchecked=unchecked, unchecked_reason=why, outcomes=outcomes, **fields)

    for i, a, b in pairs:
        if a is None or b is None:
            return found(i, reason=_missing(i, a, a_steps, b_steps), a=describe(a), b=describe(b), compared=i)
        try:
            screen = compare_screens(
                read_step_file(a_dir, a.screenshot, i),
                read_step_file(b_dir, b.screenshot, i),
                names=(f"{a_dir.name}/{a.screenshot}", f"{b_dir.name}/{b.screenshot}"),
            )
        except (MissingRunFile, ValueError) as exc:  # gone or unreadable (UnreadableImage): the actions are still compared
            screen = None
            unchecked.append(i)
            why_unchecked.append(str(exc))
        if screen is not None and not screen.matches:
            return found(
                i,
                reason=f"the screen before the step differs ({screen.reason})",
                a=describe(a),
                b=describe(b),
                compared=i,
                screen_diff=screen.screen_diff,
            )
        reason = _differs(a.action, b.action)
        if reason:
            return found(
                i,
                reason=reason,
                a=describe(a),
                b=describe(b),
                compared=i,
                screen_diff=screen.screen_diff if screen is not None else None,
            )
    return found(None, compared=len(pairs))


def _outcomes(a: RunRecord, b: RunRecord) -> str | None:
    """``A succeeded (checks 2/2 passed), B failed (checks 1/2 passed)`` when the two ended otherwise, else None."""

    def said(run: RunRecord) -> str:
        passed = sum(1 for c in run.checks if c.passed)
        return f"{run.status.value} (checks {passed}/{len(run.checks)} passed)" if run.checks else run.status.value

    def verdicts(run: RunRecord) -> list[tuple[str, bool]]:
        return [(c.description, c.passed) for c in run.checks]

    if a.status == b.status and verdicts(a) == verdicts(b):
        return None
    return f"A {said(a)}, B {said(b)}"


class SideStep(BaseModel):
    """One run's step as the diff page shows it: screenshot, markers (screenshot pixels), action and outcome."""

    index: int
    screenshot: str
    size: tuple[int, int]  # screenshot pixels: the markers' coordinate system
    action: str
    outcome: str
    ok: bool
    point: tuple[float, float] | None = None  # where the action was executed
    box: tuple[int, int, int, int] | None = None  # the evidence box around it
    url: str | None = None
    policy: str
    confidence: float | None = None


class StepRow(BaseModel):
    """Step ``step`` of both runs side by side; ``same`` compares their actions and outcomes (the screens are
    compared only up to the first difference, by :func:`diff_runs`)."""

    step: int
    a: SideStep | None
    b: SideStep | None
    same: bool
    note: str = ""  # why the row differs, in words


def side_step(step: StepRecord) -> SideStep:
    point = box = None
    if step.coordinate is not None:
        s = step.coordinate.device_scale_factor
        point = (step.coordinate.css[0] * s, step.coordinate.css[1] * s)
    if step.evidence is not None:
        box = step.evidence.box
    return SideStep(
        index=step.index,
        screenshot=step.screenshot,
        size=step.screenshot_size,
        action=describe(step),
        outcome=describe_outcome(step),
        ok=step.outcome == "ok",
        point=point,
        box=box,
        url=step.url,
        policy=step.policy,
        confidence=step.confidence,
    )


def line_up(a_steps: Sequence[StepRecord], b_steps: Sequence[StepRecord], first: RunDiff) -> list[StepRow]:
    """Both runs step by step (step N of A beside step N of B). The row of ``first`` (the first difference,
    from :func:`diff_runs`) carries its reason; later rows compare actions and outcomes only."""
    rows = []
    for i, a, b in _pairs(a_steps, b_steps):
        if first.step is not None and i == first.step:
            note = first.reason
        elif a is None or b is None:
            note = _missing(i, a, a_steps, b_steps)
        else:
            note = _differs(a.action, b.action) or (
                f"different outcomes ({a.outcome} vs {b.outcome})" if a.outcome != b.outcome else ""
            )
        rows.append(
            StepRow(
                step=i,
                a=side_step(a) if a is not None else None,
                b=side_step(b) if b is not None else None,
                same=not note,
                note=note,
            )
        )
    return rows
