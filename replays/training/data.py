"""Training samples from a runs folder's labels: the feedback export (replays/export.py), read back.

There is one exporter. ``glassbox train`` calls it into a work folder and reads the JSONL it wrote (the
LLaMA-Factory shape: ``messages`` with ``<image>`` markers + ``images``; DPO adds ``chosen``/``rejected``),
so what is trained on is exactly what ``glassbox export feedback`` hands to other tools.

Each sample also carries the labelled element's box on the 0..1000 grid, for attention guidance: the
record's ``meta.box`` when the export carries one, else the label's correction ``box``, else a square of
``DEFAULT_BOX_HALF`` grid units around the target's coordinate.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from agent.parse import parse_output
from agent.prompt import ImagePart, Message, Prompt, TextPart
from replays.export import export_feedback
from replays.labels import Labels
from tools.errors import UsageError
from tracer.store import RunStore, read_run

DEFAULT_BOX_HALF = 30  # grid units either side of a corrected point, when the label has no box
Box = tuple[float, float, float, float]
Mode = Literal["sft", "dpo"]


class TrainingDataError(UsageError, ValueError):
    """No usable training data (no labels, or a record that cannot be read)."""


class TrainSample(BaseModel):
    """One exported record, ready to tokenise."""

    run_id: str
    step: int
    label_id: int | None
    messages: list[dict[str, str]]  # the prompt: role + text with <image> markers
    images: list[Path]  # absolute paths, in marker order
    target: str  # SFT: the assistant answer; DPO: the chosen answer
    rejected: str | None = None  # DPO only
    box: Box | None = None  # 0..1000 grid
    # The recorded task's policy.min_pixels / max_pixels: screenshots are resized as the run's model saw them.
    min_pixels: int | None = None
    max_pixels: int | None = None

    def prompt(self) -> Prompt:
        """The prompt as :mod:`agent.prompt` builds it (images as bytes), for the backend's own encoder."""
        images = list(self.images)
        messages = []
        for message in self.messages:
            content: list[TextPart | ImagePart] = []
            for i, piece in enumerate(message["content"].split("<image>")):
                if i > 0:
                    if not images:
                        raise TrainingDataError(f"run {self.run_id} step {self.step}: more <image> markers than images")
                    path = images.pop(0)
                    content.append(ImagePart(png=path.read_bytes(), ref=path.name))
                if piece:
                    content.append(TextPart(text=piece))
            role = message["role"]
            if role not in ("system", "user", "assistant"):
                raise TrainingDataError(f"run {self.run_id} step {self.step}: unknown role {role!r}")
            messages.append(Message(role=role, content=content))
        return Prompt(messages=messages, tools=[])


class TrainingData(BaseModel):
    samples: list[TrainSample]
    data_hash: str  # sha256 of the exported JSONL and every image it names
    jsonl: Path
    skipped: dict[str, int]


def load_training_data(runs_dir: Path, mode: Mode, work: Path, thinking: bool | None = None) -> TrainingData:
    """Export the labels of ``runs_dir`` as ``mode`` records into ``work`` and read them back. ``thinking``:
    targets with the reasoning (``<think>``) or without; None lets the export decide (see export_feedback)."""
    out = work / f"{mode}.jsonl"
    summary = export_feedback(runs_dir, out, mode, thinking=thinking)
    labels = {label.id: label for label in Labels(runs_dir).list()}
    store = RunStore(runs_dir)
    limits: dict[str, tuple[int | None, int | None]] = {}
    digest = hashlib.sha256()
    samples = []
    lines = out.read_text(encoding="utf-8").splitlines() if summary.written else []  # nothing written: no samples
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            sample = _sample(record, mode, out.parent)
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingDataError(f"{out} line {n} is not a {mode} record: {exc}") from None
        digest.update(line.encode("utf-8"))
        for image in sample.images:
            if not image.is_file():
                raise TrainingDataError(f"{out} line {n} names an image that is not there: {image}")
            digest.update(hashlib.sha256(image.read_bytes()).digest())
        label = labels.get(sample.label_id) if sample.label_id is not None else None
        sample.box = _box(record.get("meta") or {}, label, sample.target)
        sample.min_pixels, sample.max_pixels = _pixel_limits(store, sample.run_id, limits)
        samples.append(sample)
    if not samples:
        why = ", ".join(f"{k}: {v}" for k, v in summary.skipped.items()) or "no labels"
        raise TrainingDataError(
            f"no {mode} samples in {runs_dir} ({why}); label steps first (`glassbox label` or the viewer)"
            + (" -- DPO needs steps labelled wrong with a correction" if mode == "dpo" else "")
        )
    return TrainingData(samples=samples, data_hash=digest.hexdigest(), jsonl=out, skipped=summary.skipped)


def _sample(record: dict[str, Any], mode: Mode, base: Path) -> TrainSample:
    meta = record.get("meta") or {}
    messages = [{"role": str(m["role"]), "content": _text(m["content"])} for m in record["messages"]]
    rejected = None
    if mode == "sft":
        if not messages or messages[-1]["role"] != "assistant":
            raise ValueError("the last message is not the assistant's answer")
        target = messages.pop()["content"]
    elif "chosen" in record:  # LLaMA-Factory ranking: the prompt in messages, the answers beside it
        target = _text(record["chosen"])
        rejected = _text(record["rejected"])
    else:  # ms-swift: the chosen answer is the last assistant message, rejected_response beside it
        target = messages.pop()["content"]
        rejected = _text(record["rejected_response"])
    images = [Path(p) if Path(p).is_absolute() else base / p for p in record.get("images") or []]
    return TrainSample(
        run_id=str(meta.get("run_id", "")),
        step=int(meta.get("step", -1)),
        label_id=meta.get("label_id"),
        messages=messages,
        images=images,
        target=target,
        rejected=rejected,
    )


def _pixel_limits(store: RunStore, run_id: str, cache: dict[str, tuple[int | None, int | None]]) -> tuple[int | None, int | None]:
    if run_id not in cache:
        try:
            policy = (read_run(store.run_dir(run_id)).task or {}).get("policy") or {}
        except (FileNotFoundError, ValueError):
            policy = {}
        low, high = policy.get("min_pixels"), policy.get("max_pixels")
        cache[run_id] = (low if isinstance(low, int) else None, high if isinstance(high, int) else None)
    return cache[run_id]


def _text(value: Any) -> str:
    if isinstance(value, dict):
        value = value["content"]
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _box(meta: dict[str, Any], label: Any, target: str) -> Box | None:
    """The labelled element's box on the 0..1000 grid (see the module docstring for the order)."""
    for candidate in (meta.get("box"), getattr(getattr(label, "correction", None), "box", None)):
        if candidate is not None and len(candidate) == 4:
            left, top, right, bottom = (float(v) for v in candidate)
            return (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    point = target_point(target)
    if point is None:
        return None
    x, y = point
    h = DEFAULT_BOX_HALF
    return (max(0.0, x - h), max(0.0, y - h), min(1000.0, x + h), min(1000.0, y + h))


def target_point(text: str) -> tuple[float, float] | None:
    """The coordinate of the first tool call in an answer (the one parser reads it), or None."""
    parsed = parse_output(text if "</think>" in text else "</think>" + text, thinking=True)
    for call in parsed.tool_calls:
        coordinate = call.arguments.get("coordinate")
        if isinstance(coordinate, (list, tuple)) and len(coordinate) == 2:
            try:
                return float(coordinate[0]), float(coordinate[1])
            except (TypeError, ValueError):
                return None
    return None


__all__ = ["DEFAULT_BOX_HALF", "TrainSample", "TrainingData", "TrainingDataError", "load_training_data", "target_point"]
