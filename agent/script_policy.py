"""The ``script`` policy: plays the task's demonstration, finding named elements on the live page.

It is not a model and says so: its reasoning is the script's note, its confidence is recorded as
unknown. Targets (label, text, role, selector) are resolved to 0..1000 coordinates at run time, so the
same script works with any layout seed; an element below the fold, or scrolled out of view in a list, is scrolled to
first, and a click lands on a point of the element that nothing covers. A desktop has no
element tree: there a ``text`` target is found by OCR of the step's screenshot (``locate_text``), and how it
was found (the line, its box, score) is recorded in the step's ``policy_state["target"]``.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from agent.policy import ModelTrace, Policy, PolicyDecision, PolicyOutput
from agent.task import ScriptStep, Task
from tools.actions import BROWSER_TOOLS, ToolCall
from tools.browser import Target
from tools.coords import from_css
from tools.errors import StepError
from tools.ocr_locate import TextMatch
from tools.views import Located, Observation
from tracer.schema import StepRecord

Locate = Callable[[Target], "Located | None"]
LocateText = Callable[[str, bytes], TextMatch]  # (text, screenshot PNG) -> the line found; StepError if none
NO_CONFIDENCE = "script policy: a demonstration, not a model, so there is no confidence"
NO_MODEL = {
    "prompt": "script policy: no prompt is sent to a model",
    "token_counts": "script policy: no model tokens",
    "cache_hit": "script policy: no model cache",
    "attention": "script policy: no model attention",
}


class ScriptPolicy(Policy):
    name = "script"

    def __init__(self, task: Task, locate: Locate, *, divisor: float = 1000.0, locate_text: LocateText | None = None) -> None:
        if not task.script:
            raise ValueError(f"task {task.name!r} has no script; the script policy needs one")
        self.steps: list[ScriptStep] = task.script
        self._locate = locate
        self._locate_text = locate_text
        self._divisor = divisor

    def position(self, task: Task, history: list[StepRecord]) -> tuple[int, int, list[str] | None]:
        """The script step to play and, for a ``for_each`` step, which item of its list (and the list): the one after
        the last carried out (read from history, so that a replay or a resume can hand over to the script at any
        point); an error repeats it, and one a person (or on_timeout) skipped is left behind. A step over an empty
        list is skipped."""
        done = [
            (s.policy_state["script_step"], s.policy_state.get("item", 0))
            for s in history
            if "script_step" in s.policy_state
            and (s.outcome == "ok" or (s.outcome == "skipped" and s.gate is not None and s.gate.decision == "skip"))
        ]
        current, item = max(done) if done else (-1, 0)
        items = self._items(task, current) if 0 <= current < len(self.steps) else None
        if items is not None and item + 1 < len(items):
            return current, item + 1, items
        current += 1
        while current < len(self.steps):
            items = self._items(task, current)
            if items is None or items:
                return current, 0, items
            current += 1  # nothing to do for an empty list
        return current, 0, None

    def _items(self, task: Task, index: int) -> list[str] | None:
        name = self.steps[index].for_each
        if name is None:
            return None
        value = task.render(f"{{{name}}}")  # the saved value (or an input)
        try:
            items = json.loads(value)
        except ValueError:
            items = None
        if not isinstance(items, list):
            raise StepError(f"script step {index + 1}: for_each {name!r} is not a list (setup saved {value[:80]!r})")
        return [str(item) for item in items]

    def decide(self, task: Task, history: list[StepRecord], observation: Observation) -> PolicyOutput:
        try:
            current, item, items = self.position(task, history)
        except StepError as exc:
            return PolicyOutput(
                decision=PolicyDecision(target_error=str(exc), confidence_reason=NO_CONFIDENCE),
                trace=ModelTrace(reasoning=str(exc), unavailable=dict(NO_MODEL)),
            )
        if current >= len(self.steps):
            if any(s.outcome == "skipped" and s.policy_state.get("script_step", -1) >= len(self.steps) for s in history):
                # Its end was skipped already (a person, on_timeout: skip): proposing it again would repeat to the
                # step limit. Error steps end the run at the task's error limit, saying why.
                reason = "the script has no more steps, and ending the run was skipped"
                return PolicyOutput(
                    decision=PolicyDecision(target_error=reason, confidence_reason=NO_CONFIDENCE),
                    trace=ModelTrace(reasoning=reason, unavailable=dict(NO_MODEL)),
                )
            call = ToolCall(name="computer_use", arguments={"action": "terminate", "status": "success"})
            return self._output(call, "The script has no more steps.", {"script_step": current})
        if items is not None:
            task = task.with_runtime(item=items[item])  # {item} in this step
        step = self.steps[current]
        label = f"Script step {current + 1}/{len(self.steps)}"
        if items is not None:
            label += f", item {item + 1}/{len(items)}"
        args = {k: task.render(v) if isinstance(v, str) else v for k, v in step.arguments().items()}
        # {name} in a target: an input, or a value the task's setup read from the page (save_as)
        target = step.target and step.target.model_copy(update={k: task.render(v) for k, v in step.target.names().items()})
        state: dict[str, Any] = {"script_step": current, **({"item": item} if items is not None else {})}
        if target is not None and step.target is not None:
            written = step.target.names()
            empty = [f"{field} {written[field]!r}" for field, value in target.names().items() if not value.strip()]
            if empty:  # a value the page gave setup is empty on this page: say which, not "a target needs ..."
                return self._failed(label, target, f"the target's {', '.join(empty)} is empty here")
        if target is not None and self._locate_text is not None:
            assert target.text is not None  # the task allows only text targets where there is no element tree
            try:
                found = self._locate_text(target.text, observation.screenshot_png)
            except StepError as exc:
                return PolicyOutput(
                    decision=PolicyDecision(target_error=f"{label}: {exc}", confidence_reason=NO_CONFIDENCE),
                    trace=ModelTrace(reasoning=f"{label}: looking for {target.describe()} by OCR", unavailable=dict(NO_MODEL)),
                )
            scale = observation.device_scale_factor or 1.0
            cx, cy = found.center
            if target.at is not None:  # the line's box, at the fractions given
                left, top, right, bottom = found.box
                cx, cy = left + (right - left) * target.at[0], top + (bottom - top) * target.at[1]
            args["coordinate"] = from_css((cx / scale, cy / scale), css_size=observation.css_size, divisor=self._divisor)
            state["target"] = found.model_dump()
        elif target is not None:
            placed = self._place(label, target, (current, item), history, observation.css_size)
            if isinstance(placed, PolicyOutput):
                return placed
            args["coordinate"] = placed
        if step.action in BROWSER_TOOLS:
            call = ToolCall(name=step.action, arguments=args)
        else:
            call = ToolCall(name="computer_use", arguments={"action": step.action, **args})
        note = task.render(step.note) if step.note else _describe(step, args, target)
        return self._output(call, f"{label}: {note}", state)

    def _place(
        self,
        label: str,
        target: Target,
        where: tuple[int, int],
        history: list[StepRecord],
        css_size: tuple[int, int],
    ) -> list[int] | PolicyOutput:
        """The 0..1000 point to act on ``target`` at, or what to do first: scroll it into view (a list or panel that
        clips it where that is on screen, else the page), or nothing, with why (not found, covered, a scroll that
        moved nothing). ``where``: the script step and item being played."""
        located = self._locate(target)
        if located is None:
            return self._failed(label, target, f"no visible element matches {target.describe()}")
        width, height = css_size
        if located.point is not None:
            return from_css(located.point, css_size=css_size, divisor=self._divisor)
        box = [round(v) for v in (located.x, located.y, located.width, located.height)]
        if _scrolled_in_vain(history, where, box):
            return self._failed(label, target, f"scrolling did not bring {target.describe()} into view")
        state = {"scroll_for": where[0], "item": where[1], "box": box}
        on_screen = lambda x, y: 0 <= x < width and 0 <= y < height  # noqa: E731
        hint = located.scroll
        if hint is not None and on_screen(*hint.at):
            vertical = hint.dy != 0 or hint.dx == 0
            move = {"action": "scroll", "pixels": -hint.dy} if vertical else {"action": "hscroll", "pixels": hint.dx}
            at = from_css(hint.at, css_size=css_size, divisor=self._divisor)
            call = ToolCall(name="computer_use", arguments={**move, "coordinate": at})
            return self._output(
                call, f"{label}: {target.describe()} is scrolled out of view in the element around it; scrolling that.", state
            )
        cx, cy = hint.at if hint is not None else located.center
        if on_screen(cx, cy):  # in view, yet every point tried has something else on top
            return self._failed(label, target, f"{target.describe()} is covered by {located.covered_by or 'another element'}")
        middle = [self._divisor / 2] * 2
        call = ToolCall(
            name="computer_use", arguments={"action": "scroll", "pixels": -round(cy - height / 2), "coordinate": middle}
        )
        return self._output(call, f"{label}: {target.describe()} is off screen; scrolling to it.", state)

    @staticmethod
    def _failed(label: str, target: Target, problem: str) -> PolicyOutput:
        """No action: the target cannot be acted on now (the step is played again after the page has moved on)."""
        return PolicyOutput(
            decision=PolicyDecision(target_error=f"{label}: {problem}", confidence_reason=NO_CONFIDENCE),
            trace=ModelTrace(reasoning=f"{label}: looking for {target.describe()}", unavailable=dict(NO_MODEL)),
        )

    def _output(self, call: ToolCall, reasoning: str, state: dict[str, Any]) -> PolicyOutput:
        raw = "<tool_call>\n" + json.dumps(call.model_dump(), ensure_ascii=False) + "\n</tool_call>"
        return PolicyOutput(
            decision=PolicyDecision(tool_calls=[call], confidence_reason=NO_CONFIDENCE, policy_state=state),
            trace=ModelTrace(raw_output=raw, reasoning=reasoning, unavailable=dict(NO_MODEL)),
        )


def _describe(step: ScriptStep, args: dict[str, object], target: Target | None) -> str:
    if target is not None:
        return f"{step.action} on {target.describe()}"
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return f"{step.action} {shown}".strip()


def _scrolled_in_vain(history: list[StepRecord], where: tuple[int, int], box: list[int]) -> bool:
    """Whether the last scroll for this script step and item (with only failed steps since) left the target where
    it was: scrolling again would repeat to the step limit."""
    for past in reversed(history):
        state = past.policy_state
        if "scroll_for" in state:
            return (state["scroll_for"], state.get("item", 0)) == where and state.get("box") == box
        if past.outcome == "ok":
            return False
    return False
