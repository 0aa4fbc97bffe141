"""Export labels as fine-tuning data: SFT records and DPO pairs that LLaMA-Factory and ms-swift read as they are.

One JSON object per line, images copied to ``images/`` beside the file; the layouts are in
:mod:`replays.export_flavors` (LLaMA-Factory: relative images and a ``dataset_info.json`` entry written
beside the file; ms-swift: absolute images, DPO as the chosen answer last in ``messages`` plus
``rejected_response``)::

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "<image>The user query: ..."},
                  {"role": "assistant", "content": "<think>\\n...\\n</think>\\n\\n<tool_call>\\n{...}\\n</tool_call>"}],
     "images": ["images/<run>_steps_0004_screenshot.png"], "meta": {...}}

The prompt is the one the model saw: the step's recorded prompt, or for a step that has none (a script run)
the one :func:`agent.prompt.build_prompt` builds from the run's task and earlier steps, as the model policy
does. Targets with thinking (on when a model's step among those exported recorded reasoning, or as asked):
a step labelled correct keeps its recorded reasoning in ``<think>...</think>`` before its tool call (a script's
step, one sentence naming its action); a
corrected step gets one sentence naming the corrected action and point (:func:`corrected_reasoning`); the
rejected answer of a pair is the model's reasoning and call. Every string written passes the scrubber (the
secrets the runs' tasks can still resolve here, and those passed in), so no secret reaches an export.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from agent.prompt import rebuild_prompt, strip_think
from replays.export_flavors import (
    DatasetInfoError,
    Flavor,
    dataset_entry,
    dpo_record,
    image_path,
    read_dataset_info,
    sft_record,
    usage,
    write_dataset_info,
)
from replays.labels import Correction, Label, Labels, correction_call, run_secrets
from tools.actions import ToolCall
from tools.errors import UsageError
from tools.images import check_image_file
from tracer.schema import PromptMessage, RunRecord, StepRecord
from tracer.secrets import Scrubber
from tracer.store import MissingRunFile, RunStore, read_run, read_step_entries, split_entries, step_file

Format = Literal["sft", "dpo"]


class FeedbackExportError(UsageError, ValueError):
    """A labelled step cannot be exported (its screenshot is gone); nothing is written."""


class ExportSummary(BaseModel):
    records: int
    skipped: dict[str, int]
    out: Path
    images_dir: Path
    flavor: Flavor = "llamafactory"
    thinking: bool = False
    dataset_name: str | None = None  # LLaMA-Factory: the name in dataset_info.json
    dataset_info: Path | None = None
    dataset_entry: dict[str, Any] | None = None
    usage: str = ""
    written: bool = True  # False: no record to write, and ``out`` was left as it was


def export_feedback(
    runs_dir: Path,
    out: Path,
    fmt: Format = "sft",
    *,
    flavor: Flavor = "llamafactory",
    thinking: bool | None = None,
    secrets: Iterable[str] = (),
) -> ExportSummary:
    """Write the labels of ``runs_dir`` as ``fmt`` records for ``flavor`` to ``out`` (JSONL); returns what was
    written. ``thinking`` None: targets carry ``<think>`` when a model's exported step recorded reasoning.
    ``secrets``: values to mask besides those the runs' tasks resolve here."""
    if flavor not in ("llamafactory", "swift"):
        raise FeedbackExportError(f"unknown flavor {flavor!r}: llamafactory or swift")
    images_dir = out.parent / "images"
    if out.name == images_dir.name or (images_dir.exists() and not images_dir.is_dir()):
        raise FeedbackExportError(f"--out {out}: the screenshots go to the folder {images_dir}; name the file otherwise")
    if flavor == "llamafactory":
        try:
            read_dataset_info(out.parent)  # one that cannot be kept stops the export before anything is copied
        except DatasetInfoError as exc:
            raise FeedbackExportError(str(exc)) from None
    labels = _latest_per_step(Labels(runs_dir).list())
    store = RunStore(runs_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    name = _dataset_name(out)
    try:
        records, skipped, thought = _write_records(
            labels, fmt, flavor, thinking, list(secrets), store, tmp, images_dir, out.parent
        )
        if records == 0:  # nothing to export: an earlier export at ``out`` (and its dataset entry) stays as it was
            tmp.unlink(missing_ok=True)
            return ExportSummary(records=0, skipped=skipped, out=out, images_dir=images_dir, flavor=flavor, written=False)
        entry = dataset_entry(fmt, out.name) if flavor == "llamafactory" else None
        info = write_dataset_info(out.parent, name, entry) if entry is not None else None
        tmp.replace(out)
    except DatasetInfoError as exc:
        tmp.unlink(missing_ok=True)
        raise FeedbackExportError(str(exc)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed export leaves no half-written file behind
        raise
    return ExportSummary(
        records=records,
        skipped=skipped,
        out=out,
        images_dir=images_dir,
        flavor=flavor,
        thinking=thought,
        dataset_name=name if entry is not None else None,
        dataset_info=info,
        dataset_entry=entry,
        usage=usage(flavor, fmt, out, name),
    )


def _dataset_name(out: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in out.stem)
    return stem or "glassbox_feedback"


class _Item(BaseModel):
    """One exportable labelled step, gathered before anything is written (thinking depends on them all)."""

    label: Label
    run: RunRecord
    step: StepRecord
    prompt: list[dict[str, str]]
    images: list[str]


def _write_records(
    labels: list[Label],
    fmt: Format,
    flavor: Flavor,
    thinking: bool | None,
    extra_secrets: list[str],
    store: RunStore,
    tmp: Path,
    images_dir: Path,
    base: Path,
) -> tuple[int, dict[str, int], bool]:
    skipped: dict[str, int] = {}
    cache: dict[str, tuple[RunRecord, dict[int, StepRecord], Path, int | None]] = {}
    items: list[_Item] = []
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
                readable, damaged = split_entries(read_step_entries(run_dir))
                first_bad = min((d.index for d in damaged), default=None)
                cache[label.run_id] = (read_run(run_dir), {s.index: s for s in readable}, run_dir, first_bad)
            except ValueError:
                skipped["run record unreadable"] = skipped.get("run record unreadable", 0) + 1
                continue
        run, steps, run_dir, first_damaged = cache[label.run_id]
        step = steps.get(label.step)
        if step is None:
            skipped["step missing"] = skipped.get("step missing", 0) + 1
            continue
        if step.prompt is None and first_damaged is not None and first_damaged < step.index:
            # Its prompt is rebuilt from the steps before it (a script's step records none): with one of them
            # unreadable, the history would silently lack it and the sample would not be the prompt a model sees.
            skipped["a step before it is damaged"] = skipped.get("a step before it is damaged", 0) + 1
            continue
        try:
            messages, images = _prompt(run, steps, step, run_dir, images_dir, base, flavor)
        except (MissingRunFile, ValueError) as exc:
            raise FeedbackExportError(
                f"cannot export label {label.id} on step {step.index} of run {run.run_id}: "
                f"{exc}; restore the file, or undo the label (glassbox unlabel {label.id})"
            ) from None
        items.append(_Item(label=label, run=run, step=step, prompt=messages, images=images))
    # A script's steps record a line of their own as reasoning: only a model's reasoning says the model thinks.
    think = thinking if thinking is not None else any(item.step.model and (item.step.reasoning or "").strip() for item in items)
    scrubbers: dict[str, Scrubber] = {}
    written = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for item in items:
            label, run, step = item.label, item.run, item.step
            if run.run_id not in scrubbers:
                secrets = run_secrets(run)
                scrubbers[run.run_id] = Scrubber([*secrets.values(), *extra_secrets], names=secrets.keys())
            reason = _unusable(item, fmt)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            model_answer = _answer(step, think)
            if label.verdict == "correct":
                target = model_answer
            else:
                assert label.correction is not None  # _skip_reason left out wrong labels without one
                call = correction_call(label.correction, step)
                target = (_think_block(corrected_reasoning(label.correction)) if think else "") + _tool_call_text(call)
            if fmt == "sft":
                record = sft_record(item.prompt, target, item.images)
            else:
                record = dpo_record(flavor, item.prompt, target, model_answer, item.images)
            record["meta"] = {
                "run_id": run.run_id,
                "step": step.index,
                "label_id": label.id,
                "verdict": label.verdict,
                "note": label.note,
                "pixel": list(label.pixel) if label.pixel else None,
                "box": list(label.correction.box) if label.correction and label.correction.box else None,
            }
            fh.write(json.dumps(scrubbers[run.run_id].scrub(record), ensure_ascii=False) + "\n")
            written += 1
    return written, skipped, think


def _unusable(item: _Item, fmt: Format) -> str | None:
    """Why a labelled step makes no record (counted in the summary), or None."""
    if item.label.verdict == "correct" and not item.step.tool_calls:
        return "correct label on a step whose output had no tool call"
    if item.label.verdict == "wrong" and item.label.correction is not None and fmt == "dpo":
        corrected = _tool_call_text(correction_call(item.label.correction, item.step))
        if [corrected] == [_tool_call_text(c) for c in item.step.tool_calls]:
            # A correction that repeats what the model did is no preference (ms-swift drops such a row).
            return "correction repeats the model's action"
    if "".join(m["content"] for m in item.prompt).count("<image>") != len(item.images):
        # The tools put one image per <image> tag: a goal or page title holding the tag itself would misplace them.
        return "prompt text holds an <image> tag of its own"
    return None


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
    flavor: Flavor,
) -> tuple[list[dict[str, str]], list[str]]:
    recorded = step.prompt or rebuilt_prompt(run, steps, step)
    images: list[str] = []
    messages = []
    for message in recorded:
        for ref in message.images:
            src = step_file(run_dir, ref, step.index)  # gone: MissingRunFile; outside the run folder: ValueError
            check_image_file(src, what=ref)  # handed on to a trainer as it is: no bomb, no broken file
            name = f"{run.run_id}_{ref.replace('/', '_')}"
            images_dir.mkdir(parents=True, exist_ok=True)
            if not (images_dir / name).exists():
                shutil.copyfile(src, images_dir / name)
            images.append(image_path(flavor, images_dir / name, base))
        messages.append({"role": message.role, "content": message.text})
    return messages, images


def rebuilt_prompt(run: RunRecord, steps: dict[int, StepRecord], step: StepRecord) -> list[PromptMessage]:
    """The prompt a model would have been sent at ``step`` (:func:`agent.prompt.rebuild_prompt`), as recorded: only
    the screenshots' references are kept, so none is read."""
    return rebuild_prompt(run, steps, step, lambda ref, index: b"").record(step.screenshot)


def _answer(step: StepRecord, think: bool) -> str:
    """What the model answered at ``step``: its tool call(s), after its reasoning when thinking."""
    if step.tool_calls:
        answer = "\n".join(_tool_call_text(c) for c in step.tool_calls)
    else:
        answer = strip_think(step.raw_output or "")
    if not think:
        return answer
    if step.model is None and step.tool_calls:  # a script's note is not a model's thought: say the action instead
        return _think_block(" ".join(_call_sentence(c) for c in step.tool_calls)) + answer
    return _think_block(step.reasoning or "") + answer


def _call_sentence(call: ToolCall) -> str:
    """``The next action is left_click at (412, 300).`` for a recorded tool call."""
    args = call.arguments
    point = args.get("coordinate")
    coordinate = (float(point[0]), float(point[1])) if isinstance(point, list) and len(point) == 2 else None
    text = args.get("text") if isinstance(args.get("text"), str) else args.get("url")
    keys = args.get("keys") if isinstance(args.get("keys"), list) else None
    return _sentence(str(args.get("action") or call.name), coordinate, None, text if isinstance(text, str) else None, keys)


def _think_block(reasoning: str) -> str:
    # As Qwen3's chat templates render an assistant turn with reasoning (and an empty one without).
    return f"<think>\n{reasoning.strip()}\n</think>\n\n"


def corrected_reasoning(correction: Correction) -> str:
    """The reasoning a corrected step is trained with: one sentence naming the corrected action and its target
    (the point, the box when one was labelled, the text or keys). Nobody wrote the model's real thoughts for
    it, and the recorded ones led to the wrong action, so they are not kept."""
    text = correction.text if correction.action in ("type", "answer", "goto_url") else None
    return _sentence(correction.action, correction.coordinate, correction.box, text, correction.keys)


def _sentence(
    action: str,
    coordinate: tuple[float, float] | None,
    box: tuple[float, float, float, float] | None,
    text: str | None,
    keys: list[str] | None,
) -> str:
    what = action
    if coordinate is not None:
        what += f" at ({coordinate[0]:.0f}, {coordinate[1]:.0f})"
    if box is not None:
        x1, y1, x2, y2 = box
        what += f", inside the element from ({x1:.0f}, {y1:.0f}) to ({x2:.0f}, {y2:.0f})"
    if text is not None:
        what += f" {json.dumps(text, ensure_ascii=False)}"
    if keys:
        what += " " + "+".join(str(k) for k in keys)
    return f"The next action is {what}."


def _tool_call_text(call: ToolCall) -> str:
    return "<tool_call>\n" + json.dumps(call.model_dump(), ensure_ascii=False) + "\n</tool_call>"
