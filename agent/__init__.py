"""Glassbox agent: tasks, policies, the loop and the CLI.

Usage::

    from pathlib import Path
    from agent import load_task, run_task

    result = run_task(load_task("tasks/publish_product.yaml"), policy="script", runs_dir=Path("runs"))
    print(result.status.value, result.run_dir)
"""

from agent.loop import RunResult, run_task
from agent.task import Task, TaskError, load_task

__all__ = ["RunResult", "Task", "TaskError", "load_task", "run_task"]
