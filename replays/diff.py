"""Where two runs of the same task first differ: the action taken, or the screen it was taken on."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from pydantic import BaseModel

from replays.compare import compare_screens
from tools.actions import Action
from tracer.schema import StepRecord
from tracer.store import MissingRunFile, read_run, read_step_file, read_steps

COORD_TOLERANCE = 5.0  # on the 0..1000 grid


class RunDiff(BaseModel):
    step: int | None  # None: no difference
    reason: str = ""
    a: str = ""
    b: str = ""
    compared: int = 0
    screen_diff: float | None = None


def describe(step: StepRecord | None) -> str:
    if step is None:
        return "(no step)"
    action = step.action
    if action is None:
        kind = step.error_kind.value if step.error_kind is not None else None
        return f"no action ({kind}: {step.error})"
    extra = action.model_dump(mode="json", exclude={"action"})
    return f"{action.action} {extra}" if extra else action.action


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


def first_step_difference(a_steps: Sequence[StepRecord], b_steps: Sequence[StepRecord]) -> RunDiff:
    """Where two runs first differ by their steps alone: the action (kind, point within ``COORD_TOLERANCE``,
    text, keys...) or its outcome. No screenshot is read, so it is cheap enough for every flipped episode of
    an eval; ``diff_runs`` also compares the screens."""
    for i in range(max(len(a_steps), len(b_steps))):
        a = a_steps[i] if i < len(a_steps) else None
        b = b_steps[i] if i < len(b_steps) else None
        if a is None or b is None:
            return RunDiff(step=i, reason="one run ended earlier", a=describe(a), b=describe(b), compared=i)
        reason = _differs(a.action, b.action)
        if reason is None and a.outcome != b.outcome:
            reason = f"different outcomes ({a.outcome} vs {b.outcome})"
        if reason:
            return RunDiff(step=i, reason=reason, a=describe(a), b=describe(b), compared=i)
    return RunDiff(step=None, compared=max(len(a_steps), len(b_steps)))


def diff_runs(a_dir: Path, b_dir: Path) -> RunDiff:
    a_steps, b_steps = read_steps(a_dir), read_steps(b_dir)
    read_run(a_dir), read_run(b_dir)  # both must be runs
    n = max(len(a_steps), len(b_steps))
    for i in range(n):
        a = a_steps[i] if i < len(a_steps) else None
        b = b_steps[i] if i < len(b_steps) else None
        if a is None or b is None:
            return RunDiff(step=i, reason="one run ended earlier", a=describe(a), b=describe(b), compared=i)
        try:
            screen = compare_screens(read_step_file(a_dir, a.screenshot, i), read_step_file(b_dir, b.screenshot, i))
        except (MissingRunFile, ValueError):
            screen = None  # a screenshot was deleted: the actions can still be compared
        if screen is not None and not screen.matches:
            return RunDiff(
                step=i,
                reason=f"the screen before the step differs ({screen.reason})",
                a=describe(a),
                b=describe(b),
                compared=i,
                screen_diff=screen.screen_diff,
            )
        reason = _differs(a.action, b.action)
        if reason:
            return RunDiff(
                step=i,
                reason=reason,
                a=describe(a),
                b=describe(b),
                compared=i,
                screen_diff=screen.screen_diff if screen is not None else None,
            )
    return RunDiff(step=None, compared=n)
