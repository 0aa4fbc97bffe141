"""What list and show commands print: JSON documents (typed) and tables that never drop a column.

On a terminal a table wraps its long text columns; when the terminal is too narrow for that, or stdout is
not a terminal (``glassbox runs list | grep failed``), every row is printed whole on one line, uncoloured.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import typer
from pydantic import BaseModel
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from replays import confidence as conf_scale
from tracer.index import RunRow
from tracer.safe_text import json_text
from tracer.schema import RunRecord, StepRecord
from tracer.store import UnreadableStep

SEP = "  "

# Every command prints through these two: results on stdout, messages and progress on stderr.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def usage_error(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit (code 2) for the caller to raise."""
    err_console.print(f"[bold red]error:[/] {escape(clean(message, lines=True))}")
    return typer.Exit(code=2)


def runs_dir_is_folder(value: Path) -> Path:
    """A --runs-dir option's check (typer callback): a file there is a usage error, named, not a traceback later."""
    if value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is a file, not a folder of runs")
    return value


def writable_runs_dir(runs_dir: Path) -> None:
    """For commands that record: the runs directory, or the folder it will be made in, must take new files (not a
    read-only mount, nor a path through a file), or the command stops here with a usage error naming it. Nothing is
    made: a command that stops later for another reason leaves no folder behind."""
    import errno
    import tempfile

    probe = runs_dir
    while not probe.exists() and probe.parent != probe:  # the nearest part of the path that is there
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise usage_error(f"cannot write to the runs directory {runs_dir}: {os.strerror(errno.ENOTDIR)}")
    try:
        with tempfile.TemporaryFile(dir=probe):  # what a run does first: write a file there
            pass
    except OSError as exc:
        raise usage_error(f"cannot write to the runs directory {runs_dir}: {exc.strerror or exc}") from None


# Would break "one row per line" or drive the terminal; the bidirectional overrides and isolates would reorder
# what is shown after them (a note or a page title that reads otherwise than it is).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class RunListing(BaseModel):
    """``glassbox runs list --json``."""

    runs_dir: str
    runs: list[RunRow]
    unreadable: list[tuple[str, str]] = []  # (run id, why): run folders that could not be read, so not listed


class RunShow(BaseModel):
    """``glassbox runs show --json``: the run record and its steps, as on disk."""

    run_dir: str
    run: RunRecord
    steps: list[StepRecord]
    unreadable: list[UnreadableStep] = []  # whole lines of steps.jsonl that are not valid steps (damaged)


class Column(BaseModel):
    header: str
    wraps: bool = False  # may wrap on a terminal (free text); the others are kept whole
    style_by_value: dict[str, str] = {}


def clean(text: str, *, lines: bool = False) -> str:
    """One line of printable text: control characters (newlines, tabs, escapes) become spaces; with ``lines``, line
    breaks stay (a message of several lines) and only the other controls go."""
    if lines:
        return "\n".join(_CONTROL.sub(" ", line) for line in text.split("\n"))
    return _CONTROL.sub(" ", text)


def shown(text: str) -> str:
    """Recorded or page text for a rich markup line: one line, no control character (rich escapes markup, not ESC
    sequences), markup escaped."""
    return escape(clean(text))


def plain_rows(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> str:
    """Aligned rows, each whole on its own line (a header first); no truncation at any width."""
    cells = [[clean(c) for c in row] for row in rows]
    widths = [max([cell_len(col.header), *(cell_len(r[i]) for r in cells)]) for i, col in enumerate(columns)]
    lines = [[col.header for col in columns], *cells]
    return "".join(
        SEP.join(c + " " * (w - cell_len(c)) for c, w in zip(line, widths, strict=True)).rstrip() + "\n" for line in lines
    )


def is_tty(console: Console) -> bool:
    """Whether the console writes to a real terminal (FORCE_COLOR and the like do not make a pipe one)."""
    isatty = getattr(console.file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or odd stream
        return False


def print_table(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]], *, tty: bool | None = None) -> None:
    """A table on a terminal wide enough for its fixed columns; plain whole rows otherwise."""
    if not (is_tty(console) if tty is None else tty) or not _fits(console.width, columns, rows):
        console.file.write(plain_rows(columns, rows))
        console.file.flush()
        return
    table = Table(box=None, pad_edge=False, padding=(0, 1))
    for i, col in enumerate(columns):
        longest = _longest(i, col, rows)
        if col.wraps:
            table.add_column(col.header, overflow="fold", min_width=min(longest, 8))
        else:
            table.add_column(col.header, no_wrap=True, min_width=longest)
    for row in rows:
        cells = (Text(clean(value), style=col.style_by_value.get(value, "")) for col, value in zip(columns, row, strict=True))
        table.add_row(*cells)
    console.print(table)


def _fits(width: int, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> bool:
    need = 0
    for i, col in enumerate(columns):
        longest = _longest(i, col, rows)
        need += (min(longest, 8) if col.wraps else longest) + 1
    return need <= width


def _longest(i: int, col: Column, rows: Sequence[Sequence[str]]) -> int:
    return max([cell_len(col.header), *(cell_len(clean(r[i])) for r in rows)])


def missing_runs_dir(runs_dir: Path, what: str, empty: BaseModel, *, json_out: bool) -> bool:
    """Whether ``runs_dir`` is not there; if so, a listing says so (empty JSON with ``--json``) and makes nothing:
    a typo would leave a folder behind."""
    if runs_dir.is_dir():
        return False
    if json_out:
        write_json(console, empty)
    else:
        console.print(f"no {what} in {escape(str(runs_dir))} (no such folder)")
    return True


def write_json(console: Console, document: BaseModel) -> None:
    """One JSON document on stdout (no rich rendering: no wrapping, no markup; no raw terminal control)."""
    console.file.write(json_text(document.model_dump_json(indent=1)) + "\n")
    console.file.flush()


def path_text(path: Path) -> str:
    return clean(str(path))


def confidence_markup(value: float | None, *, pad: int = 11) -> str:
    """A step's confidence for a terminal line, as rich markup: the number and its band word (the word carries
    the meaning; the band's colour only helps), e.g. ``0.41 low``; ``unknown`` when the step has none."""
    style = conf_scale.style(value)
    word = style.band.value
    text = f"{conf_scale.number(value)} {word}" if value is not None and value == value else word
    colour = "dim" if style.band is conf_scale.ConfidenceBand.UNKNOWN else f"bold {style.colour}"
    return f"[{colour}]{text:<{pad}}[/]"


def least_confident_markup(steps: Sequence[StepRecord]) -> str:
    """The end-of-run line naming the least confident step (the first of equals), or saying none had a confidence."""
    known = [s for s in steps if s.confidence is not None and s.confidence == s.confidence]
    if not known:
        return "[dim]least confident step: none (no step recorded a confidence)[/]"
    step = min(known, key=lambda s: (s.confidence, s.index))
    reasoning = clean((step.reasoning or "").strip().splitlines()[0] if step.reasoning and step.reasoning.strip() else "")
    excerpt = f" [dim]· {shown(reasoning[:80])}[/]" if reasoning else ""
    return f"least confident step: [bold]step {step.index}[/] {confidence_markup(step.confidence, pad=0)}{excerpt}"


def missing_steps(run: RunRecord, found: int) -> str | None:
    """When a finished run's record counts more steps than its steps.jsonl holds (the file was cut: a copy that
    stopped short, a truncation), what to say; else None."""
    if run.status.value == "running" or found >= run.steps:
        return None
    return f"run.json counts {run.steps} steps, but steps.jsonl holds {found}: its end is missing (cut short or truncated)"


def say_missing_steps(run_dir: Path) -> None:
    """Warn on standard error when a finished run's steps.jsonl stops short of what run.json counts."""
    from tracer.store import read_run, read_step_entries

    try:
        said = missing_steps(read_run(run_dir), len(read_step_entries(run_dir)))
    except (OSError, ValueError):
        return  # what cannot be read is said by the command that reads it
    if said is not None:
        err_console.print(f"[yellow]warning:[/] run {shown(run_dir.name)}: {said}", soft_wrap=True)


def say_damaged(run_dir: Path, damaged: Sequence[UnreadableStep], where: str) -> None:
    """Warn on standard error that lines of a run's steps.jsonl cannot be read: a command that reads what it can
    says what it left out, and ``where``, how its output shows them."""
    if not damaged:
        return
    err_console.print(
        f"[yellow]warning:[/] run {shown(run_dir.name)}: {len(damaged)} line(s) of steps.jsonl cannot be read ({where})",
        soft_wrap=True,
    )
    for entry in damaged[:5]:
        err_console.print(f"  line {entry.line + 1} (step {entry.index}): {shown(entry.unreadable)}", soft_wrap=True)
    if len(damaged) > 5:
        err_console.print(f"  and {len(damaged) - 5} more (glassbox runs show lists them all)")
