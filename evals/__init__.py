"""Evaluating an agent over many tasks: suites (tasks x seeds x repeats), parallel episodes, results and figures.

Usage::

    from pathlib import Path
    from evals import load_suite, run_eval

    outcome = run_eval(load_suite(Path("suite.yaml")), runs_dir=Path("runs"), workers=2)
    print(outcome.eval_id, outcome.summary.success.rate)

``evals`` sits above ``agent`` and ``tracer`` (each episode is a normal run); only the CLI imports it. The
names below load on first use, so ``import evals.suite`` does not pull in the runner.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evals.runner import EvalOutcome, EvalUsageError, run_eval
    from evals.suite import Suite, SuiteError, load_suite

_EXPORTS = {
    "EvalOutcome": "evals.runner",
    "EvalUsageError": "evals.runner",
    "run_eval": "evals.runner",
    "Suite": "evals.suite",
    "SuiteError": "evals.suite",
    "load_suite": "evals.suite",
}

__all__ = ["EvalOutcome", "EvalUsageError", "Suite", "SuiteError", "load_suite", "run_eval"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evals' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
