"""The policy interface: given the task, the history and the current observation, decide the next tool call.

Every policy (the script, local Qwen3-VL, a served model) implements :class:`Policy`; the loop
does not know which one it talks to. A policy answers with a :class:`PolicyOutput`: the decision the loop
acts on (:class:`PolicyDecision`) and the model's trace it only records (:class:`ModelTrace`)::

    PolicyOutput(
        decision=PolicyDecision(tool_calls=[call], confidence=0.93),
        trace=ModelTrace(raw_output=text, reasoning=thinking, prompt=prompt.record("current")),
    )

``stand_in`` (:class:`StandIn`) is for replays only: who decided instead of the running policy, the replay's
account of the step, or a stop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.task import Task
from tools.actions import ToolCall
from tools.views import Observation
from tracer.schema import DecodingInfo, PromptMessage, ReplayInfo, StepRecord, TokenCounts


class CallConfidence(BaseModel):
    """The confidence of one tool call of an output that holds several (each runs as its own step)."""

    value: float | None
    parts: dict[str, float] = Field(default_factory=dict)
    reason: str | None = None  # why value is None


class PolicyDecision(BaseModel):
    """What the policy decided: the tool calls to run (or why there are none) and how sure it is.

    ``parse_error`` is set when the output could not be turned into tool calls, ``backend_error`` when there
    was no output because the model could not be asked; the loop records either and tells the policy on the
    next turn. Several ``tool_calls`` run in order, each as its own step (sharing this output), until one fails.
    """

    model_config = ConfigDict(extra="forbid")  # a misspelt or old flat field fails loudly, not silently

    tool_calls: list[ToolCall] = Field(default_factory=list)
    parse_error: str | None = None
    backend_error: str | None = None  # the model could not be asked (server down, out of memory): no output at all
    backend_lasting: bool = False  # ... and asking again would fail the same way (a refused API key): the run ends
    # The policy knows what to act on but not where on this screen (a script's target not found, covered or out of
    # view): recorded as an executor error (no element), not as output that could not be parsed.
    target_error: str | None = None
    confidence: float | None = None
    confidence_parts: dict[str, float] = Field(default_factory=dict)
    confidence_reason: str | None = None  # why there is no confidence, when there is none
    # One entry per tool call when the policy scored them separately (index = call index); empty: the
    # fields above stand for the first call, and later calls of the same output have no confidence of their own.
    call_confidence: list[CallConfidence] = Field(default_factory=list)
    policy_state: dict[str, Any] = Field(default_factory=dict)  # recorded with the step, read back from history


class ModelTrace(BaseModel):
    """How the decision came about: recorded with the step for a person to read, never acted on."""

    model_config = ConfigDict(extra="forbid")  # a misspelt or old flat field fails loudly, not silently

    raw_output: str | None = None
    reasoning: str | None = None
    prompt: list[PromptMessage] | None = None  # as sent; images by reference
    token_counts: TokenCounts | None = None
    cache_hit: bool | None = None
    decoding: DecodingInfo | None = None  # local model: decode path, prefix reuse, timings
    unavailable: dict[str, str] = Field(default_factory=dict)  # field -> why the policy cannot fill it
    attention_maps: Any = Field(default=None, exclude=True)  # tracer.attention.AttentionMaps, when captured
    artifacts: dict[str, bytes] = Field(default_factory=dict, exclude=True)  # files for the step folder
    extras: dict[str, Any] = Field(default_factory=dict)  # policy-specific notes (sampling, backend notes)


class StandIn(BaseModel):
    """Only for a policy that stands in for another: a replay, the fallback it hands over to, a person's
    correction (replays/replay.py). A normal policy leaves :attr:`PolicyOutput.stand_in` None."""

    model_config = ConfigDict(extra="forbid")  # a misspelt or old flat field fails loudly, not silently

    policy_name: str | None = None  # who decided this step, recorded instead of the running policy's name
    model: str | None = None
    replay: ReplayInfo | None = None
    stop: str | None = None  # end the run without acting (a replay that diverged), recorded as the reason


class PolicyOutput(BaseModel):
    """What a policy produced for one step: the decision, the model's trace, and (replays only) a stand-in."""

    model_config = ConfigDict(extra="forbid")  # a misspelt or old flat field fails loudly, not silently

    decision: PolicyDecision = Field(default_factory=PolicyDecision)
    trace: ModelTrace = Field(default_factory=ModelTrace)
    stand_in: StandIn | None = None


class Policy(ABC):
    """Decides the next action. Subclasses set ``name`` (and ``model`` when there is one)."""

    name: str
    model: str | None = None
    # When the run's time budget runs out (time.monotonic()), set by the loop: a policy waiting on a model stops
    # waiting there (a served model's request is cut to the time left) instead of holding the run past it.
    deadline: float | None = None

    @abstractmethod
    def decide(self, task: Task, history: list[StepRecord], observation: Observation) -> PolicyOutput:
        """Return the next tool call(s) for ``observation``; never raise for bad model output."""

    def close(self) -> None:  # noqa: B027 (optional hook: most policies hold nothing to release)
        """Release resources (models, HTTP clients)."""
