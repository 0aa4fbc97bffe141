"""A --runs-dir that cannot hold runs is a usage error that names it (exit 2), for every command that takes one:
not a traceback, and not exit 1 (which says a task failed)."""

from __future__ import annotations

import pytest

from tests.conftest import TASKS, glassbox_in_process


def said(text: str) -> str:
    """What was said, without the error panel's frame and line breaks (rich wraps it at the terminal's width)."""
    return " ".join("".join(" " if c in "│╭╮╰╯─" else c for c in text).split())


@pytest.mark.parametrize(
    "command",
    [["run", str(TASKS / "publish_product.yaml")], ["runs", "list"], ["labels"], ["view", "--port", "0"]],
)
def test_a_file_given_as_runs_dir_is_named(tmp_path, command):
    afile = tmp_path / "runs.txt"
    afile.write_text("not a folder")
    done = glassbox_in_process(*command, "--runs-dir", str(afile))
    message = said(done.stderr)
    assert done.returncode == 2, message
    assert "is a file, not a folder of runs" in message and "Traceback" not in message


@pytest.mark.parametrize("command", [["run", str(TASKS / "publish_product.yaml")], ["eval", str(TASKS)]])
def test_a_runs_dir_that_cannot_be_made_is_named_before_anything_starts(tmp_path, command):
    afile = tmp_path / "runs.txt"
    afile.write_text("not a folder")
    inside = afile / "runs"  # cannot be made: its parent is a file
    done = glassbox_in_process(*command, "--runs-dir", str(inside))
    message = said(done.stderr)
    assert done.returncode == 2, message
    assert f"cannot write to the runs directory {inside}: Not a directory" in message and "Traceback" not in message
