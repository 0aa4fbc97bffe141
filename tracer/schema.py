"""Run and step records as written to ``run.json`` and ``steps.jsonl`` (versioned).

Every optional field of a step is either filled or null with a reason in ``StepRecord.unavailable``
(e.g. ``{"attention": "script policy: no model"}``), so a reader can tell "not recorded" from "lost".
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator

from tools.actions import Action, ToolCall
from tools.coords import CoordinateAudit
from tools.views import DialogSeen, ElementInfo

_ACTION: TypeAdapter[Action] = TypeAdapter(Action)

SCHEMA_VERSION = 2
# Pixels a side of a recorded screenshot: above any executor's own limit (the browser's is 8192), so a record
# saying more is crafted or damaged; readers draw at this size, so it is refused when read.
MAX_SCREEN_SIDE = 16384
ScreenSide = Annotated[int, Field(ge=1, le=MAX_SCREEN_SIDE)]


class RunStatus(str, Enum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    interrupted = "interrupted"


class StepErrorKind(str, Enum):
    """Why a step is an error step (``StepRecord.error_kind``); recorded as the value, e.g. ``"parse"``."""

    parse = "parse"  # the model's output could not be turned into a tool call (or held none)
    backend = "backend"  # the model could not be asked (server down, out of memory, the policy raised)
    action = "action"  # the tool call is not a valid action here (unknown tool, bad arguments, off the grid)
    executor = "executor"  # the action was valid but performing it failed (no element, a navigation error)
    low_confidence = "low_confidence"  # the policy was below the task's min_confidence and the task stops on it
    diverged = "diverged"  # a replay found the screen changed and stopped without acting


class StepTimings(BaseModel):
    """Milliseconds spent in each phase of the step."""

    perceive_ms: float = 0.0
    think_ms: float = 0.0
    act_ms: float = 0.0  # acting and settling, not the time gates held the step (wait_ms)
    record_ms: float = 0.0
    settle_ms: float | None = None  # the part of act_ms spent waiting for the screen to settle (None: not measured)
    wait_ms: float = 0.0  # held by gates before acting (a person's answer, a pause is not counted here)


class PromptMessage(BaseModel):
    """One chat message as sent to the model; images are referenced by path, never inlined."""

    role: Literal["system", "user", "assistant", "tool"]
    text: str
    images: list[str] = Field(default_factory=list)  # paths relative to the run folder


class TokenCounts(BaseModel):
    prompt: int | None = None
    output: int | None = None
    image: int | None = None
    reasoning: int | None = None  # of ``output``, the tokens spent reasoning (as a server reports them)
    finish_reason: str | None = None  # why generation stopped ("stop", "length", ...), as the backend said


class DecodingInfo(BaseModel):
    """How a local model generated a step: the decode path, prompt prefix reuse and where the time went."""

    path: Literal["fast", "plain"]
    compiled: bool = False
    cache_tokens: int | None = None  # static KV cache size (fast path)
    prompt_tokens: int
    prefix_reused: int = 0  # prompt tokens whose KV came from the previous step (fast path)
    prefilled: int  # prompt tokens computed this step
    images_encoded: int | None = None  # screenshots through the vision encoder this step (fast path)
    images_reused: int = 0  # screenshots whose KV came from the cache (an unchanged screen)
    vision_ms: float | None = None
    prefill_ms: float | None = None  # after the vision encoder (fast path); plain: None
    decode_ms: float | None = None  # plain path: the whole generate call
    ms_per_token: float | None = None
    compile_ms: float | None = None  # set on the step that compiled the decode step (once per process)


class Evidence(BaseModel):
    """The screenshot region around the executed point, for a person to see what was acted on."""

    crop: str  # path relative to the run folder (WebP)
    box: tuple[int, int, int, int]  # crop box in screenshot pixels: left, top, right, bottom
    point: tuple[int, int]  # the executed point in screenshot pixels
    sized_by: Literal["element", "fixed"]


class ConsistencyCheck(BaseModel):
    """Does the point that was acted on show what the model said it would act on? (agent.consistency)

    ``claimed``: the texts the model named (quoted or named in its reasoning, the tool call's text, the goal's
    values it mentioned); ``observed``: the text at the point by source (``element``: the DOM element's text;
    ``ocr_under`` / ``ocr_nearest``: OCR of the screenshot); ``matched``: the pair that agreed.
    """

    verdict: Literal["match", "mismatch", "unknown"]
    claimed: list[str] = Field(default_factory=list)
    observed: dict[str, str] = Field(default_factory=dict)
    matched: tuple[str, str] | None = None
    reason: str


class AttentionRef(BaseModel):
    """One attention map of this step: ``key`` (``target/group``) inside the step's ``attention.npz``."""

    key: str  # e.g. "action/deep"
    target: str  # action | reasoning | a word
    group: str  # shallow | middle | deep | all
    path: str  # the .npz, relative to the run folder
    peak_px: tuple[int, int]
    concentration: float
    entropy: float
    peak_to_click_px: float | None = None
    mass_in_evidence: float | None = None


class ReplayInfo(BaseModel):
    """How a replayed step was decided: the recorded action re-executed, a divergence, or the fallback policy."""

    source_run: str
    source_step: int | None
    decision: Literal["replayed", "diverged", "fallback", "corrected"]
    screen_diff: float | None = None
    region_diff: float | None = None
    url_matches: bool | None = None
    reason: str | None = None
    side_by_side: str | None = None  # image path relative to the run folder


class GateRecord(BaseModel):
    """How the step gates (a person's approval, a policy guard) answered before the step acted.

    ``who`` and ``decision`` are the deciding gate's: the first that did not say proceed, else the first that
    timed out or failed (it is treated as proceed), else the last one asked. ``waited_ms`` is how long the
    step was held by all the gates together.
    """

    who: str
    decision: Literal["proceed", "skip", "stop", "replace"]
    reason: str | None = None
    waited_ms: float = 0.0
    timed_out: bool = False  # the gate did not answer in time: the step went on
    error: str | None = None  # the gate raised or answered something that is not a decision: the step went on
    model_action: Action | None = None  # skip, stop, replace: the action the policy chose (not performed)
    # Who answered for the gate (a person's approval: "viewer", "terminal", or "timeout") and when; None: the gate.
    answered_by: str | None = None
    answered_at: datetime | None = None


class StepRecord(BaseModel):
    """One turn of the loop. Text fields hold secret placeholders (or ●●●●), never secret values."""

    schema_version: int = SCHEMA_VERSION
    index: int
    started_at: datetime
    timings: StepTimings
    url: str | None
    title: str | None
    screenshot: str  # path relative to the run folder
    screenshot_size: tuple[ScreenSide, ScreenSide]
    device_scale_factor: float = 1.0
    policy: str
    model: str | None = None
    prompt: list[PromptMessage] | None = None
    raw_output: str | None
    reasoning: str | None
    tool_calls: list[ToolCall] = Field(default_factory=list)  # the call this step ran (or all, if none ran)
    # The validated action (a model of tools.actions, told apart by its "action" name), or None when the output
    # could not be used. On disk it is the action's fields, e.g. {"coordinate": [500.0, 462.0], "action": "left_click"}.
    action: Action | None
    # An action on disk that no longer validates (a scrubbed URL, a record from a newer version): the step is
    # kept, with ``action`` None and the fields as found here, never dropped (not written back).
    unreadable_action: dict[str, Any] | None = Field(default=None, exclude=True)
    # Several tool calls in one model output run as consecutive steps sharing that output (raw_output,
    # reasoning, prompt): this step ran call number ``call_index`` of ``calls_in_output`` (None: recorded
    # before these fields existed).
    call_index: int = 0
    calls_in_output: int | None = None
    coordinate: CoordinateAudit | None = None
    element: ElementInfo | None = None
    evidence: Evidence | None = None
    confidence: float | None
    confidence_parts: dict[str, float] = Field(default_factory=dict)
    confidence_reason: str | None = None  # why confidence is None
    token_counts: TokenCounts | None = None
    cache_hit: bool | None = None
    decoding: DecodingInfo | None = None
    attention: list[AttentionRef] = Field(default_factory=list)
    outcome: Literal["ok", "error", "skipped"]  # skipped: a gate held the step back (see ``gate``); not an error
    error: str | None = None
    error_kind: StepErrorKind | None = None
    unavailable: dict[str, str] = Field(default_factory=dict)  # field -> why it is empty
    policy_state: dict[str, Any] = Field(default_factory=dict)  # what a policy needs to pick up from history
    replay: ReplayInfo | None = None
    gate: GateRecord | None = None  # None: no gate was asked (none registered, or nothing to act on)
    # Acting steps with a point: the reasoning against the text at the point known when the step was recorded
    # (the DOM element's; OCR's when a gate read the screen first). OCR's later verdict is in ocr/step-NNNN.json.
    consistency: ConsistencyCheck | None = None
    # JavaScript dialogs the page opened since the previous action, as answered (browser.dialogs): never on screen.
    dialogs: list[DialogSeen] = Field(default_factory=list)
    dialogs_more: int = Field(default=0, ge=0)  # answered too, beyond the first 20 listed (a page's dialogs in a loop)
    # The action opened a tab (the steps after act in it) or closed the one it acted in: what and where.
    tab_change: str | None = Field(default=None, max_length=9000)
    # Files the page downloaded since the previous action (their names; the files are not kept).
    downloads: list[str] = Field(default_factory=list)
    # Tabs a page opened by itself (not in answer to the action) since the previous action, closed unseen as a
    # popup blocker would: the first ones' URLs.
    blocked_tabs: list[Annotated[str, Field(max_length=2000)]] = Field(default_factory=list, max_length=10)
    blocked_tabs_more: int = Field(default=0, ge=0)  # how many more were closed than blocked_tabs lists

    @model_validator(mode="before")
    @classmethod
    def _keep_unreadable_action(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("action"), dict):
            try:
                _ACTION.validate_python(data["action"])
            except ValidationError:
                data = {**data, "action": None, "unreadable_action": data["action"]}
        return data


class CheckResult(BaseModel):
    """One success check after the run."""

    type: str
    description: str
    passed: bool
    detail: str


class SetupStepResult(BaseModel):
    """One step of the task's ``setup`` (run in the page before step 0), as it went.

    ``detail``: what a ``js`` step returned or a ``wait_for`` saw (JSON, cut short, secrets masked), the page a
    ``goto`` opened, or why the step failed (naming it, e.g. ``setup[2].wait_for: ...``).
    """

    index: int
    kind: Literal["js", "wait_for", "goto"]
    ok: bool
    ms: float
    detail: str | None = None


class RunSummary(BaseModel):
    """Figures over the whole run, filled when it ends."""

    steps: int = 0
    errors: int = 0
    parse_errors: int = 0
    actions: dict[str, int] = Field(default_factory=dict)
    mean_confidence: float | None = None
    think_ms_total: float = 0.0
    act_ms_total: float = 0.0
    model_calls: int = 0  # steps a model (not a script, replay or correction) decided


class RunRecord(BaseModel):
    """The run as a whole (``run.json``); rewritten atomically as the run progresses."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    task_name: str
    task_file: str | None
    task: dict[str, Any]  # the task as loaded, secrets replaced by placeholders
    # The goal as the agent was given it: inputs, {seed} and setup's page values filled in, secrets as
    # <secret>name</secret>; None in runs recorded before it was kept (show task["goal"] then).
    goal: str | None = None
    policy: str
    model: str | None = None
    status: RunStatus
    end_reason: str | None = None
    agent_verdict: Literal["success", "failure"] | None = None
    checks: list[CheckResult] = Field(default_factory=list)
    setup: list[SetupStepResult] = Field(default_factory=list)  # the task's setup steps, run before step 0
    page_values: dict[str, str] = Field(default_factory=dict)  # setup's save_as values ({name} in goal, script, checks)
    started_at: datetime
    ended_at: datetime | None = None
    duration_s: float | None = None
    steps: int = 0
    errors: int = 0
    summary: RunSummary = Field(default_factory=RunSummary)
    target_url: str | None = None
    layout_seed: int | None = None
    parent_run: str | None = None  # a replay or fork of this run
    parent_step: int | None = None
    eval_id: str | None = None  # the evaluation (``glassbox eval``) this run is an episode of
    episode_id: str | None = None
    pid: int
    host: str
