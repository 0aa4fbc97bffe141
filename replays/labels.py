"""Labels a person puts on steps: correct, or wrong with where it should have clicked.

Stored in the run folder (``RUN/labels.jsonl``, append-only: an undo is one more line), the source of truth,
and mirrored into the runs index so the viewer and the export list them fast. Deleting or rebuilding the
index keeps them; labels that an older Glassbox kept only in the index move to the folders on first open.

    labels = Labels(Path("runs"))
    labels.add(run_id, 4, LabelIn(verdict="wrong", correction=Correction(action="left_click", coordinate=(412, 300))))

From a script or a benchmark's oracle (the same store, the same checks as ``glassbox label``)::

    label_step(result.run_dir, 4, "wrong", at=(412, 300), box=(380, 280, 450, 320), note="Publish, not Save")
    label_step(result.run_dir, 5, "correct")
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tools.actions import COMPUTER_USE_ACTIONS, POINT_ACTIONS, ActionError, ToolCall, UploadFile, parse_tool_call
from tools.errors import UsageError
from tracer.index import RunIndex
from tracer.labels import LabelAdded, LabelUndone, append_label_event, new_label_id
from tracer.safe_text import controls_as_spaces, key_names, no_control
from tracer.schema import RunRecord, StepRecord
from tracer.secrets import with_placeholders
from tracer.store import RunStore, read_run, read_steps


class Correction(BaseModel):
    """What the agent should have done. ``coordinate`` is on the 0..1000 grid over the screenshot."""

    model_config = ConfigDict(extra="forbid")

    action: str = "left_click"
    coordinate: tuple[float, float] | None = None
    text: str | None = Field(default=None, max_length=2000)
    keys: list[str] | None = Field(default=None, max_length=10)
    # The labelled element: (x1, y1, x2, y2) on the same grid, what a decision's click is tested against
    # (``glassbox decide --labelled``) and where attention guidance wants the attention. None in labels given
    # before it existed and when only a point was given.
    box: tuple[float, float, float, float] | None = None

    @field_validator("text")
    @classmethod
    def _text_clean(cls, text: str | None) -> str | None:
        return no_control(text)

    @field_validator("keys")
    @classmethod
    def _keys_clean(cls, keys: list[str] | None) -> list[str] | None:
        return key_names(keys)

    @model_validator(mode="after")
    def _valid(self) -> "Correction":
        allowed = (*COMPUTER_USE_ACTIONS, "upload_file", "goto_url")
        if self.action not in allowed:
            raise ValueError(f"unknown action {self.action!r}")
        if self.coordinate is not None and not all(0 <= c <= 1000 for c in self.coordinate):
            raise ValueError("coordinate must be within 0..1000")
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            if not all(0 <= c <= 1000 for c in self.box):
                raise ValueError("box must be within 0..1000")
            if not (x1 < x2 and y1 < y2):
                raise ValueError("box must be x1,y1,x2,y2 with x1 < x2 and y1 < y2")
            if self.coordinate is not None and not (x1 <= self.coordinate[0] <= x2 and y1 <= self.coordinate[1] <= y2):
                raise ValueError(f"the point {self.coordinate} lies outside the box {self.box}")
        if self.action in POINT_ACTIONS and self.coordinate is None:
            raise ValueError(f"{self.action} needs a coordinate")
        if self.action == "type" and not self.text:
            raise ValueError("type needs text")
        if self.action == "key" and not self.keys:
            raise ValueError("key needs keys")
        if self.action in ("answer", "goto_url") and not self.text:
            raise ValueError(f"{self.action} needs text" + (" (the URL)" if self.action == "goto_url" else ""))
        if self.action == "terminate" and self.text not in (None, "success", "failure"):
            raise ValueError("terminate takes text success or failure (success when left out)")
        if self.action in ("scroll", "hscroll"):
            raise ValueError(f"{self.action} cannot be given as a correction (it needs pixels); label it wrong with a note")
        return self


def correction_call(correction: Correction, step: StepRecord) -> ToolCall:
    """The tool call a correction of ``step`` stands for, in the model's format (what an export trains on)."""
    args: dict[str, Any] = {"action": correction.action}
    if correction.coordinate is not None:
        args["coordinate"] = [round(correction.coordinate[0]), round(correction.coordinate[1])]
    if correction.text is not None and correction.action in ("type", "answer"):
        args["text"] = correction.text
    if correction.keys:
        args["keys"] = correction.keys
    if correction.action == "upload_file":  # the file is the one the step uploaded: a label cannot name another
        original = step.action.file if isinstance(step.action, UploadFile) else None
        return ToolCall(name="upload_file", arguments={"file": original, "coordinate": args.get("coordinate")})
    if correction.action == "goto_url":
        return ToolCall(name="goto_url", arguments={"url": correction.text})
    if correction.action == "terminate":
        args["status"] = correction.text or "success"
    return ToolCall(name="computer_use", arguments=args)


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["correct", "wrong"]
    correction: Correction | None = None
    note: str | None = Field(default=None, max_length=2000)

    @field_validator("note")
    @classmethod
    def _note_clean(cls, note: str | None) -> str | None:
        return no_control(note)

    @model_validator(mode="after")
    def _consistent(self) -> "LabelIn":
        if self.verdict == "correct" and self.correction is not None:
            raise ValueError("a step marked correct takes no correction")
        return self


class Label(LabelIn):
    id: int
    run_id: str
    step: int
    created_at: datetime
    pixel: tuple[int, int] | None = None  # the correction in screenshot pixels


class LabelError(UsageError, ValueError):
    """A label that cannot be stored (unknown run or step)."""


class Labels:
    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir
        self.store = RunStore(runs_dir)

    def add(self, run_id: str, step: int, label: LabelIn) -> Label:
        try:
            run_dir = self.store.run_dir(run_id)
        except FileNotFoundError as exc:
            raise LabelError(str(exc)) from None
        steps = {s.index: s for s in read_steps(run_dir)}
        if step not in steps:
            raise LabelError(f"run {run_id} has no step {step}")
        label = _without_secrets(label, run_dir)
        if label.correction is not None:  # it must export as an action the model could take at that step
            try:
                parse_tool_call(correction_call(label.correction, steps[step]))
            except ActionError as exc:
                raise LabelError(f"the correction of step {step} is not an action the model could take: {exc}") from None
        correction: dict[str, Any] | None = label.correction.model_dump() if label.correction else None
        if correction is not None and label.correction and label.correction.coordinate is not None:
            width, height = steps[step].screenshot_size
            x, y = label.correction.coordinate
            correction["pixel"] = [round(x / 1000 * width), round(y / 1000 * height)]
        event = LabelAdded(
            id=new_label_id(),
            step=step,
            verdict=label.verdict,
            correction=correction,
            note=label.note,
            created_at=datetime.now().astimezone(),
        )
        try:
            append_label_event(run_dir, event)  # the truth first; the index only mirrors it
        except OSError as exc:
            raise LabelError(f"cannot write the labels of run {run_id}: {exc}") from None
        index = RunIndex(self.runs_dir)
        try:
            index.mirror_labels(run_dir)
        finally:
            index.close()
        added = _label(run_dir.name, event.model_dump())
        assert added is not None  # built from a validated LabelIn
        return added

    def undo(self, label_id: int) -> bool:
        """Undo a label (an undo line appended to its run's labels file); False when there is no such label."""
        index = RunIndex(self.runs_dir)
        try:
            holders = index.label_runs(label_id)
            if not holders:  # given by another process whose mirror has not run yet
                index.refresh_labels()
                holders = index.label_runs(label_id)
            undone = False
            for run_id, deleted in holders:
                try:
                    run_dir = self.store.run_dir(run_id)
                except FileNotFoundError:
                    continue
                if not deleted:
                    append_label_event(run_dir, LabelUndone(id=label_id, at=datetime.now(timezone.utc)))
                    undone = True
                index.mirror_labels(run_dir)
            return undone
        finally:
            index.close()

    def list(self, run_id: str | None = None) -> list[Label]:
        """Labels not undone, oldest first. A label whose correction no longer validates (a hand-edited or
        foreign labels file) is left out rather than failing the whole list."""
        index = RunIndex(self.runs_dir)
        try:
            index.refresh_labels(run_id)
            rows = index.labels(run_id)
        finally:
            index.close()
        labels = []
        secrets: dict[str, dict[str, str]] = {}  # per run: a label written before secrets were kept by name
        for row in rows:
            label = _label(row["run_id"], {**row, "step": row["idx"]})
            if label is None:
                continue
            if label.run_id not in secrets:
                try:
                    secrets[label.run_id] = run_secrets(read_run(self.store.run_dir(label.run_id)))
                except (FileNotFoundError, ValueError):
                    secrets[label.run_id] = {}
            labels.append(_named_secrets(label, secrets[label.run_id]))
        return labels


Verdict = Literal["correct", "wrong"]


def label_step(
    run_dir: Path,
    step: int,
    verdict: Verdict,
    *,
    at: Sequence[float] | None = None,
    box: Sequence[float] | None = None,
    action: str | None = None,
    text: str | None = None,
    keys: Sequence[str] | None = None,
    note: str | None = None,
) -> Label:
    """Label step ``step`` of the run in ``run_dir``, as a person does in the viewer (one store: :class:`Labels`).

    A ``wrong`` verdict may say what should have been done: ``at`` a point and/or ``box`` the element
    (x1, y1, x2, y2), both on the 0..1000 grid over the screenshot; ``action`` (``left_click`` when a point or
    box is given, ``type`` with ``text``, ``key`` with ``keys``); a box without a point clicks its centre.
    Values of the run's secrets in ``text`` or ``note`` become ``<secret>name</secret>`` (the form the model
    types them in), so a label never holds a secret. Raises :class:`LabelError` (a usage error) naming what
    is wrong: no such run or step, a bad point or box, a correction on a ``correct`` verdict.
    """
    if verdict not in ("correct", "wrong"):
        raise LabelError(f"the verdict must be 'correct' or 'wrong', not {str(verdict)[:40]!r}")
    given = [name for name, value in (("at", at), ("box", box), ("action", action), ("text", text), ("keys", keys)) if value]
    if verdict == "correct" and given:
        raise LabelError(f"a step labelled correct takes no correction (got {', '.join(given)}); label it wrong")
    run_id = run_dir.name
    try:
        read_run(run_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise LabelError(f"no run at {run_dir}: {exc}") from None
    try:
        correction = _correction(at, box, action, text, keys) if given else None
        label = LabelIn(verdict=verdict, correction=correction, note=note)
    except ValidationError as exc:
        raise LabelError(f"cannot label step {step} of run {run_id}: {_first_error(exc)}") from None
    return Labels(run_dir.parent).add(run_id, step, label)


def run_secrets(run: RunRecord) -> dict[str, str]:
    """The values of the run's secrets that can be known here (a recorded task holds none: they were replaced
    when it was recorded): from its task file, when that is still at hand and loads (literal values, and
    environment variables set here), and otherwise from the environment variables its recorded task names.

    The task file's path comes from the run folder, which is untrusted: reading it only ever adds values to
    mask, and a file that is not a task file adds nothing."""
    from agent.task import Task, TaskError, load_task

    found: dict[str, str] = {}
    if run.task_file:
        try:
            task = load_task(run.task_file, require_env=False, allow_programs=True)  # loading starts nothing
            for name, spec in task.inputs.items():
                if spec.secret:
                    try:
                        found[name] = task.input_value(name)
                    except (TaskError, KeyError):  # its variable is not set here
                        continue
        except (TaskError, OSError, ValueError):  # moved, edited, or not a task file
            pass
    try:
        recorded = Task.recorded(run.task, run_id=run.run_id)
    except (ValueError, TypeError):  # RecordedTaskError among them
        return _real(found)
    for name, spec in recorded.inputs.items():
        if name in found or not (spec.secret and spec.env):
            continue
        try:
            found[name] = recorded.input_value(name)
        except (TaskError, KeyError):
            continue
    return _real(found)


def _real(found: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in found.items() if value and value != "<secret>"}


def _named_secrets(label: Label, secrets: dict[str, str]) -> Label:
    """A stored label as it is shown: a secret's value in its text or note (stored by an older Glassbox, or by
    hand) written as ``<secret>name</secret>``."""
    if not secrets:
        return label
    correction = label.correction
    if correction is not None and correction.text:
        correction = correction.model_copy(update={"text": with_placeholders(correction.text, secrets)})
    return label.model_copy(update={"correction": correction, "note": with_placeholders(label.note, secrets)})


def _without_secrets(label: LabelIn, run_dir: Path) -> LabelIn:
    """The label with the run's secret values in its text and note written as ``<secret>name</secret>`` (the form
    the model types them in), from the viewer as from the command line; keys holding one are refused."""
    try:
        secrets = run_secrets(read_run(run_dir))
    except (FileNotFoundError, ValueError) as exc:
        raise LabelError(f"no run at {run_dir}: {exc}") from None
    if not secrets:
        return label
    correction = label.correction
    if correction is not None:
        for key in correction.keys or []:
            if any(secret in key for secret in secrets.values()):
                raise LabelError("keys: a key holds the value of one of the run's secrets; name keys, not secrets")
        correction = correction.model_copy(update={"text": with_placeholders(correction.text, secrets)})
    return label.model_copy(update={"correction": correction, "note": with_placeholders(label.note, secrets)})


def _correction(
    at: Sequence[float] | None,
    box: Sequence[float] | None,
    action: str | None,
    text: str | None,
    keys: Sequence[str] | None,
) -> Correction:
    point = _numbers(at, 2, "at (x,y)") if at is not None else None
    area = _numbers(box, 4, "box (x1,y1,x2,y2)") if box is not None else None
    if action is None:
        action = "type" if text and not (point or area) else "key" if keys and not (point or area) else "left_click"
    if point is None and area is not None:
        point = ((area[0] + area[2]) / 2, (area[1] + area[3]) / 2)
    return Correction(
        action=action,
        coordinate=(point[0], point[1]) if point else None,
        box=(area[0], area[1], area[2], area[3]) if area else None,
        text=text,
        keys=list(keys) if keys else None,
    )


def _numbers(values: Sequence[float], count: int, what: str) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or len(values) != count:
        raise LabelError(f"{what} takes {count} numbers on the 0..1000 grid")
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise LabelError(f"{what} takes {count} numbers on the 0..1000 grid") from None
    if not all(0 <= n <= 1000 for n in numbers):  # NaN and infinities fail here too
        raise LabelError(f"{what} must lie on the 0..1000 grid over the screenshot, got {', '.join(f'{n:g}' for n in numbers)}")
    return numbers


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"] if part != "correction")
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _label(run_id: str, row: dict[str, Any]) -> Label | None:
    correction = dict(row["correction"]) if row.get("correction") else None
    pixel = correction.pop("pixel", None) if correction else None
    fix: Correction | None = None
    if correction:
        try:
            fix = Correction(**correction)
        except (ValidationError, TypeError):  # one no label may hold (a person's scroll, text with controls):
            fix, pixel = None, None  # the verdict stands, without it, rather than vanishing with it
    try:
        return Label(
            id=row["id"],
            run_id=run_id,
            step=row["step"],
            verdict=row["verdict"],
            # A note stored before control characters were refused (or by hand) still lists, with spaces for them.
            note=controls_as_spaces(row["note"]) if isinstance(row.get("note"), str) else row.get("note"),
            correction=fix,
            created_at=row["created_at"],
            pixel=tuple(pixel) if isinstance(pixel, (list, tuple)) and len(pixel) == 2 else None,
        )
    except (ValidationError, TypeError):
        return None
