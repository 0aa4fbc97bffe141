"""Build the policy a run asks for. Model backends are imported only when chosen (torch stays optional).

``check_policy`` says whether a policy name and its settings can work, without building anything, so that a
run refuses a bad ``--policy`` before any site, display or browser starts; ``make_policy`` builds it once the
environment is open (the script policy finds elements through the executor's page).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

from agent.policy import Policy
from agent.script_policy import ScriptPolicy
from agent.task import Task
from tools.actions import ActionError
from tools.errors import UsageError
from tools.executor import Executor, page_of
from tools.views import Located, Target

POLICIES = ("script", "qwen3vl", "openai")


class PolicyUnavailable(UsageError, ValueError):
    """The requested policy cannot be built (unknown name, missing script or model, ...)."""


def with_policy_overrides(task: Task, overrides: Mapping[str, object] | None) -> Task:
    """``task`` with its policy settings replaced by the given ones (the CLI's --model, --base-url, ...);
    None means "not given" and keeps the task's own."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not given:
        return task
    return task.model_copy(update={"policy": task.policy.model_copy(update=given)})


def check_policy(name: str, task: Task) -> None:
    """Raise :class:`PolicyUnavailable` when policy ``name`` cannot run ``task`` with its settings.

    Only cheap checks: the name, required settings, whether the packages are installed, whether a local model
    folder holds a model. Loading weights or reaching a server happens in :func:`make_policy`.
    """
    settings = task.policy
    if name not in POLICIES:
        raise PolicyUnavailable(f"unknown policy {name!r}; available: {', '.join(POLICIES)}")
    if name == "script" and not task.script:
        where = f" ({task.source})" if task.source else ""
        raise PolicyUnavailable(
            f"task {task.name!r}{where} has no 'script:' section, so the script policy cannot run it; "
            "give it a model: --policy qwen3vl --model DIR, or --policy openai --base-url URL --model NAME"
        )
    if name == "script" and uses_text_targets_by_ocr(task):
        from tools.ocr import ocr_available

        why = ocr_available(task.ocr.engine)
        if why is not None:
            raise PolicyUnavailable(f"task {task.name!r} finds its script's text targets on the desktop by OCR: {why}")
    if name == "qwen3vl":
        if not settings.model:
            raise PolicyUnavailable("--policy qwen3vl needs --model (a local folder or a hub id)")
        missing = [p for p in ("torch", "transformers") if importlib.util.find_spec(p) is None]
        if missing:
            raise PolicyUnavailable(
                f"--policy qwen3vl needs torch and transformers (no module named "
                f"{', '.join(missing)}); install them with `pip install torch==2.13.0 -e '.[model]'`"
            )
        from agent.backends.local import ModelUnavailable, _check_available

        try:
            _check_available(settings.model)
        except ModelUnavailable as exc:
            raise PolicyUnavailable(str(exc)) from None
    if name == "openai":
        if not settings.base_url or not settings.model:
            raise PolicyUnavailable(
                "--policy openai needs --base-url (the server, e.g. http://127.0.0.1:8000/v1) and --model (the served model name)"
            )
        if not settings.base_url.startswith(("http://", "https://")):
            raise PolicyUnavailable(f"base URL must start with http:// or https://, not {settings.base_url!r}")


def make_policy(name: str, task: Task, executor: Executor | None) -> Policy:
    """Build policy ``name`` for ``task``. ``executor`` is only for the script policy (it finds elements through
    the page); a model policy asked about recorded steps (``glassbox decide``) is built without one."""
    check_policy(name, task)
    settings = task.policy
    if name == "script":
        if executor is None:
            raise PolicyUnavailable("the script policy needs a live page or desktop; it cannot decide a recorded step")
        page = page_of(executor)
        if page is not None:
            return ScriptPolicy(task, page.locate, divisor=settings.coordinate_divisor)
        locate_text = None
        if uses_text_targets_by_ocr(task):
            from tools.ocr import get_engine
            from tools.ocr_locate import OcrTextLocator

            locate_text = OcrTextLocator(get_engine(task.ocr.engine))  # the same engine as the OCR worker's
        return ScriptPolicy(task, _no_element_tree, divisor=settings.coordinate_divisor, locate_text=locate_text)
    if name == "qwen3vl":
        assert settings.model is not None  # check_policy
        try:
            from agent.backends.local import LocalQwen3VL, ModelUnavailable
        except ImportError as exc:
            raise PolicyUnavailable(
                f"--policy qwen3vl needs torch and transformers ({exc}); "
                "install them with `pip install torch==2.13.0 -e '.[model]'`"
            ) from None
        from agent.qwen_policy import QwenPolicy

        try:
            backend = LocalQwen3VL(
                settings.model,
                min_pixels=settings.min_pixels,
                max_pixels=settings.max_pixels,
                thinking=settings.thinking,
                attention_layers=settings.attention_layers,
                attention_heads=settings.attention_heads,
                decoding=settings.decoding,
                compile=settings.compile,
            )
        except ModelUnavailable as exc:
            raise PolicyUnavailable(str(exc)) from None
        return QwenPolicy(backend, task)
    assert name == "openai" and settings.base_url and settings.model  # check_policy
    from agent.backends.openai import OpenAIBackend
    from agent.qwen_policy import QwenPolicy

    try:
        remote = OpenAIBackend(
            settings.base_url,
            settings.model,
            api_key_env=settings.api_key_env,
            timeout_s=settings.timeout_s,
            thinking=settings.thinking,
        )
    except ValueError as exc:
        raise PolicyUnavailable(str(exc)) from None
    return QwenPolicy(remote, task)


def uses_text_targets_by_ocr(task: Task) -> bool:
    """A desktop task whose script names targets by text: they are found by OCR of the screenshot."""
    return task.environment == "desktop" and any(step.target is not None for step in task.script or [])


def _no_element_tree(target: Target) -> Located | None:
    raise ActionError("a desktop has no element tree: desktop scripts give coordinates, not targets")
