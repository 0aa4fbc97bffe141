"""The one exception tree (tools/errors.py): every named error sits on its branch, and the CLI maps the branches
to exit codes by class (UsageError -> 2, HarnessError -> 1), never by a class name."""

from __future__ import annotations

import importlib
import re
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.app import _GlassboxGroup, app
from tools.errors import GlassboxError, HarnessError, StepError, UsageError

ROOT = Path(__file__).resolve().parents[1]

# (module, class, branch, the builtin it always was: `except ValueError` elsewhere still catches it)
TREE = [
    ("agent.task", "TaskError", UsageError, ValueError),
    ("agent.task_yaml", "YamlProblem", UsageError, ValueError),
    ("agent.task", "RecordedTaskError", UsageError, ValueError),
    ("tools.images", "UnreadableImage", UsageError, ValueError),
    ("agent.policies", "PolicyUnavailable", UsageError, ValueError),
    ("agent.explain", "ExplainError", UsageError, ValueError),
    ("agent.backends.local", "ModelUnavailable", UsageError, RuntimeError),
    ("tools.chromium", "ChromiumNotFound", UsageError, RuntimeError),
    ("tracer.run_files", "MissingRunFile", UsageError, FileNotFoundError),
    ("replays.replay", "ReplayError", UsageError, ValueError),
    ("replays.labels", "LabelError", UsageError, ValueError),
    ("replays.export", "FeedbackExportError", UsageError, ValueError),
    ("replays.playwright_export", "ExportError", UsageError, ValueError),
    ("cli.run_ref", "RunRefError", UsageError, ValueError),
    ("tools.actions", "ActionError", StepError, ValueError),
    ("tools.executor", "BudgetSpent", StepError, ValueError),
    ("agent.backends.base", "BackendError", StepError, RuntimeError),
    ("tools.xvfb", "DisplayError", HarnessError, RuntimeError),
    ("tools.browser", "StartPageError", HarnessError, RuntimeError),
    ("agent.environment", "DesktopAppError", HarnessError, RuntimeError),
    ("tracer.index", "UnusableIndex", HarnessError, sqlite3.DatabaseError),
]


@pytest.mark.parametrize(("module", "name", "branch", "builtin"), TREE, ids=[t[1] for t in TREE])
def test_every_named_error_is_on_its_branch(module: str, name: str, branch: type, builtin: type) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, branch) and issubclass(cls, GlassboxError) and issubclass(cls, builtin)
    others = {UsageError, StepError, HarnessError} - {branch}
    assert not any(issubclass(cls, other) for other in others)


def test_the_branches_hang_from_one_root() -> None:
    assert [b.__mro__[1] for b in (UsageError, StepError, HarnessError)] == [GlassboxError] * 3
    assert GlassboxError.__mro__[1] is Exception


def test_the_tree_is_documented_where_it_lives() -> None:
    doc = importlib.import_module("tools.errors").__doc__ or ""
    for module, name, _, _ in TREE:
        assert f"{module}.{name}" in doc, f"{module}.{name} is missing from the tree in tools/errors.py"


def test_no_code_matches_an_exception_by_its_class_name() -> None:
    pattern = re.compile(r"__name__\s*(==|!=|in)\s*[\"'(]")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in ("agent", "cli", "replays", "tools", "tracer")
        for path in (ROOT / package).rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line) and "__main__" not in line
    ]
    assert offenders == []


class _NoSuchWidget(UsageError):
    """A usage error the CLI has never heard of: it is mapped by its branch, not its name."""


def _cli_raising(exc: Exception) -> typer.Typer:
    cli = typer.Typer(cls=_GlassboxGroup)

    @cli.command()
    def boom() -> None:
        raise exc

    @cli.command()
    def fine() -> None:
        pass

    return cli


def test_the_cli_maps_any_usage_error_to_exit_2_with_its_message() -> None:
    result = CliRunner().invoke(_cli_raising(_NoSuchWidget("no widget called 'sprocket'; use one of: cog")), ["boom"])
    assert result.exit_code == 2
    assert "error: no widget called 'sprocket'; use one of: cog" in result.output
    assert "Traceback" not in result.output


def test_the_cli_maps_a_harness_error_to_exit_1_with_its_message() -> None:
    result = CliRunner().invoke(_cli_raising(HarnessError("the browser crashed (run x is marked failed)")), ["boom"])
    assert result.exit_code == 1 and "error: the browser crashed (run x is marked failed)" in result.output


def test_other_exceptions_are_not_swallowed() -> None:
    result = CliRunner().invoke(_cli_raising(KeyError("a bug")), ["boom"])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)


def test_the_glassbox_command_maps_a_real_usage_error(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    result = CliRunner().invoke(app, ["runs", "show", "no-such-run", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "error:" in result.output and "no-such-run" in result.output
