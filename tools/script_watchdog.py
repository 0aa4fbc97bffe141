"""Stop a page's script that holds its main thread, so an action cannot wait on the page for ever.

A click's handler that never returns (``for (;;) {}``, or ``alert()`` in a loop, each answered at once) keeps the
page from acknowledging the click, and Playwright's mouse and keyboard wait for that acknowledgement with no time
limit: the run hung past its time budget (tried: killed after 120 s of a 60 s budget). A browser would offer to
stop the page ("Page unresponsive"); the watchdog does so itself.

While an action runs, a task on Playwright's own event loop (which runs during every sync Playwright call)
waits ``limit_s``, then asks the page to evaluate ``1``. A page that does not answer within ``probe_s`` is
running a script: ``Runtime.terminateExecution`` stops it (DevTools handles that command off the page's main
thread), and the waiting call returns. Asked again every ``probe_s`` while the action lasts. A page that answers
is left alone: the action waits on something else (a slow navigation is not a script).

    with ScriptWatchdog(page, session, limit_s=5) as watchdog:
        page.mouse.click(x, y)
    if watchdog.stopped: ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["ScriptWatchdog", "stop_if_busy"]


def stop_if_busy(session: Any, *, probe_s: float = 1.0) -> bool:
    """Stop the page's script now if the page does not answer within ``probe_s`` (before closing it: a busy page
    held Playwright's ``context.close()`` for minutes). Whether it was stopped."""
    try:
        session.send("Runtime.evaluate", {"expression": "1", "returnByValue": True}, timeout=probe_s * 1000)
        return False
    except Exception:  # no answer in time, or the page is gone (then stopping fails too, quietly)
        try:
            session.send("Runtime.terminateExecution", {}, timeout=probe_s * 1000)
        except Exception:
            pass
        return True


class ScriptWatchdog:
    """Runs while its ``with`` block does; ``stopped``: how many times it stopped the page's script."""

    def __init__(
        self, page: Any, session: Any, *, limit_s: float, probe_s: float = 1.0, navigating: Callable[[], bool] | None = None
    ) -> None:
        # Playwright's private async side (as tools.capture uses it): without it, no watchdog, as before.
        self._loop: asyncio.AbstractEventLoop | None = getattr(page, "_loop", None)
        self._session: Any = getattr(session, "_impl_obj", None)
        self.limit_s, self.probe_s = limit_s, probe_s
        # While the main frame waits for a new document (a link to a slow server), Chromium leaves the old one's
        # DevTools calls unanswered: that is a slow server, not a busy script, and the settle has its own limit.
        self._navigating = navigating or (lambda: False)
        self.stopped = 0
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> "ScriptWatchdog":
        if self._loop is not None and self._session is not None and not self._loop.is_closed():
            self._task = self._loop.create_task(self._watch())
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()  # takes effect the next time Playwright's loop runs
            self._task = None

    async def _watch(self) -> None:
        await asyncio.sleep(self.limit_s)
        while True:
            if not await self._answers() and not self._navigating():
                self.stopped += 1
                try:
                    await self._session.send("Runtime.terminateExecution", {}, self.probe_s * 1000)
                except asyncio.CancelledError:
                    raise
                except Exception:  # its answer can come late (a page answering dialogs by the thousand) and yet
                    pass  # stop the script; a page that went away fails the action itself
            await asyncio.sleep(self.probe_s)

    async def _answers(self) -> bool:
        try:
            await self._session.send("Runtime.evaluate", {"expression": "1", "returnByValue": True}, self.probe_s * 1000)
            return True
        except asyncio.CancelledError:
            raise
        except Exception:  # no answer in time (or the page is gone, which the action will say)
            return False
