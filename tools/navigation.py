"""Navigations of a page's main frame from the moment the page asks for them, for the settle after an action.

Playwright reports a navigation with its request, tens of milliseconds after the click that caused it: a form's
submit or a link's navigation is requested while the click is handled, but the request is sent later. A settle
that waited only for requests could look at the screen in between and take the old page for the action's result.
DevTools' ``Page.frameRequestedNavigation`` is sent while the click is handled, and :meth:`NavigationWatch.frames`
waits for animation frames on the same session: its answer comes after that event, so a navigation the action
requested is always known when the frame wait returns.

Glassbox's own scripts in the page (the frame wait, the element under a click, the animation wait) run in an
isolated world of the main frame's document (:meth:`NavigationWatch.evaluate`), as a browser extension's content
script does: they share the page's DOM but not its JavaScript. A page that replaced ``requestAnimationFrame`` (every
action's settle then waited its whole time limit) or ``Document.prototype.elementFromPoint`` (the record named an
element the click did not land on) changes nothing there.

Usage::

    watch = NavigationWatch(context.new_cdp_session(page), timeout_ms=5000)
    ...  # click
    watch.frames(1)
    while watch.pending:  # until the navigation it requested stopped loading (loaded, or was given up)
        page.wait_for_timeout(10)
"""

from __future__ import annotations

from typing import Any

from tools.errors import StepError

__all__ = ["NavigationWatch", "PageScriptError", "PageTimeout"]

MAX_SHADOW_DEPTH = 32  # shadow roots inside shadow roots followed to the focused element
WORLD_NAME = "glassbox"
# DevTools' answer for a context whose document went away (a navigation): the world is made again for the new one.
_CONTEXT_GONE = ("Cannot find context with specified id", "Execution context was destroyed")

_FRAMES = "new Promise(r => { let n = %d; const f = () => (n-- > 0 ? requestAnimationFrame(f) : r(true)); f(); })"


class PageScriptError(StepError, RuntimeError):
    """A script or wait in the page failed (a task's setup script threw, or Glassbox's own script found its
    document gone); ``str()`` says why in one line."""


class PageTimeout(PageScriptError):
    """A script or wait in the page did not finish within its time limit."""


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
        self._world: int | None = None  # the isolated world's context in the main frame's current document

    def frames(self, count: int) -> None:
        """Wait for ``count`` animation frames in the page; returns early when the document goes away (a
        navigation: :attr:`pending` says whether one is under way)."""
        try:
            self.evaluate(_FRAMES % count, await_promise=True)
        except Exception:
            pass  # the context was destroyed by a navigation, or the page is gone: the caller looks further

    def evaluate(self, expression: str, *, await_promise: bool = False, timeout_ms: float | None = None) -> Any:
        """``expression``'s value (JSON-like), evaluated in Glassbox's isolated world of the main frame's current
        document (see the module's notes). Raises :class:`PageScriptError` when it throws or its document goes
        away meanwhile, and what the DevTools call raised otherwise (a closed page, a time limit)."""
        params = {"expression": expression, "awaitPromise": await_promise, "returnByValue": True}
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        for attempt in (1, 2):
            context = self._world_context()
            try:
                reply = self.session.send("Runtime.evaluate", params | {"contextId": context}, timeout=timeout)
            except Exception as exc:
                if any(gone in str(exc) for gone in _CONTEXT_GONE):
                    self._world = None
                    if attempt == 1 and "destroyed" not in str(exc):  # made for a document gone before this call
                        continue
                    raise PageScriptError("the page's document went away while Glassbox's script ran") from None
                raise
            details = reply.get("exceptionDetails")
            if details:
                text = (details.get("exception") or {}).get("description") or details.get("text") or "an exception"
                raise PageScriptError(str(text).splitlines()[0][:300])
            return (reply.get("result") or {}).get("value")
        raise AssertionError("unreachable")  # the loop returns or raises

    def call_on_focused(self, function: str) -> Any:
        """``function`` (``function () {...}``, with ``this`` the element) called on the element that has the focus in
        the main frame's document, found through shadow roots, closed ones too (DevTools sees into them; a page's
        script, and ``document.activeElement``, stop at a closed root's host); its value, or None."""
        context = self._world_context()
        reply = self.session.send("Runtime.evaluate", {"expression": "document.activeElement", "contextId": context})
        element = (reply.get("result") or {}).get("objectId")
        for _ in range(MAX_SHADOW_DEPTH):
            if element is None:
                return None
            node = self.session.send("DOM.describeNode", {"objectId": element, "depth": 1, "pierce": True})["node"]
            roots = [r for r in node.get("shadowRoots") or [] if r.get("shadowRootType") in ("open", "closed")]
            if not roots:
                break
            root = self.session.send(
                "DOM.resolveNode", {"backendNodeId": roots[0]["backendNodeId"], "executionContextId": context}
            )
            inner = self.session.send(
                "Runtime.callFunctionOn",
                {"objectId": root["object"]["objectId"], "functionDeclaration": "function () { return this.activeElement; }"},
            )
            focused = (inner.get("result") or {}).get("objectId")
            if focused is None:  # nothing focused inside: the host itself is where the keys go
                break
            element = focused
        reply = self.session.send(
            "Runtime.callFunctionOn", {"objectId": element, "functionDeclaration": function, "returnByValue": True}
        )
        return (reply.get("result") or {}).get("value")

    def _world_context(self) -> int:
        if self._world is None:
            reply = self.session.send(
                "Page.createIsolatedWorld", {"frameId": self._main, "worldName": WORLD_NAME}, timeout=self.timeout_ms
            )
            self._world = int(reply["executionContextId"])
        return self._world

    def close(self) -> None:
        from tools.capture import detach_within

        detach_within(self.session)

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
            self._world = None  # a new document: the old one's world went with it
