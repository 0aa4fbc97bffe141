"""Build the policy a run asks for. Model backends are imported only when chosen (torch stays optional)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.policy import Policy
from agent.script_policy import ScriptPolicy
from agent.task import Task
from tools.browser import BrowserExecutor

if TYPE_CHECKING:
    from tools.desktop import DesktopExecutor

POLICIES = ("script", "qwen3vl", "openai")


class PolicyUnavailable(ValueError):
    """The requested policy cannot be built (unknown name, missing script or model, ...)."""


def make_policy(name: str, task: Task, executor: "BrowserExecutor | DesktopExecutor") -> Policy:
    settings = task.policy
    if name == "script":
        if not task.script:
            raise PolicyUnavailable(f"task {task.name!r} has no 'script:' section, so --policy script cannot run it")
        return ScriptPolicy(task, executor.locate, divisor=settings.coordinate_divisor)
    if name == "qwen3vl":
        if not settings.model:
            raise PolicyUnavailable("--policy qwen3vl needs --model (a local folder or a hub id)")
        try:
            from agent.backends.local import LocalQwen3VL, ModelUnavailable
        except ImportError as exc:
            raise PolicyUnavailable(f"--policy qwen3vl needs torch and transformers ({exc}); "
                                    "install them with `pip install torch==2.13.0 -e '.[model]'`") from None
        from agent.qwen_policy import QwenPolicy

        try:
            backend = LocalQwen3VL(settings.model, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels,
                                   thinking=settings.thinking, attention_layers=settings.attention_layers,
                                   attention_heads=settings.attention_heads, decoding=settings.decoding,
                                   compile=settings.compile)
        except ModelUnavailable as exc:
            raise PolicyUnavailable(str(exc)) from None
        return QwenPolicy(backend, task)
    if name == "openai":
        if not settings.base_url or not settings.model:
            raise PolicyUnavailable("--policy openai needs --base-url (the server, e.g. http://127.0.0.1:8000/v1) "
                                    "and --model (the served model name)")
        from agent.backends.openai import OpenAIBackend
        from agent.qwen_policy import QwenPolicy

        try:
            remote = OpenAIBackend(settings.base_url, settings.model, api_key_env=settings.api_key_env,
                                   timeout_s=settings.timeout_s, thinking=settings.thinking)
        except ValueError as exc:
            raise PolicyUnavailable(str(exc)) from None
        return QwenPolicy(remote, task)
    raise PolicyUnavailable(f"unknown policy {name!r}; available: {', '.join(POLICIES)}")
