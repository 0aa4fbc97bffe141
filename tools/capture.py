"""Viewport screenshots through the DevTools protocol: the lossless PNG ``page.screenshot()`` takes, for less.

``page.screenshot()`` evaluates a script in every frame to hide the text caret, reads the layout metrics,
captures with a clip at the default zlib level, then evaluates again to put the caret back: several round
trips around the capture itself.
:class:`PageCapture` hides the caret once for every document (an init script) and sends one
``Page.captureScreenshot`` with speed-oriented settings: the PNG is still lossless, only less compressed.

Usage::

    capture = PageCapture(page, timeout_ms=30_000)
    png = capture.png()
    width, height = png_size(png)
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from typing import Any

from tools.errors import HarnessError

__all__ = ["CAPTURE_PARAMS", "HIDE_CARET", "PageCapture", "png_size"]

# optimizeForSpeed: a fast zlib level (lossless, larger file); fromSurface: the composited frame, as shown;
# captureBeyondViewport false: the viewport only, without resizing the page for the capture.
CAPTURE_PARAMS: dict[str, Any] = {
    "format": "png",
    "optimizeForSpeed": True,
    "captureBeyondViewport": False,
    "fromSurface": True,
}

# A blinking caret would make two screenshots of the same screen differ (replay comparisons, the model's
# prefix cache); page.screenshot() hides it as well. A constructed stylesheet adds no element to the page.
# The :not() of ids lifts the rule above the page's own (as Playwright's screenshot style does).
HIDE_CARET = """(() => {
  try {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(':is(input, textarea, [contenteditable]):not(#gb-a#gb-b#gb-c#gb-d) '
      + '{ caret-color: transparent !important; }');
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  } catch (e) {}
})()"""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Chromium's answer while a new document replaces the old one and no frame of it is ready yet (seen under load,
# as a perceive right after a navigation): a moment later the capture works. Tried again for at most this long.
NO_FRAME_YET = "Unable to capture screenshot"
NO_FRAME_RETRY_S = 2.0
NO_FRAME_PAUSE_MS = 25
NAVIGATED_AWAY = "Not attached to an active page"  # a screenshot of a document that went away meanwhile


class CaptureTimeout(HarnessError, TimeoutError):
    """The page drew no frame to capture within the time limit (a script holding it is stopped before that:
    tools.script_watchdog); e.g. a page that reloads itself without end."""


def _timed_out(timeout_ms: float) -> CaptureTimeout:
    return CaptureTimeout(
        f"the page could not be captured: it drew no frame within {timeout_ms / 1000:g} s "
        "(a page that keeps navigating, or never finishes drawing)"
    )


DETACH_WAIT_S = 2.0


def detach_within(session: Any, wait_s: float = DETACH_WAIT_S) -> None:
    """Detach a DevTools session, waiting at most ``wait_s``: Chromium does not answer a detach while the page is
    still loading (a server that never answers held `glassbox run` for good). Never raises (the page may be gone)."""
    impl = getattr(session, "_impl_obj", None)
    sync = getattr(session, "_sync", None)
    try:
        if impl is not None and sync is not None:  # Playwright's private async side, as send_all uses it
            sync(asyncio.wait_for(impl.detach(), wait_s))
        else:
            session.detach()
    except Exception:  # gone already, or no answer in time: closing its context ends it anyway
        pass


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) read from a PNG's header, without decoding the image."""
    if len(png) < 24 or not png.startswith(_PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError(f"not a PNG image ({len(png)} bytes, starting {png[:8]!r})")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


class PageCapture:
    """Captures one Playwright page's viewport as PNG bytes over a DevTools session of its own."""

    def __init__(
        self,
        page: Any,
        *,
        timeout_ms: float,
        device_scale_factor: float = 1.0,
        viewport: tuple[int, int] | None = None,
    ) -> None:
        self.page = page
        self.timeout_ms = timeout_ms
        # The size every capture must have (None: any). A page can resize the surface under the emulated viewport
        # (requestFullscreen() in headless Chromium: an 800x600 crop of the 1280x800 page, tried), and then the
        # model would see a screen that is not the one its coordinates are mapped onto: page.screenshot() instead.
        self.viewport = viewport
        # A session of our own does not see Playwright's device-scale emulation: it captures one pixel per CSS
        # pixel (upscaled when clipped at scale 2, not the page drawn at 2x). Scaled pages keep page.screenshot().
        self.device_scale_factor = device_scale_factor
        self._session: Any = None
        page.add_init_script(HIDE_CARET)  # every document from now on, in every frame
        for frame in page.frames:  # and the ones already open
            try:
                frame.evaluate(HIDE_CARET)
            except Exception:  # a frame going away has no caret to hide
                pass

    def png(self) -> bytes:
        """The viewport as a lossless PNG. Falls back to ``page.screenshot()`` when the DevTools session
        fails (e.g. detached): that either works or raises the page's real error."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        if self.device_scale_factor != 1:
            return self._screenshot()
        started = time.monotonic()
        until = started + NO_FRAME_RETRY_S
        while True:
            try:
                reply = self._open().send("Page.captureScreenshot", CAPTURE_PARAMS, timeout=self.timeout_ms)
                png = base64.b64decode(reply["data"], validate=True)
                return png if self._whole(png) else self._screenshot()
            except PlaywrightTimeout:
                raise _timed_out(self.timeout_ms) from None  # trying again would only wait as long once more
            except Exception as exc:
                if NO_FRAME_YET in str(exc) and time.monotonic() < until:
                    self.page.wait_for_timeout(NO_FRAME_PAUSE_MS)  # the new document's first frame
                    continue
                self._session = None  # opened afresh next time
                try:
                    return self._screenshot()
                except PlaywrightTimeout:
                    raise _timed_out(self.timeout_ms) from None
                except Exception as again:
                    if NAVIGATED_AWAY not in str(again) and NO_FRAME_YET not in str(again):
                        raise
                    if time.monotonic() > started + self.timeout_ms / 1000:  # it keeps navigating
                        raise _timed_out(self.timeout_ms) from None
                    # the page navigated under it, or has not drawn yet: again, within the limit

    def png_and_title(self) -> tuple[bytes, str | None]:
        """:meth:`png` and the page's title, asked for together (one round trip); the title is None where
        it could not be read that way (the caller reads it as usual)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        if self.device_scale_factor != 1:
            return self.png(), None
        title = ("Runtime.evaluate", {"expression": "document.title", "returnByValue": True})
        try:
            shot, answer = self.send_all([("Page.captureScreenshot", CAPTURE_PARAMS), title])
            png = base64.b64decode(shot["data"], validate=True)
        except PlaywrightTimeout:
            raise _timed_out(self.timeout_ms) from None
        except Exception:
            self._session = None
            return self.png(), None
        if not self._whole(png):
            return self._screenshot(), None
        value = (answer or {}).get("result", {}).get("value")
        return png, value if isinstance(value, str) else None

    def _whole(self, png: bytes) -> bool:
        """Whether ``png`` is the whole viewport (see ``viewport``)."""
        return self.viewport is None or png_size(png) == self.viewport

    def _screenshot(self) -> bytes:
        return bytes(self.page.screenshot(type="png", timeout=self.timeout_ms))

    def send_all(self, commands: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Send DevTools ``commands`` back to back on this session, without waiting for each answer; their
        answers, in order. DevTools runs one session's commands in the order sent, so input events keep their
        order; what is saved is a round trip per command. Raises what the first failing command raised."""
        session = self._open()
        impl = getattr(session, "_impl_obj", None)
        sync = getattr(session, "_sync", None)
        if impl is not None and sync is not None:
            try:  # Playwright's private async side; building the calls sends nothing yet
                sends = [impl.send(method, params, self.timeout_ms) for method, params in commands]
            except TypeError:  # another Playwright's signature
                sends = []
            if len(sends) == len(commands):
                return list(sync(asyncio.gather(*sends)))
        # not the Playwright this was written for: one at a time, as correct and slower
        return [session.send(method, params, timeout=self.timeout_ms) for method, params in commands]

    def _open(self) -> Any:
        if self._session is None:
            self._session = self.page.context.new_cdp_session(self.page)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            detach_within(self._session)
            self._session = None
