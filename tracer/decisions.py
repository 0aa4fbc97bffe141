"""Counterfactual decisions: what a model says it would do at a recorded step, kept beside the run it asks about.

::

    RUN/decisions/step-0004.jsonl                one CounterfactualDecision per line, appended (never edited)
    RUN/decisions/step-0004-<id>.attention.npz   its attention maps, when a local model was asked

These are the only files ``glassbox decide`` adds to a run folder; nothing recorded is changed. The decision
graph (:mod:`tracer.graph`) shows each one as a counterfactual branch beside its step. Text in a record has been
through the scrubber (the API key a server may echo back) before it is written; a run folder is untrusted
input, so reading skips damaged lines and oversized or linked files instead of failing.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.actions import ToolCall
from tracer.schema import TokenCounts

DECISIONS_DIR = "decisions"
MAX_FILE = 20_000_000  # a decisions file larger than this is not ours
_FILE = re.compile(r"step-(\d{4,9})\.jsonl")


class DecisionAttention(BaseModel):
    """Figures of one attention map of the decision (``target/group``), as for a recorded step."""

    key: str
    peak_px: tuple[int, int]
    concentration: float
    entropy: float
    peak_to_click_px: float | None = None  # from the decided point


class CounterfactualDecision(BaseModel):
    """One decision a model made for a recorded step, asked afterwards (the step itself is left as it was)."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = 1
    id: str = Field(pattern=r"^[0-9a-f]{8,32}$")
    step: int = Field(ge=0)
    created_at: datetime
    policy: str  # qwen3vl (local) or openai (served)
    model: str | None = None
    server: str | None = None  # a served model's base URL, without credentials
    prompt_source: Literal["recorded", "rebuilt"]  # the step's own prompt, or rebuilt as a model would have got it
    raw_output: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    action: str | None = None  # the first tool call's action name (left_click, type, ...)
    coordinate: tuple[float, float] | None = None  # on the model's grid (0..1000 unless the run used another divisor)
    pixel: tuple[int, int] | None = None  # in screenshot pixels
    confidence: float | None = None
    confidence_parts: dict[str, float] = Field(default_factory=dict)
    confidence_reason: str | None = None
    error: str | None = None  # the output could not be used, or the model could not be asked
    attention: list[DecisionAttention] = Field(default_factory=list)
    attention_file: str | None = None  # relative to the run folder
    unavailable: dict[str, str] = Field(default_factory=dict)  # field -> why it is empty (attention on a served model)
    token_counts: TokenCounts | None = None
    sampling: dict[str, Any] = Field(default_factory=dict)


def new_decision_id() -> str:
    return secrets.token_hex(6)


def decisions_file(index: int) -> str:
    return f"{DECISIONS_DIR}/step-{index:04d}.jsonl"


def decisions_dir(run_dir: Path) -> Path:
    """``RUN/decisions``, created if needed; refused when it is a link or not a folder (a crafted run folder must
    not make Glassbox write elsewhere)."""
    folder = run_dir / DECISIONS_DIR
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ValueError(f"run {run_dir.name}: {DECISIONS_DIR}/ is a link or not a folder; not writing there")
    folder.mkdir(exist_ok=True)
    return folder


def append_decision(run_dir: Path, record: CounterfactualDecision) -> str:
    """Append ``record`` to its step's file as one write, durable before returning; returns the file's path
    relative to the run folder."""
    folder = decisions_dir(run_dir)
    relative = decisions_file(record.step)
    line = record.model_dump_json().encode() + b"\n"
    fd = os.open(folder / Path(relative).name, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a torn line from a crash mid-append: start on a fresh one so this one stays whole
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return relative


def read_decisions(run_dir: Path, step: int | None = None) -> list[CounterfactualDecision]:
    """The run's counterfactual decisions (of ``step``, or of every step), oldest first per step. Damaged lines,
    a torn last line, files that are links or too large are skipped; a record naming another step than its
    file is skipped too."""
    folder = run_dir / DECISIONS_DIR
    if folder.is_symlink() or not folder.is_dir():
        return []
    found: list[CounterfactualDecision] = []
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return []
    for name in names:
        match = _FILE.fullmatch(name)
        if match is None or (step is not None and int(match.group(1)) != step):
            continue
        path = folder / name
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FILE:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        for line in data.split(b"\n")[:-1]:  # what follows the last newline is torn (or empty)
            try:
                record = CounterfactualDecision.model_validate_json(line)
            except (ValidationError, ValueError):
                continue
            if record.step == int(match.group(1)):
                found.append(record)
    return found
