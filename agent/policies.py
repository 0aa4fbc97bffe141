"""Build the policy a run asks for. Model backends are imported only when chosen (torch stays optional)."""

from __future__ import annotations

from agent.policy import Policy
from agent.script_policy import ScriptPolicy
from agent.task import Task
from tools.browser import BrowserExecutor

POLICIES = ("script",)


class PolicyUnavailable(ValueError):
    """The requested policy cannot be built (unknown name, missing script, ...)."""


def make_policy(name: str, task: Task, executor: BrowserExecutor) -> Policy:
    if name == "script":
        if not task.script:
            raise PolicyUnavailable(f"task {task.name!r} has no 'script:' section, so --policy script cannot run it")
        return ScriptPolicy(task, executor.locate, divisor=task.policy.coordinate_divisor)
    if name in ("qwen3vl", "openai"):
        raise PolicyUnavailable(f"the {name!r} policy is not available in this version; available: {', '.join(POLICIES)}")
    raise PolicyUnavailable(f"unknown policy {name!r}; available: {', '.join(POLICIES)}")
