"""``glassbox label RUN --step N correct|wrong [...]``, ``glassbox labels [RUN] [--json]`` and ``glassbox unlabel
ID``: labels from a script.

The same store and checks as the viewer's label buttons (:func:`replays.labels.label_step`). Points and boxes
are on the 0..1000 grid over the step's screenshot. Exit codes: 0 done, 2 usage errors (no such run or step,
a bad point or box, a correction on a correct verdict, a note with control characters ...).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from pydantic import BaseModel
from rich.markup import escape

from cli.output import Column, clean, console, missing_runs_dir, print_table, runs_dir_is_folder, usage_error, write_json
from cli.run_ref import resolve_run
from tools.errors import UsageError

if TYPE_CHECKING:
    from replays.labels import Label


RUN_HELP = "The run: its folder as `glassbox run` prints it (runs/<id>), its id, or a unique prefix of the id."


class Verdict(str, Enum):
    correct = "correct"
    wrong = "wrong"


class LabelListing(BaseModel):
    """``glassbox labels --json``: the labels standing (undone ones left out), oldest first."""

    runs_dir: str
    labels: list[dict[str, object]]


def _numbers(value: str | None, count: int, flag: str) -> list[float] | None:
    if value is None:
        return None
    parts = value.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != count:
        shape = "X,Y" if count == 2 else "X1,Y1,X2,Y2"
        raise UsageError(f"{flag} takes {shape} on the 0..1000 grid (numbers separated by commas), not {clean(value)[:60]!r}")
    return numbers


def label_command(
    run: Annotated[str, typer.Argument(metavar="RUN", help=RUN_HELP, show_default=False)],
    verdict: Annotated[Verdict, typer.Argument(help="correct, or wrong (then say what should have been done).")],
    step: Annotated[int, typer.Option("--step", "-s", help="The step's index (as the viewer and `runs show` number it).")],
    at: Annotated[Optional[str], typer.Option("--at", help="X,Y: where it should have clicked (0..1000 grid).")] = None,
    box: Annotated[
        Optional[str],
        typer.Option("--box", help="X1,Y1,X2,Y2: the element it should have hit (0..1000 grid; contains --at)."),
    ] = None,
    action: Annotated[Optional[str], typer.Option("--action", help="The right action (left_click, type, key, ...).")] = None,
    text: Annotated[Optional[str], typer.Option("--text", help="The text to type (with --action type).")] = None,
    keys: Annotated[Optional[str], typer.Option("--keys", help="Keys to press, joined by + (ctrl+a).")] = None,
    note: Annotated[Optional[str], typer.Option("--note", help="Why (free text, kept with the label).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="The runs directory.", callback=runs_dir_is_folder)] = Path("runs"),
    json_out: Annotated[bool, typer.Option("--json", help="Print the label as JSON.")] = False,
) -> None:
    """Label a recorded step correct or wrong, as in the viewer (for scripts and a benchmark's oracle)."""
    from replays.labels import label_step

    ref = resolve_run(run, runs_dir)
    key_list = (["+"] if keys == "+" else keys.split("+")) if keys is not None else None
    label = label_step(
        ref.run_dir,
        step,
        verdict.value,
        at=_numbers(at, 2, "--at"),
        box=_numbers(box, 4, "--box"),
        action=action,
        text=text,
        keys=key_list,
        note=note,
    )
    if json_out:
        write_json(console, label)
        return
    fix = f": {escape(_what(label))}" if label.correction else ""
    console.print(f"labelled step {label.step} of {escape(ref.run_id)} {label.verdict}{fix} (label {label.id})", soft_wrap=True)


def labels_command(
    run: Annotated[Optional[str], typer.Argument(metavar="[RUN]", help=RUN_HELP + " All runs when left out.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="The runs directory.", callback=runs_dir_is_folder)] = Path("runs"),
    json_out: Annotated[bool, typer.Option("--json", help="Print the labels as JSON.")] = False,
) -> None:
    """List the labels standing on a run's steps (or on every run's), undone ones left out."""
    from replays.labels import Labels

    if run is not None:
        ref = resolve_run(run, runs_dir)
        found = Labels(ref.runs_dir).list(ref.run_id)
        where = ref.runs_dir
    elif missing_runs_dir(runs_dir, "labels", LabelListing(runs_dir=str(runs_dir), labels=[]), json_out=json_out):
        return
    else:
        found = Labels(runs_dir).list()
        where = runs_dir
    if json_out:
        write_json(console, LabelListing(runs_dir=str(where), labels=[label.model_dump(mode="json") for label in found]))
        return
    if not found:
        console.print("no labels" + (f" on {escape(run)}" if run else f" in {escape(str(where))}"))
        return
    columns = [Column(header="id"), Column(header="run"), Column(header="step"), Column(header="verdict")]
    columns += [Column(header="correction", wraps=True), Column(header="note", wraps=True)]
    rows = [[str(lbl.id), lbl.run_id, str(lbl.step), lbl.verdict, _what(lbl), clean(lbl.note or "")[:200]] for lbl in found]
    print_table(console, columns, rows)


def _what(label: Label) -> str:
    fix = label.correction
    if fix is None:
        return "-"
    parts = [fix.action]
    if fix.coordinate is not None:
        parts.append(f"at {fix.coordinate[0]:g},{fix.coordinate[1]:g}")
    if fix.box is not None:
        parts.append("box " + ",".join(f"{c:g}" for c in fix.box))
    if fix.text is not None:
        parts.append(repr(clean(fix.text)[:80]))
    if fix.keys:
        parts.append("+".join(fix.keys))
    return " ".join(parts)


def unlabel_command(
    label_id: Annotated[int, typer.Argument(metavar="ID", help="The label's id (glassbox labels lists them).")],
    runs_dir: Annotated[Path, typer.Option(help="The runs directory.", callback=runs_dir_is_folder)] = Path("runs"),
) -> None:
    """Undo a label, as the viewer's Undo does: its run's labels file keeps it, marked undone."""
    from replays.labels import Labels

    if not runs_dir.is_dir():
        raise usage_error(f"no runs directory {runs_dir}")
    if not 1 <= label_id <= 2**53 - 1 or not Labels(runs_dir).undo(label_id):
        raise usage_error(f"no label {label_id} standing in {runs_dir} (glassbox labels lists them)")
    console.print(f"label {label_id} undone")
