"""Glassbox agent: tasks (and their setup), policies, the loop and its events, approval by a person.

Usage::

    from pathlib import Path
    from agent import load_task, run_task

    result = run_task(load_task("tasks/publish_product.yaml"), policy="script", runs_dir=Path("runs"))
    print(result.status.value, result.run_dir)

The names below are loaded on first use (PEP 562), so ``import agent.task`` (the task model) does not
start the loop and everything it pulls in (browser, shop server, tracer).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.events import GateDecision, Hooks
    from agent.loop import RunResult, run_task
    from agent.task import Task, TaskError, load_task

# public name -> the module that defines it
_EXPORTS = {
    "GateDecision": "agent.events",
    "Hooks": "agent.events",
    "RunResult": "agent.loop",
    "run_task": "agent.loop",
    "Task": "agent.task",
    "TaskError": "agent.task",
    "load_task": "agent.task",
}

__all__ = ["GateDecision", "Hooks", "RunResult", "Task", "TaskError", "load_task", "run_task"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
