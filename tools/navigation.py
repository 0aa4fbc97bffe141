"""Navigations of a page's main frame from the moment the page asks for them, for the settle after an action.

Playwright reports a navigation with its request, tens of milliseconds after the click that caused it: a form's
submit or a link's navigation is requested while the click is handled, but the request is sent later. A settle
that waited only for requests could look at the screen in between and take the old page for the action's result.
DevTools' ``Page.frameRequestedNavigation`` is sent while the click is handled, and :meth:`NavigationWatch.frames`
waits for animation frames on the same session: its answer comes after that event, so a navigation the action
requested is always known when the frame wait returns.

Usage::

    watch = NavigationWatch(context.new_cdp_session(page), timeout_ms=5000)
    ...  # click
    watch.frames(1)
    while watch.pending:  # until the navigation it requested stopped loading (loaded, or was given up)
        page.wait_for_timeout(10)
"""

from __future__ import annotations

from typing import Any

__all__ = ["NavigationWatch"]

_FRAMES = "new Promise(r => { let n = %d; const f = () => (n-- > 0 ? requestAnimationFrame(f) : r(true)); f(); })"


class NavigationWatch:
    """Follows one page's main frame over a DevTools session of its own (Page events enabled on it)."""

    def __init__(self, session: Any, *, timeout_ms: float) -> None:
        self.session = session
        self.timeout_ms = timeout_ms
        self.requested = 0  # navigations the main frame asked for, ever
        self.pending = False  # one of them has not stopped loading yet
        self.stops = 0  # times the main frame stopped loading, ever
        # New windows (tabs) the page asked for (target=_blank, window.open) while handling a person's gesture (a
        # click, a key), ever: the ones a browser's popup blocker lets through. Chromium says which (userGesture);
        # the tabs a page opens by itself (a timer, a script) are not counted.
        self.windows = 0
        self.window_url = ""  # the URL the last of them asked for ("" for window.open() without one)
        self.downloads = 0  # downloads the page began, ever (told before Playwright's own download event)
        session.on("Page.frameRequestedNavigation", self._on_requested)
        session.on("Page.frameStoppedLoading", self._on_stopped)
        session.on("Page.frameNavigated", self._on_navigated)
        session.on("Page.windowOpen", self._on_window_open)
        session.on("Page.downloadWillBegin", self._on_download)
        session.send("Page.enable")
        self._main: str | None = session.send("Page.getFrameTree")["frameTree"]["frame"]["id"]

    def frames(self, count: int) -> None:
        """Wait for ``count`` animation frames in the page; returns early when the document goes away (a
        navigation: :attr:`pending` says whether one is under way)."""
        try:
            self.session.send(
                "Runtime.evaluate",
                {"expression": _FRAMES % count, "awaitPromise": True, "returnByValue": True},
                timeout=self.timeout_ms,
            )
        except Exception:
            pass  # the context was destroyed by a navigation, or the page is gone: the caller looks further

    def close(self) -> None:
        try:
            self.session.detach()
        except Exception:  # the page or browser is already gone
            pass

    # Requested, then stopped loading: a document loaded, a 204 answer, a download, a failed or refused load all
    # end with frameStoppedLoading, so pending never waits for a load that is not coming.
    def _on_requested(self, event: dict[str, Any]) -> None:
        if event.get("frameId") == self._main:
            self.requested += 1
            self.pending = True

    def _on_stopped(self, event: dict[str, Any]) -> None:
        if event.get("frameId") == self._main:
            self.stops += 1
            self.pending = False

    def _on_download(self, _event: dict[str, Any]) -> None:
        self.downloads += 1

    def _on_window_open(self, event: dict[str, Any]) -> None:
        if not event.get("userGesture"):
            return
        self.windows += 1
        self.window_url = str(event.get("url") or "")

    def _on_navigated(self, event: dict[str, Any]) -> None:
        frame = event.get("frame") or {}
        if not frame.get("parentId") and frame.get("id"):
            self._main = frame["id"]  # the main frame's id, should a navigation give it a new one
