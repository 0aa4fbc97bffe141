"""The backend interface: turn a prompt into generated text, with per-token log-probabilities when available."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel, Field

from agent.prompt import Prompt
from tools.errors import StepError
from tracer.schema import DecodingInfo

THINKING_DEFAULTS = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "presence_penalty": 0.0}
INSTRUCT_DEFAULTS = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "presence_penalty": 1.5}


class Sampling(BaseModel):
    """Resolved sampling settings (the Qwen3-VL defaults for Thinking / Instruct, then the task's overrides)."""

    temperature: float
    top_p: float
    top_k: int
    presence_penalty: float
    max_new_tokens: int
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def resolve_sampling(overrides: dict[str, Any], *, thinking: bool, max_new_tokens: int, seed: int | None) -> Sampling:
    base = dict(THINKING_DEFAULTS if thinking else INSTRUCT_DEFAULTS)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return Sampling(max_new_tokens=max_new_tokens, seed=seed, **base)


class TokenLogprob(BaseModel):
    """One generated token: its text span in the output and its log-probability under the model."""

    text: str
    start: int
    end: int
    logprob: float


class Generation(BaseModel):
    text: str  # what the model generated (for Thinking models: reasoning, then </think>, then the answer)
    server_reasoning: str | None = None  # reasoning a server returned separately
    server_tool_calls: list[dict[str, Any]] | None = None
    tokens: list[TokenLogprob] | None = None
    # The text the tokens' spans index into, when it is not ``text``: a served model's whole generation
    # (reasoning, </think>, raw <tool_call> text), while ``text`` holds only the content the server returned.
    token_text: str | None = None
    logprobs_reason: str | None = None  # why tokens is None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    image_tokens: int | None = None
    reasoning_tokens: int | None = None  # a server's usage.completion_tokens_details.reasoning_tokens
    finish_reason: str | None = None
    notes: list[str] = Field(default_factory=list)  # settings a backend could not honour, etc.
    attention: Any = Field(default=None, exclude=True)  # CapturedAttention (local backend), None elsewhere
    attention_reason: str | None = None  # why attention is None
    decoding: DecodingInfo | None = None  # local backend: which decode path, prefix reuse, timings


CUT_HERE = "cut"  # a Generation's finish_reason when Glassbox cut an answer that ran far past max_new_tokens


class BackendError(StepError, RuntimeError):
    """The backend could not produce an output (server down after retries, model failed). ``lasting``: asking again
    would fail the same way (the server refused the API key), so the run ends instead of asking step after step."""

    def __init__(self, message: str, *, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


class Backend(ABC):
    name: str
    model: str
    thinking: bool

    @abstractmethod
    def generate(
        self, prompt: Prompt, sampling: Sampling, *, step: int, attention: bool = False, deadline: float | None = None
    ) -> Generation:
        """Generate the answer to ``prompt``; ``step`` seeds sampling reproducibly per step.

        With ``attention`` a backend that can (the local one) captures attention maps after generating.
        ``deadline`` (time.monotonic()) is when the run's budget runs out: a backend that waits on a server stops
        waiting there (BackendError); a local model's generation is bounded by ``max_new_tokens`` instead.
        """

    def close(self) -> None:
        """Release the model or the HTTP client."""
        return None  # deliberately not abstract: a backend holding nothing to release keeps this no-op
