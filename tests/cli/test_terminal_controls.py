"""No recorded or page text drives the terminal: rich escapes markup, not ESC sequences, so every line made of a
model's reasoning, a page's text, a task's strings or a path is cleaned of control characters first."""

from __future__ import annotations

import io

from rich.console import Console

from cli.output import clean, shown
from tests.conftest import glassbox_in_process

HOSTILE = "a\x1b]0;owned\x07b\x1b[2Jc\x9b31md\x00e"


def _no_controls(text: str) -> bool:
    return not any((ord(c) < 32 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in text)


def test_shown_text_is_one_escaped_line_without_controls() -> None:
    out = io.StringIO()
    Console(file=out, width=300, color_system=None).print(f"[bold]x[/] {shown(HOSTILE + '[red]y[/]')}")
    assert _no_controls(out.getvalue()) and "[red]y[/]" in out.getvalue()  # markup shown as text, too
    assert clean("one\ntwo\x1b", lines=True) == "one\ntwo " and clean("one\ntwo") == "one two"
    # A right-to-left override would show what follows it reversed: "Publish" reading as "hsilbuP".
    assert clean("Save \u202ehsilbuP\u202c") == "Save  hsilbuP " and clean("a\u2066b\u2069") == "a b "


def test_an_error_naming_a_hostile_path_keeps_its_lines_but_no_escape(tmp_path) -> None:
    name = HOSTILE.replace("\x00", "")  # no path holds a NUL
    done = glassbox_in_process("run", str(tmp_path / f"{name}.yaml"), "--runs-dir", str(tmp_path))
    assert done.returncode == 2
    assert _no_controls(done.stderr) and "owned" in done.stderr, done.stderr
