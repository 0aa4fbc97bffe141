"""A task's ``setup``: JavaScript, waits and pages opened in the browser before step 0, recorded in ``run.json``.

Setup is part of the harness, not of the agent: its steps are never agent steps, and a step that fails fails
the run (``setup failed: setup[2].wait_for: ...``) before the agent acts. The loop calls it once::

    run_setup(env, writer, deadline=deadline)   # records RunRecord.setup (and page_values); raises SetupFailed

A ``js`` step (or a ``wait_for: {js}``) with ``save_as: name`` keeps its result as ``{name}`` for the goal, the
script and the checks: the loop renders the task with ``env.task.with_runtime(**record.page_values)``.

Scripts are the task author's code, trusted as much as the task file; what they return comes from the page,
so it is masked with the run's scrubber and cut short before it is recorded.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urljoin, urlsplit

from agent.environment import Environment
from agent.task import SetupStep, Task
from tools.actions import ActionError
from tools.errors import HarnessError
from tools.navigation import PageScriptError
from tracer.schema import SetupStepResult
from tracer.store import RunWriter

DETAIL_LIMIT = 300  # characters of a recorded value
SAVED_LIMIT = 2000  # characters of a value kept with save_as


class SetupFailed(HarnessError, RuntimeError):
    """A setup step failed; ``str()`` is the run's end reason (``setup failed: setup[i].kind: why``).

    ``lasting``: trying again cannot help, because the task file itself is at fault (a script that does not
    parse, a refused URL, a value save_as cannot keep, no browser page): an eval does not retry it."""

    def __init__(self, message: str, *, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


@runtime_checkable
class SetupPage(Protocol):
    """What setup needs from the executor: a browser page (tools.browser.BrowserExecutor)."""

    def run_script(self, script: str, *, timeout_ms: int) -> Any: ...

    def wait_for_script(self, expression: str, *, timeout_ms: int) -> Any: ...

    def wait_for_selector(self, selector: str, *, state: str = "visible", timeout_ms: int) -> None: ...

    def open_url(self, url: str, *, timeout_ms: int) -> None: ...

    def check_url_allowed(self, url: str) -> None: ...


def run_setup(env: Environment, writer: RunWriter, *, deadline: float | None = None) -> list[SetupStepResult]:
    """Run the task's setup steps in order, recording each in ``writer.record.setup`` as it ends.

    ``deadline`` (``time.monotonic()``) is when the run's time budget runs out: no step waits past it.
    Raises :class:`SetupFailed` at the first step that fails, after recording it.
    """
    task = env.task
    results: list[SetupStepResult] = writer.record.setup
    saved = writer.record.page_values
    if not task.setup:
        return results
    page = env.executor if isinstance(env.executor, SetupPage) else None
    for index, step in enumerate(task.setup):
        name = f"setup[{index}].{step.kind}"
        started = time.perf_counter()
        limit = step.limit_ms
        if deadline is not None:
            limit = min(limit, int((deadline - time.monotonic()) * 1000))
        try:
            if page is None:
                raise _StepError(f"this run's executor ({env.executor.kind}) has no browser page to run setup in")
            if limit <= 0:
                raise _OutOfTime("the run's time budget ran out before this step")
            detail, value = _run_step(task, step, page, env.start_url, limit)
            if step.save_as is not None:
                saved[step.save_as] = _saved_value(value)
            ok, reason = True, None
        except Exception as exc:  # a page error, a timeout, a refused URL: all name the step
            detail = _describe(exc)
            lasting = _lasting(exc)
            if deadline is not None and limit < step.limit_ms and "within" in detail:
                detail += " (the run's time budget ran out)"
            ok, reason = False, f"{name}: {detail}"
        shown = _cut(writer.scrubber.scrub_text(reason or detail or "")) or None
        results.append(SetupStepResult(index=index, kind=step.kind, ok=ok, ms=_ms(started), detail=shown))
        writer.record.setup = results
        writer.record.page_values = {name: writer.scrubber.scrub_text(text) for name, text in saved.items()}
        writer.save()
        if not ok:
            raise SetupFailed(f"setup failed: {shown}", lasting=lasting)
    return results


class _StepError(RuntimeError):
    """The step cannot run as the task file wrote it."""


class _OutOfTime(RuntimeError):
    """The run's budget was spent before the step (a slow page, perhaps: another attempt may have time)."""


def _run_step(task: Task, step: SetupStep, page: SetupPage, start_url: str | None, limit_ms: int) -> tuple[str, Any]:
    """What the step did (for the record) and the value its script returned (None for other steps)."""
    if step.js is not None:
        value = page.run_script(task.render_setup(step.js), timeout_ms=limit_ms)
        return f"returned {value.text if value.text is not None else value.type}", value
    if step.wait_for is not None:
        wait = step.wait_for
        if wait.js is not None:
            value = page.wait_for_script(task.render_setup(wait.js), timeout_ms=limit_ms)
            return f"became truthy: {value.text if value.text is not None else value.type}", value
        assert wait.selector is not None  # WaitFor holds one of them
        page.wait_for_selector(wait.selector, state=wait.state, timeout_ms=limit_ms)
        return f"{wait.selector!r} is {wait.state}", None
    assert step.goto is not None
    url = _goto_url(task, task.render_setup(step.goto), start_url, page)
    page.open_url(url, timeout_ms=limit_ms)
    return f"opened {url}", None


def _saved_value(value: Any) -> str:
    """A script's result as the text ``{name}`` stands for: a string as it is, a number or boolean as JSON."""
    text = getattr(value, "text", None)
    try:
        parsed = json.loads(text) if isinstance(text, str) else None
    except ValueError:  # cut short: longer than a page value should be
        raise _StepError(f"save_as: the value is longer than {SAVED_LIMIT} characters") from None
    if isinstance(parsed, str):
        if len(parsed) > SAVED_LIMIT:
            raise _StepError(f"save_as: the value is longer than {SAVED_LIMIT} characters")
        return parsed
    if isinstance(parsed, (int, float, bool)):
        return json.dumps(parsed)
    if isinstance(parsed, list) and all(isinstance(item, (str, int, float)) for item in parsed):
        kept = json.dumps([str(item) for item in parsed], ensure_ascii=False)  # for a script step's for_each
        if len(kept) > SAVED_LIMIT:
            raise _StepError(f"save_as: the value is longer than {SAVED_LIMIT} characters")
        return kept
    kind = getattr(value, "type", "undefined")
    raise _StepError(
        "save_as keeps text, a number or a list of them; the script returned "
        + (kind if parsed is None else type(parsed).__name__)
    )


def _goto_url(task: Task, goto: str, start_url: str | None, page: SetupPage) -> str:
    """The URL a ``goto`` opens, checked again at run time: a local page under the task's roots, or an
    http(s) URL on the task's origins (relative URLs resolve against the start page)."""
    is_file = urlsplit(goto).scheme.lower() == "file"
    absolute = goto if is_file or not start_url else urljoin(start_url, goto)
    if urlsplit(absolute).scheme.lower() == "file":
        try:
            return task.local_page_url(goto, base=start_url)
        except ValueError as exc:
            raise _StepError(str(exc)) from None
    page.check_url_allowed(absolute)  # ActionError naming the allowed origins
    return absolute


def _lasting(exc: BaseException) -> bool:
    """Whether the step would fail the same way every time: the task file's fault, not the page's readiness. A
    script that throws a ReferenceError may only have run before the page's own scripts loaded, so only a
    script that does not parse counts."""
    if isinstance(exc, (_StepError, ActionError)):
        return True
    return isinstance(exc, PageScriptError) and "SyntaxError" in str(exc)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, _StepError) or type(exc).__module__.startswith(("tools.", "agent.")):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _cut(text: str) -> str:
    return text if len(text) <= DETAIL_LIMIT else text[:DETAIL_LIMIT] + "…"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
