"""The executor interface (perceive, act) and the implementation every executor shares.

``Executor`` is what the loop, replay and checks talk to; ``BaseExecutor`` holds what a browser, a desktop
and the fake for tests do alike: map a coordinate, reveal ``<secret>`` placeholders only at type time, stop
long typing and waits at the run's deadline, settle, and turn any failure into an error ``Outcome``. A
subclass supplies the device: how to look, how to press, how to tell that the screen has settled.

Abilities only a web page has (open a URL, find an element by name, read the page) are a separate protocol,
``PageAbilities``: ``page_of(executor)`` gives them, or None for a desktop, instead of a desktop pretending
to have a page.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

from tools import actions as A
from tools.actions import ActionError
from tools.coords import CoordinateAudit, CoordinateMode, to_css
from tools.views import ElementInfo, Located, Observation, Outcome, PageEvents, ScriptValue, Target

ExecutorKind = Literal["browser", "desktop", "fake"]
SECRET_PATTERN = re.compile(r"<secret>([A-Za-z_][A-Za-z0-9_]*)</secret>")


class BudgetSpent(ActionError):
    """The run's wall-clock budget ran out in the middle of an action; the action was cut off."""


def budget_cut_off(done: int, total: int) -> BudgetSpent:
    return BudgetSpent(f"cut off: the run's time budget ran out while typing ({done:,} of {total:,} characters typed)")


@runtime_checkable
class Executor(Protocol):
    """Something the agent perceives and acts in. Used as a context manager: entering starts it."""

    @property
    def kind(self) -> ExecutorKind: ...

    def perceive(self) -> Observation: ...

    def act(self, action: A.Action, *, deadline: float | None = None) -> Outcome:
        """Perform ``action``; never raises for a failed action (the outcome says why). ``deadline``
        (``time.monotonic()``) is when the run's budget runs out: long typing and waits stop there."""
        ...

    def element_at(self, css: tuple[int, int]) -> ElementInfo | None:
        """The element under a point of the screen (CSS pixels), where the executor can tell; else None."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None: ...


@runtime_checkable
class PageAbilities(Protocol):
    """What only a web page offers: open a URL, find an element by name, read the page (for checks)."""

    def goto(self, url: str) -> None: ...

    def locate(self, target: Target) -> Located | None: ...

    def page_url(self) -> str: ...

    def page_text(self) -> str: ...

    def run_script(self, script: str, *, timeout_ms: int) -> ScriptValue:
        """Run JavaScript statements in the page; their completion value (awaited), stopped after ``timeout_ms``."""
        ...


def page_of(executor: object) -> PageAbilities | None:
    """The executor's web-page abilities, or None when it has no page (a desktop)."""
    return executor if isinstance(executor, PageAbilities) else None


class BaseExecutor(ABC):
    """The shared half of every executor: act -> outcome, coordinate mapping, secrets, deadline, settle.

    Subclasses implement the device primitives (``_screen``, ``_perform_input``, ``_type_chunk``, ``_sleep``,
    ``_mark`` / ``_settle``) and perceive; everything an action goes through on its way is here, once.
    """

    kind: ClassVar[ExecutorKind]
    type_chunk: ClassVar[int] = 32  # characters typed between two looks at the run's deadline

    def __init__(
        self,
        *,
        files: dict[str, Any] | None = None,
        secrets: dict[str, str] | None = None,
        coordinate_mode: CoordinateMode = CoordinateMode.relative_1000,
        coordinate_divisor: float = 1000.0,
    ) -> None:
        self.files = dict(files or {})
        self._secrets = dict(secrets or {})
        self.coordinate_mode = coordinate_mode
        self.coordinate_divisor = coordinate_divisor
        self._deadline: float | None = None  # time.monotonic() at which the run's budget runs out

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Self:
        return self

    def close(self) -> None:
        return None  # nothing held unless the device holds something

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- perceive ------------------------------------------------------------------------------
    @abstractmethod
    def perceive(self) -> Observation: ...

    def element_at(self, css: tuple[int, int]) -> ElementInfo | None:
        return None  # no element tree unless the device has one

    # -- act -----------------------------------------------------------------------------------
    def act(self, action: A.Action, *, deadline: float | None = None) -> Outcome:
        """Perform ``action`` and wait for the screen to settle. Never raises for a failed action.

        ``deadline`` (a ``time.monotonic()`` value) is when the run's time budget runs out: long typing and
        waits stop there, and the outcome is an error that says the action was cut off.
        """
        audit: CoordinateAudit | None = None
        element: ElementInfo | None = None
        self._deadline = deadline
        mark: Any = None
        error: str | None = None
        settle_ms: float | None = None
        try:
            coordinate = getattr(action, "coordinate", None)
            if coordinate is not None:
                audit = self._map(coordinate)
                element = self.element_at(audit.css)
            mark = self._mark()
            self._perform(action, audit)
            settle_started = time.perf_counter()
            self._settle(mark)
            settle_ms = round((time.perf_counter() - settle_started) * 1000, 2)
        except ActionError as exc:
            error = str(exc)
        except Exception as exc:  # device errors: Playwright timeouts, closed pages, X errors
            error = self._describe_error(exc)
        events = self._take_page_events()  # also after an error: a dialog may be why it failed
        return Outcome(
            status="error" if error is not None else "ok",
            error=error,
            coordinate=audit,
            element=element,
            navigated=error is None and self._navigated(mark),
            settle_ms=settle_ms,
            dialogs=events.dialogs,
            dialogs_more=events.dialogs_more,
            tab_change=events.tab_change,
            downloads=events.downloads,
            blocked_tabs=events.blocked_tabs,
            blocked_tabs_more=events.blocked_tabs_more,
        )

    def _map(self, coordinate: list[float]) -> CoordinateAudit:
        size, scale = self._screen()
        return to_css(
            coordinate,
            css_size=size,
            device_scale_factor=scale,
            mode=self.coordinate_mode,
            divisor=self.coordinate_divisor,
            resized_size=size if self.coordinate_mode is CoordinateMode.absolute else None,
        )

    def _perform(self, action: A.Action, audit: CoordinateAudit | None) -> None:
        match action:
            case A.Type():
                text = self._reveal(action.text)  # an unknown secret is refused first
                names = SECRET_PATTERN.findall(action.text)
                if not names:
                    self._type(text)
                    return
                # Where the keys would go is checked before any key is sent, and again before each secret.
                self._check_secret_destination(sorted(set(names)))
                self._hide_secret_field()
                typed = 0
                for match in SECRET_PATTERN.finditer(action.text):
                    if match.start() > typed:
                        self._type(action.text[typed : match.start()])
                    self._type_secret(match.group(1), self._secrets[match.group(1)])
                    typed = match.end()
                if typed < len(action.text):
                    self._type(action.text[typed:])
            case A.Wait():
                self._wait(action.time)
            case A.Terminate() | A.Answer():
                pass  # nothing to do on the screen; the loop reads these
            case _:
                self._perform_input(action, audit)

    def _type(self, text: str) -> None:
        """Type ``text`` in chunks, stopping when the run's deadline passes (1 MB of typing takes minutes)."""
        self._before_typing(text)
        for start in range(0, len(text), self.type_chunk):
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise budget_cut_off(start, len(text))
            self._type_chunk(text[start : start + self.type_chunk])

    def _wait(self, seconds: float) -> None:
        left = self._time_left()
        self._sleep(seconds if left is None else min(seconds, left))
        if left is not None and left < seconds:
            raise BudgetSpent(f"cut off: the run's time budget ran out during the {seconds:g} s wait")

    def _time_left(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def _reveal(self, text: str) -> str:
        """``<secret>name</secret>`` -> the secret's value, here and only here: right before the keys are sent."""

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self._secrets:
                raise ActionError(f"unknown secret {name!r}; known secrets: {', '.join(sorted(self._secrets)) or 'none'}")
            return self._secrets[name]

        return SECRET_PATTERN.sub(value, text)

    def _describe_error(self, exc: Exception) -> str:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{type(exc).__name__}: {message}"

    # -- device primitives ---------------------------------------------------------------------
    def _take_page_events(self) -> PageEvents:
        """What the device saw happen since the last call besides the screen (a browser's dialogs, tabs and
        downloads), once; a desktop has none of these."""
        return PageEvents()

    @abstractmethod
    def _screen(self) -> tuple[tuple[int, int], float]:
        """The screen's size in CSS pixels and its device scale factor (for coordinate mapping)."""

    def _perform_input(self, action: A.Action, audit: CoordinateAudit | None) -> None:
        """Mouse, keys, scrolling and device-only actions (uploads, URLs)."""
        raise ActionError(f"the {self.kind} cannot perform {action.action!r}")

    def _before_typing(self, text: str) -> None:
        """Refuse text the device cannot type, before any of it is typed."""
        return None

    def _check_secret_destination(self, names: list[str]) -> None:
        """Raise :class:`ActionError` when the secrets ``names`` must not be typed where the keys would go now (a
        browser: a page or frame of another origin than the task's). A device that cannot tell allows it."""
        return None

    def _type_secret(self, name: str, value: str) -> None:
        """Type the value of the secret ``name``. A device that can put it where the focus is in one step, with
        where that is checked again first, does so (a browser); the rest types it as any text."""
        self._type(value)

    def _hide_secret_field(self) -> None:
        """Before a secret is typed: make the field it goes into draw its text as a password field does, so that
        no screenshot (a run folder's, a served model's) shows the value. A device that cannot does nothing."""
        return None

    @abstractmethod
    def _type_chunk(self, chunk: str) -> None: ...

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _mark(self) -> Any:
        """What ``_settle`` compares against after the action (a screen digest, a navigation count)."""
        return None

    def _settle(self, mark: Any) -> None:
        """Wait until the action's effects are on screen."""
        return None

    def _navigated(self, mark: Any) -> bool:
        return False
