"""Run and step records as written to ``run.json`` and ``steps.jsonl`` (versioned)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field

from tools.coords import CoordinateAudit
from tools.views import ElementInfo

SCHEMA_VERSION = 1


class RunStatus(str, Enum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    interrupted = "interrupted"


class StepTimings(BaseModel):
    """Milliseconds spent in each phase of the step."""

    perceive_ms: float = 0.0
    think_ms: float = 0.0
    act_ms: float = 0.0
    record_ms: float = 0.0


class StepRecord(BaseModel):
    """One turn of the loop. Text fields hold secret placeholders, never secret values."""

    schema_version: int = SCHEMA_VERSION
    index: int
    started_at: datetime
    timings: StepTimings
    url: str | None
    title: str | None
    screenshot: str  # path relative to the run folder
    screenshot_size: tuple[int, int]
    policy: str
    raw_output: str | None
    reasoning: str | None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    action: dict[str, Any] | None  # the validated action, or None when the output could not be used
    coordinate: CoordinateAudit | None = None
    element: ElementInfo | None = None
    confidence: float | None
    confidence_reason: str | None = None  # why confidence is None
    outcome: Literal["ok", "error"]
    error: str | None = None
    error_kind: Literal["parse", "action", "executor"] | None = None


class CheckResult(BaseModel):
    """One success check after the run."""

    type: str
    description: str
    passed: bool
    detail: str


class RunRecord(BaseModel):
    """The run as a whole (``run.json``); rewritten atomically as the run progresses."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    task_name: str
    task_file: str | None
    task: dict[str, Any]  # the task as loaded, secrets replaced by placeholders
    policy: str
    model: str | None = None
    status: RunStatus
    end_reason: str | None = None
    agent_verdict: Literal["success", "failure"] | None = None
    checks: list[CheckResult] = Field(default_factory=list)
    started_at: datetime
    ended_at: datetime | None = None
    duration_s: float | None = None
    steps: int = 0
    errors: int = 0
    target_url: str | None = None
    layout_seed: int | None = None
    pid: int
    host: str
