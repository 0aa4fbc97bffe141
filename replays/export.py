"""Export labels as fine-tuning data: SFT records and DPO pairs in the Qwen-VL chat format.

Format (one JSON object per line, images copied next to the JSONL file): the ``messages`` + ``images``
layout that LLaMA-Factory (sharegpt-style, ``<image>`` tags) and ms-swift both read::

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "<image>The user query: ..."},
                  {"role": "assistant", "content": "<tool_call>\\n{...}\\n</tool_call>"}],
     "images": ["images/<run>_0004.png"]}

DPO records put the prompt in ``messages`` and the answers in ``chosen`` / ``rejected`` (LLaMA-Factory's
ranking format); ``rejected_response`` repeats the rejected text for ms-swift.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from agent.prompt import build_prompt
from agent.task import Task
from replays.labels import Correction, Label, Labels
from tools.actions import ToolCall, UploadFile
from tools.errors import UsageError
from tracer.schema import PromptMessage, RunRecord, StepRecord
from tracer.store import MissingRunFile, RunStore, read_run, read_steps, step_file

Format = Literal["sft", "dpo"]


class FeedbackExportError(UsageError, ValueError):
    """A labelled step cannot be exported (its screenshot is gone); nothing is written."""


class ExportSummary(BaseModel):
    records: int
    skipped: dict[str, int]
    out: Path
    images_dir: Path


def export_feedback(runs_dir: Path, out: Path, fmt: Format = "sft") -> ExportSummary:
    """Write the labels of ``runs_dir`` as ``fmt`` records to ``out`` (JSONL); returns what was written."""
    labels = _latest_per_step(Labels(runs_dir).list())
    store = RunStore(runs_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    images_dir = out.parent / "images"
    tmp = out.with_name(out.name + ".tmp")
    try:
        records, skipped = _write_records(labels, fmt, store, tmp, images_dir, out.parent)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed export leaves no half-written file behind
        raise
    return ExportSummary(records=records, skipped=skipped, out=out, images_dir=images_dir)


def _write_records(
    labels: list[Label],
    fmt: Format,
    store: RunStore,
    tmp: Path,
    images_dir: Path,
    base: Path,
) -> tuple[int, dict[str, int]]:
    skipped: dict[str, int] = {}
    records = 0
    cache: dict[str, tuple[RunRecord, dict[int, StepRecord], Path]] = {}
    with open(tmp, "w", encoding="utf-8") as fh:
        for label in labels:
            reason = _skip_reason(label, fmt)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            if label.run_id not in cache:
                try:
                    run_dir = store.run_dir(label.run_id)
                except FileNotFoundError:
                    skipped["run folder missing"] = skipped.get("run folder missing", 0) + 1
                    continue
                try:
                    cache[label.run_id] = (read_run(run_dir), {s.index: s for s in read_steps(run_dir)}, run_dir)
                except ValueError:
                    skipped["run record unreadable"] = skipped.get("run record unreadable", 0) + 1
                    continue
            run, steps, run_dir = cache[label.run_id]
            step = steps.get(label.step)
            if step is None:
                skipped["step missing"] = skipped.get("step missing", 0) + 1
                continue
            try:
                messages, images = _prompt(run, steps, step, run_dir, images_dir, base)
            except (MissingRunFile, ValueError) as exc:
                raise FeedbackExportError(
                    f"cannot export label {label.id} on step {step.index} of run {run.run_id}: "
                    f"{exc}; restore the file or undo the label"
                ) from None
            model_answer = _model_answer(step)
            if label.verdict == "correct":
                target = model_answer
            else:
                target = _tool_call_text(_correction_call(label.correction, step))  # type: ignore[arg-type]
            if fmt == "sft":
                record: dict[str, Any] = {"messages": messages + [{"role": "assistant", "content": target}], "images": images}
            else:
                record = {
                    "messages": messages,
                    "chosen": {"role": "assistant", "content": target},
                    "rejected": {"role": "assistant", "content": model_answer},
                    "rejected_response": model_answer,
                    "images": images,
                }
            record["meta"] = {
                "run_id": run.run_id,
                "step": step.index,
                "label_id": label.id,
                "verdict": label.verdict,
                "note": label.note,
                "pixel": label.pixel,
            }
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            records += 1
    return records, skipped


def _latest_per_step(labels: list[Label]) -> list[Label]:
    latest: dict[tuple[str, int], Label] = {}
    for label in labels:  # ordered by id: the last one a person gave wins
        latest[(label.run_id, label.step)] = label
    return list(latest.values())


def _skip_reason(label: Label, fmt: Format) -> str | None:
    if label.verdict == "wrong" and label.correction is None:
        return "wrong without a correction"
    if fmt == "dpo" and label.verdict == "correct":
        return "correct labels make no DPO pair"
    return None


def _prompt(
    run: RunRecord,
    steps: dict[int, StepRecord],
    step: StepRecord,
    run_dir: Path,
    images_dir: Path,
    base: Path,
) -> tuple[list[dict[str, str]], list[str]]:
    recorded = step.prompt or _rebuilt_prompt(run, steps, step)
    images: list[str] = []
    messages = []
    for message in recorded:
        for ref in message.images:
            src = step_file(run_dir, ref, step.index)  # gone: MissingRunFile; outside the run folder: ValueError
            name = f"{run.run_id}_{ref.replace('/', '_')}"
            images_dir.mkdir(parents=True, exist_ok=True)
            if not (images_dir / name).exists():
                shutil.copyfile(src, images_dir / name)
            images.append((images_dir / name).relative_to(base).as_posix())
        messages.append({"role": message.role, "content": message.text})
    return messages, images


def _rebuilt_prompt(run: RunRecord, steps: dict[int, StepRecord], step: StepRecord) -> list[PromptMessage]:
    """Steps of a script run carry no prompt: build the one a model would have been sent."""
    task = Task.model_validate(run.task, context={"defer_cross_checks": True})
    history = [steps[i] for i in sorted(steps) if i < step.index]
    return build_prompt(task, history, b"").record(step.screenshot)


def _model_answer(step: StepRecord) -> str:
    if step.tool_calls:
        return "\n".join(_tool_call_text(c) for c in step.tool_calls)
    return (step.raw_output or "").strip()


def _tool_call_text(call: ToolCall) -> str:
    return "<tool_call>\n" + json.dumps(call.model_dump(), ensure_ascii=False) + "\n</tool_call>"


def _correction_call(correction: Correction, step: StepRecord) -> ToolCall:
    args: dict[str, Any] = {"action": correction.action}
    if correction.coordinate is not None:
        args["coordinate"] = [round(correction.coordinate[0]), round(correction.coordinate[1])]
    if correction.text is not None and correction.action in ("type", "answer"):
        args["text"] = correction.text
    if correction.keys:
        args["keys"] = correction.keys
    if correction.action == "upload_file":
        original = step.action.file if isinstance(step.action, UploadFile) else None
        return ToolCall(name="upload_file", arguments={"file": original, "coordinate": args.get("coordinate")})
    if correction.action == "terminate":
        args["status"] = "success"
    return ToolCall(name="computer_use", arguments=args)
