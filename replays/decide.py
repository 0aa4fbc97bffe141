"""Ask a model what it would do at a recorded step, and whether its click lands inside a labelled element.

The step's own prompt (as recorded; rebuilt for script steps as a model would have got it) and screenshot go to a
policy built the one way ``glassbox run`` builds it (:func:`agent.policies.make_policy`), whose answer goes through
the one parser. The decision is recorded beside the run as a counterfactual (:mod:`tracer.decisions`); the run's
own files are never changed::

    policy = policy_for_run(run_dir, DecideOptions(model="out/adapter"))
    decision = decide_step(run_dir, 4, policy)          # recorded in RUN/decisions/step-0004.jsonl
    report = decide_labelled(Path("runs"), DecideOptions(model="out/adapter"))
    report.landed, report.total                          # clicks inside the labelled elements, of labelled steps

Decisions are greedy by default (temperature 0), so that the same model on the same step says the same thing and
a before/after comparison is not sampling noise.

The labelled element of a step: the correction's ``box`` (0..1000 grid) when the label has one; else the OCR line
under the labelled point when the step was read by OCR; else a disc of radius :data:`DISC_RADIUS` grid units
around the point. For a wrong label the point is the correction's; for a correct one, the recorded click.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from agent.policies import make_policy, with_policy_overrides
from agent.prompt import Prompt, offered_browser_tools
from agent.task import RecordedTaskError, Task
from replays.labels import Correction, Label, Labels
from replays.policy_plan import plan_policy, recorded_policy
from tools.actions import POINT_ACTIONS, Action, ActionError, parse_tool_call
from tools.coords import CoordinateMode, to_css
from tools.errors import UsageError
from tracer.decisions import (
    CounterfactualDecision,
    DecisionAttention,
    append_decision,
    decisions_dir,
    new_decision_id,
)
from tracer.ocr_files import read_ocr_step
from tracer.run_files import UnreadableStep, read_run, read_step_entries
from tracer.schema import RunRecord, StepRecord
from tracer.secrets import Scrubber
from tracer.store import RunStore

if TYPE_CHECKING:
    from agent.qwen_policy import QwenPolicy

DISC_RADIUS = 30.0  # grid units: the element around a point when nothing says how large it is
MODEL_POLICIES = ("qwen3vl", "openai")
ElementSource = Literal["correction_box", "ocr_line", "disc"]


class DecideError(UsageError, ValueError):
    """The decision cannot be asked for (bad options, a policy that is no model)."""


class RunProblem(DecideError):
    """This run or step cannot be decided (unreadable record, no such step, a file gone): the others still can."""


class DecideOptions(BaseModel):
    """Which model to ask and how. ``policy`` None: openai when ``base_url`` is given, qwen3vl when ``model`` is,
    else the run's own (its recorded local model)."""

    policy: Literal["qwen3vl", "openai"] | None = None
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_new_tokens: int | None = None
    attention: bool = True  # local models: capture attention maps of the decision


class OriginalStep(BaseModel):
    """The recorded step, for printing beside the counterfactual."""

    action: str | None
    coordinate: tuple[float, float] | None
    pixel: tuple[int, int] | None
    confidence: float | None
    reasoning: str
    outcome: str
    error: str | None = None


class Decision(BaseModel):
    """What :func:`decide_step` returns: the recorded counterfactual, the original step, where it was written."""

    run_id: str
    record: CounterfactualDecision
    original: OriginalStep
    divisor: float  # the run's coordinate divisor (the grid the coordinates are on)
    screenshot_size: tuple[int, int]
    recorded_in: str | None  # relative to the run folder; None: not recorded

    @property
    def point(self) -> tuple[float, float] | None:
        """The decided point on the 0..1000 grid, when the decision is a point action."""
        if self.record.coordinate is None or self.record.action not in POINT_ACTIONS:
            return None
        return _to_grid(self.record.coordinate, self.divisor)


def policy_for_run(run_dir: Path, options: DecideOptions) -> QwenPolicy:
    """The policy ``options`` name, with the run's recorded settings (sampling, pixels, thinking) under them.

    A served model is asked only at the ``base_url`` given here, never at a server a run folder names: the folder
    is untrusted and the request carries the API key."""
    run = _read_run(run_dir)
    steps = [e for e in read_step_entries(run_dir) if isinstance(e, StepRecord)]
    recorded = recorded_policy(run, steps)
    name = options.policy or ("openai" if options.base_url else "qwen3vl" if options.model else recorded)
    if name not in MODEL_POLICIES:
        raise DecideError(
            f"run {run.run_id} was decided by the {name!r} policy, which is no model: pass --model DIR (a local model) "
            "or --policy openai --base-url URL --model NAME"
        )
    own = plan_policy(run, steps).model if name == recorded else None  # the model the run itself used
    model = options.model or own
    if not model:
        raise DecideError(f"name the model to ask: --model ({'the served model' if name == 'openai' else 'a local folder'})")
    overrides: dict[str, object] = {
        "model": model,
        "temperature": options.temperature,
        "max_new_tokens": options.max_new_tokens,
        "attention": options.attention,
    }
    if name == "openai":
        if not options.base_url:
            raise DecideError(
                "--policy openai needs --base-url (the server, e.g. http://127.0.0.1:8000/v1); a server named in a run "
                "folder is not asked"
            )
        overrides.update(base_url=options.base_url, api_key_env=options.api_key_env)
    try:
        task = with_policy_overrides(_task(run), overrides)
    except ValidationError as exc:
        raise DecideError(f"bad model settings: {exc.errors()[0]['msg']}") from None
    from agent.qwen_policy import QwenPolicy

    policy = make_policy(name, task, None)  # PolicyUnavailable (a usage error) names what is missing
    assert isinstance(policy, QwenPolicy)  # both model policies are QwenPolicy over a backend
    return policy


def step_prompt(run_dir: Path, step: int) -> tuple[RunRecord, StepRecord, Task, Prompt]:
    """The run, its step ``step``, its task and the prompt the step was (or would have been) sent, its screenshots
    read and checked; :class:`RunProblem` where one cannot be had. Cheap: callers check this before loading a model."""
    from agent.explain import ExplainError, recorded_prompt

    run = _read_run(run_dir)
    entries = read_step_entries(run_dir)
    steps = {e.index: e for e in entries if isinstance(e, StepRecord)}
    if step not in steps:
        raise RunProblem(_no_step(run, step, entries))
    target = steps[step]
    task = _task(run)
    try:
        prompt = recorded_prompt(run, steps, target, run_dir)
    except ExplainError as exc:  # a screenshot gone or unreadable
        raise RunProblem(f"cannot decide step {step} of run {run.run_id}: {exc}") from None
    return run, target, task, prompt


def decide_step(run_dir: Path, step: int, policy: QwenPolicy, *, record: bool = True) -> Decision:
    """Ask ``policy`` what it would do at recorded step ``step`` of the run in ``run_dir``; with ``record`` the
    decision is appended to ``RUN/decisions/`` (the only files this adds; nothing recorded is changed)."""
    run, target, task, prompt = step_prompt(run_dir, step)
    local = policy.backend.name == "local"
    output = policy.decide_prompt(prompt, step=step, attention=local and task.policy.attention)
    decision, trace = output.decision, output.trace
    divisor = task.policy.coordinate_divisor
    action: Action | None = None
    error = decision.parse_error or decision.backend_error
    if decision.tool_calls and error is None:
        try:
            action = parse_tool_call(decision.tool_calls[0], browser_tools=offered_browser_tools(task))
        except ActionError as exc:
            error = f"the tool call is not a valid action: {exc}"
    coordinate = _coordinate(action)
    pixel = None
    if coordinate is not None and task.policy.coordinate_mode is CoordinateMode.relative_1000:
        pixel = to_css(coordinate, css_size=target.screenshot_size, divisor=divisor).css  # screenshot pixels
    unavailable = dict(trace.unavailable)
    if not local:
        unavailable.setdefault("attention", "a served model returns no attention")
    counterfactual = CounterfactualDecision(
        id=new_decision_id(),
        step=step,
        created_at=datetime.now().astimezone(),
        policy=policy.name,
        model=policy.model,
        server=_server(policy),
        prompt_source="recorded" if target.prompt is not None else "rebuilt",
        raw_output=trace.raw_output,
        reasoning=trace.reasoning,
        tool_calls=decision.tool_calls,
        action=action.action if action is not None else None,
        coordinate=coordinate,
        pixel=pixel,
        confidence=decision.confidence,
        confidence_parts=decision.confidence_parts,
        confidence_reason=decision.confidence_reason,
        error=error,
        unavailable=unavailable,
        token_counts=trace.token_counts,
        sampling=policy.sampling.model_dump(),
    )
    scrubber = Scrubber(v for v in (getattr(policy.backend, "_key", None),) if v)  # a key a server echoed back
    counterfactual = scrubber.scrub(counterfactual)
    recorded_in = None
    if record:
        try:
            if trace.attention_maps is not None:
                counterfactual = _save_attention(run_dir, counterfactual, trace.attention_maps, target.screenshot_size)
            recorded_in = append_decision(run_dir, counterfactual)
        except (OSError, ValueError) as exc:
            raise RunProblem(f"cannot record the decision in run {run.run_id}: {exc}") from None
    return Decision(
        run_id=run.run_id,
        record=counterfactual,
        original=_original(target, divisor),
        divisor=divisor,
        screenshot_size=target.screenshot_size,
        recorded_in=recorded_in,
    )


# -- landing inside the labelled element ---------------------------------------------------------------------------


class Element(BaseModel):
    """The labelled element on the 0..1000 grid: a box (``correction_box``, ``ocr_line``) or a disc."""

    source: ElementSource
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 (a disc: the box around it)
    center: tuple[float, float]
    radius: float | None = None  # a disc's
    text: str | None = None  # an OCR line's

    def holds(self, point: tuple[float, float]) -> bool:
        x, y = point
        if self.radius is not None:
            return math.hypot(x - self.center[0], y - self.center[1]) <= self.radius
        x1, y1, x2, y2 = self.box
        return x1 <= x <= x2 and y1 <= y <= y2


class Landing(BaseModel):
    """Whether one decision's click landed inside its label's element."""

    run_id: str
    step: int
    label_id: int
    verdict: Literal["correct", "wrong"]
    label_point: tuple[float, float]  # 0..1000 grid: the correction's point, or the recorded click of a correct step
    element: Element
    decision_id: str
    decided_action: str | None
    decided_point: tuple[float, float] | None  # 0..1000 grid
    decided_pixel: tuple[int, int] | None
    confidence: float | None
    error: str | None = None
    landed: bool


class Skipped(BaseModel):
    run_id: str
    step: int
    label_id: int
    reason: str


class RunTally(BaseModel):
    run_id: str
    landed: int
    decided: int


class LabelledReport(BaseModel):
    """``glassbox decide --labelled --json``."""

    runs_dir: str
    landed: int
    total: int  # labelled steps decided
    runs: list[RunTally]
    decisions: list[Landing]
    skipped: list[Skipped]


def correction_box(correction: Correction | None) -> tuple[float, float, float, float] | None:
    """The correction's element box (x1, y1, x2, y2 on the 0..1000 grid); Correction validates it."""
    return correction.box if correction is not None else None


def label_point(label: Label, step: StepRecord, divisor: float = 1000.0) -> tuple[float, float] | None:
    """The labelled point on the 0..1000 grid: a wrong label's point correction, a correct label's recorded click;
    None when the label says nothing about where to click."""
    if label.verdict == "wrong":
        c = label.correction
        if c is None or c.action not in POINT_ACTIONS or c.coordinate is None:
            return None
        return float(c.coordinate[0]), float(c.coordinate[1])
    coordinate = _coordinate(step.action)
    if coordinate is None or step.action is None or step.action.action not in POINT_ACTIONS:
        return None
    return _to_grid(coordinate, divisor)


def labelled_element(label: Label, step: StepRecord, run_dir: Path, divisor: float = 1000.0) -> Element | None:
    """The element a decision must land in for ``label`` (see the module's docstring), or None (not a point)."""
    point = label_point(label, step, divisor)
    if point is None:
        return None
    box = correction_box(label.correction) if label.verdict == "wrong" else None
    if box is not None:
        return Element(source="correction_box", box=box, center=((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    ocr = read_ocr_step(run_dir, step.index)
    if ocr is not None:
        width, height = ocr.size if min(ocr.size) > 0 else step.screenshot_size
        px, py = point[0] / 1000 * width, point[1] / 1000 * height
        for line in ocr.lines:
            left, top, right, bottom = line.box
            if left <= px <= right and top <= py <= bottom:
                grid = (left / width * 1000, top / height * 1000, right / width * 1000, bottom / height * 1000)
                center = ((grid[0] + grid[2]) / 2, (grid[1] + grid[3]) / 2)
                return Element(source="ocr_line", box=grid, center=center, text=line.text)
    r = DISC_RADIUS
    return Element(source="disc", box=(point[0] - r, point[1] - r, point[0] + r, point[1] + r), center=point, radius=r)


def landing(decision: Decision, label: Label, run_dir: Path, step: StepRecord) -> Landing:
    """Did ``decision`` click inside ``label``'s element on ``step``? (DecideError when the label names no point.)"""
    element = labelled_element(label, step, run_dir, decision.divisor)
    point = label_point(label, step, decision.divisor)
    if element is None or point is None:
        raise DecideError(f"label {label.id} on step {label.step} names no point to land in")
    decided = decision.point
    return Landing(
        run_id=decision.run_id,
        step=label.step,
        label_id=label.id,
        verdict=label.verdict,
        label_point=point,
        element=element,
        decision_id=decision.record.id,
        decided_action=decision.record.action,
        decided_point=decided,
        decided_pixel=decision.record.pixel,
        confidence=decision.record.confidence,
        error=decision.record.error,
        landed=decided is not None and element.holds(decided),
    )


def decide_labelled(
    runs_dir: Path,
    options: DecideOptions,
    *,
    run_id: str | None = None,
    on_landing: Callable[[Landing | Skipped], None] | None = None,
) -> LabelledReport:
    """Decide every labelled step of ``runs_dir`` (of ``run_id`` only, when given) that names a point: wrong labels
    with a point correction, correct labels of point actions (each step's latest label). Each decision is recorded
    as a counterfactual; a run or step that cannot be decided is reported as skipped."""
    labels = _latest_per_step(Labels(runs_dir).list(run_id))
    store = RunStore(runs_dir)
    landings: list[Landing] = []
    skipped: list[Skipped] = []
    policies: dict[str, QwenPolicy] = {}

    def skip(label: Label, reason: str) -> None:
        item = Skipped(run_id=label.run_id, step=label.step, label_id=label.id, reason=reason)
        skipped.append(item)
        if on_landing:
            on_landing(item)

    try:
        for label in labels:
            try:
                run_dir = store.run_dir(label.run_id)
                steps = {e.index: e for e in read_step_entries(run_dir) if isinstance(e, StepRecord)}
                step = steps.get(label.step)
                if step is None:
                    skip(label, f"run {label.run_id} has no readable step {label.step}")
                    continue
                divisor = _task(_read_run(run_dir)).policy.coordinate_divisor
                if label_point(label, step, divisor) is None:
                    what = "no point correction" if label.verdict == "wrong" else "the step's action has no point"
                    skip(label, f"{label.verdict} label with {what}")
                    continue
                if label.run_id not in policies:
                    policies[label.run_id] = policy_for_run(run_dir, options)
                decision = decide_step(run_dir, label.step, policies[label.run_id])
            except (RunProblem, FileNotFoundError) as exc:
                skip(label, str(exc))
                continue
            result = landing(decision, label, run_dir, step)
            landings.append(result)
            if on_landing:
                on_landing(result)
    finally:
        for policy in policies.values():
            policy.close()
    tallies: dict[str, RunTally] = {}
    for item in landings:
        tally = tallies.setdefault(item.run_id, RunTally(run_id=item.run_id, landed=0, decided=0))
        tally.decided += 1
        tally.landed += int(item.landed)
    return LabelledReport(
        runs_dir=str(runs_dir),
        landed=sum(int(x.landed) for x in landings),
        total=len(landings),
        runs=list(tallies.values()),
        decisions=landings,
        skipped=skipped,
    )


# -- helpers -----------------------------------------------------------------------------------------------------


def _read_run(run_dir: Path) -> RunRecord:
    try:
        return read_run(run_dir)
    except (ValueError, OSError) as exc:
        raise RunProblem(f"run {run_dir.name} cannot be read: {exc}") from None


def _task(run: RunRecord) -> Task:
    try:
        return Task.recorded(run.task, run_id=run.run_id)
    except RecordedTaskError as exc:
        raise RunProblem(str(exc)) from None


def _no_step(run: RunRecord, step: int, entries: list[StepRecord | UnreadableStep]) -> str:
    damaged = [e for e in entries if isinstance(e, UnreadableStep) and e.index == step]
    if damaged:
        return f"step {step} of run {run.run_id} cannot be read: its line in steps.jsonl is {damaged[0].unreadable}"
    readable = sorted(e.index for e in entries if isinstance(e, StepRecord))
    has = f"its steps are {readable[0]}..{readable[-1]}" if readable else "it has no readable steps"
    return f"run {run.run_id} has no step {step} ({has})"


def _coordinate(action: Action | None) -> tuple[float, float] | None:
    coordinate = getattr(action, "coordinate", None)
    if coordinate is None:
        return None
    return float(coordinate[0]), float(coordinate[1])


def _to_grid(point: tuple[float, float], divisor: float) -> tuple[float, float]:
    return point[0] / divisor * 1000, point[1] / divisor * 1000


def _server(policy: QwenPolicy) -> str | None:
    """A served model's base URL without user, password, query or fragment (they may hold credentials)."""
    url = getattr(policy.backend, "base_url", None)
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _original(step: StepRecord, divisor: float) -> OriginalStep:
    coordinate = _coordinate(step.action)
    pixel = None
    if step.coordinate is not None:
        s = step.coordinate.device_scale_factor
        pixel = (round(step.coordinate.css[0] * s), round(step.coordinate.css[1] * s))
    return OriginalStep(
        action=step.action.action if step.action is not None else None,
        coordinate=coordinate,
        pixel=pixel,
        confidence=step.confidence,
        reasoning=summary(step.reasoning),
        outcome=step.outcome,
        error=step.error,
    )


def summary(text: str | None, limit: int = 160) -> str:
    """A reasoning on one line, cut to ``limit`` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _save_attention(run_dir: Path, record: CounterfactualDecision, maps: Any, size: tuple[int, int]) -> CounterfactualDecision:
    from tracer.attention import figures

    name = f"step-{record.step:04d}-{record.id}.attention.npz"
    path = decisions_dir(run_dir) / name
    maps.save(path)
    found = []
    for key, grid in maps.maps.items():
        fig = figures(grid, size, click_px=record.pixel if key.startswith("action/") else None)
        found.append(
            DecisionAttention(
                key=key,
                peak_px=fig.peak_px,
                concentration=fig.concentration,
                entropy=fig.entropy,
                peak_to_click_px=fig.peak_to_click_px,
            )
        )
    return record.model_copy(update={"attention": found, "attention_file": f"decisions/{name}"})


def _latest_per_step(labels: list[Label]) -> list[Label]:
    latest: dict[tuple[str, int], Label] = {}
    for label in labels:  # ordered by id: the last one given wins
        latest[(label.run_id, label.step)] = label
    return list(latest.values())


__all__ = [
    "DISC_RADIUS",
    "Decision",
    "DecideError",
    "DecideOptions",
    "Element",
    "LabelledReport",
    "Landing",
    "RunProblem",
    "Skipped",
    "correction_box",
    "decide_labelled",
    "decide_step",
    "label_point",
    "labelled_element",
    "landing",
    "policy_for_run",
    "summary",
]
