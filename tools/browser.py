"""Playwright executor on the system Chromium: perceive (screenshot), act, and wait for the page to settle.

Usage::

    with BrowserExecutor(BrowserSettings(), files={"main_image": Path("img.png")}) as browser:
        browser.goto("http://127.0.0.1:8000/login")
        observation = browser.perceive()
        outcome = browser.act(LeftClick(action="left_click", coordinate=[500, 400]))
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from tools import actions as A
from tools.actions import ActionError
from tools.capture import PageCapture, png_size
from tools.chromium import LAUNCH_ARGS, find_chromium
from tools.coords import CoordinateAudit, CoordinateMode
from tools.executor import SECRET_PATTERN, BaseExecutor, BudgetSpent, budget_cut_off
from tools.keys import playwright_chord
from tools.views import MAX_DEVICE_PIXELS, Box, BrowserSettings, ElementInfo, Observation, Target

__all__ = ["MAX_DEVICE_PIXELS", "SECRET_PATTERN", "BrowserExecutor", "BrowserSettings", "BudgetSpent", "Target", "budget_cut_off"]

_ELEMENT_AT = """([x, y]) => {
  const el = document.elementFromPoint(x, y);
  if (!el) return null;
  const r = el.getBoundingClientRect();
  const text = (el.innerText || el.value || el.getAttribute('aria-label') || el.getAttribute('alt') || '').trim();
  return {tag: el.tagName.toLowerCase(), text: text.slice(0, 200), box: {x: r.x, y: r.y, width: r.width, height: r.height}};
}"""
_TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"
TYPE_CHUNK = 32  # characters typed between two looks at the run's deadline


class BrowserExecutor(BaseExecutor):
    """Drives one Chromium page. Secrets and files are given here, never to the policy."""

    kind = "browser"
    type_chunk = TYPE_CHUNK

    def __init__(
        self,
        settings: BrowserSettings | None = None,
        *,
        files: dict[str, Path] | None = None,
        secrets: dict[str, str] | None = None,
        allowed_origins: list[str] | None = None,
        coordinate_mode: CoordinateMode = CoordinateMode.relative_1000,
        coordinate_divisor: float = 1000.0,
    ) -> None:
        super().__init__(files=files, secrets=secrets, coordinate_mode=coordinate_mode, coordinate_divisor=coordinate_divisor)
        self.settings = settings or BrowserSettings()
        self.allowed_origins = [_origin(o) for o in (allowed_origins or [])]
        self._pw: Any = None
        self._browser: Any = None
        self._context: Any = None
        self.page: Any = None
        self._navigations = 0
        self._loads = 0
        self._chooser: Any = None
        self._start_url: str | None = None  # the target's URL: relative goto_url URLs resolve against it
        self._capture: PageCapture | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "BrowserExecutor":
        from playwright.sync_api import sync_playwright

        executable = find_chromium()
        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(
                executable_path=str(executable),
                headless=not self.settings.headed,
                args=LAUNCH_ARGS,
            )
            width, height = self.settings.viewport
            self._context = self._browser.new_context(
                viewport={"width": width, "height": height},
                device_scale_factor=self.settings.device_scale_factor,
                locale=self.settings.locale,
                timezone_id=self.settings.timezone,
            )
            self._context.set_default_timeout(self.settings.action_timeout_ms)
            self.page = self._context.new_page()
            self._capture = PageCapture(
                self.page,
                timeout_ms=self.settings.action_timeout_ms,
                device_scale_factor=self.settings.device_scale_factor,
            )
        except Exception:
            self.close()
            raise
        self.page.on("request", self._on_request)
        self.page.on("load", self._on_load)
        # A listener from the start keeps file-chooser interception on; enabling it per upload (as
        # expect_file_chooser does) races with the click, and the chooser is then sometimes missed.
        self.page.on("filechooser", self._on_file_chooser)
        return self

    def close(self) -> None:
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        for closer in (self._context, self._browser):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # closing a crashed browser must not hide the original error
                    pass
        if self._pw is not None:
            self._pw.stop()
        self._pw = self._browser = self._context = self.page = None

    # -- perceive ------------------------------------------------------------------------------
    def perceive(self) -> Observation:
        # One DevTools capture (tools.capture): page.screenshot()'s PNG without its extra round trips.
        png = self._capture.png() if self._capture is not None else self.page.screenshot(type="png")
        width, height = self.settings.viewport
        scale = self.settings.device_scale_factor
        try:
            title = self.page.title()
        except Exception:  # the page may be navigating; the title is informational
            title = None
        return Observation(
            screenshot_png=png,
            screenshot_size=png_size(png),  # the header's, as captured: no decoding
            css_size=(width, height),
            device_scale_factor=scale,
            url=self.page.url,
            title=title,
            taken_at=datetime.now(timezone.utc),
        )

    def element_at(self, css: tuple[int, int]) -> ElementInfo | None:
        """The element under a CSS pixel (tag, text, box), or None."""
        try:
            info = self.page.evaluate(_ELEMENT_AT, list(css))
        except Exception:
            return None
        return ElementInfo(tag=info["tag"], text=info["text"], box=Box(**info["box"])) if info else None

    # -- page abilities (tools.executor.PageAbilities) -----------------------------------------
    def goto(self, url: str) -> None:
        """Open ``url`` (the task's start page) and wait for it to load."""
        if self._start_url is None:
            self._start_url = url
        self.page.goto(url, wait_until="load")

    def locate(self, target: Target) -> Box | None:
        """The bounding box (CSS pixels, relative to the viewport) of the first visible match, or None."""
        page = self.page
        if target.selector:
            locator = page.locator(target.selector)
        elif target.label:
            locator = page.get_by_label(target.label, exact=True)
        elif target.role:
            locator = page.get_by_role(target.role, name=target.name, exact=True)
        elif target.text:
            locator = page.get_by_text(target.text, exact=True)
        else:
            raise ValueError("a target needs one of selector, text, label or role")
        for i in range(min(locator.count(), 20)):
            candidate = locator.nth(i)
            if candidate.is_visible():
                box = candidate.bounding_box()
                if box and box["width"] > 0 and box["height"] > 0:
                    return Box(**box)
        return None

    def page_url(self) -> str:
        return str(self.page.url)

    def page_text(self) -> str:
        return str(self.page.inner_text("body"))

    def evaluate(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def resolve_url(self, url: str) -> str:
        """``url`` made absolute against the target's URL (the start page), as a relative link would be."""
        base = self._start_url or (self.page.url if self.page is not None else "")
        return urljoin(base, url) if base else url

    def check_url_allowed(self, url: str) -> None:
        """Raise :class:`ActionError` unless ``url``'s origin is one of the allowed origins."""
        origin = _origin(url)
        if origin not in self.allowed_origins:
            allowed = ", ".join(self.allowed_origins) or "none"
            raise ActionError(f"{url!r} is outside the allowed origins ({allowed})")

    # -- act (the rest is BaseExecutor's) ------------------------------------------------------
    def _screen(self) -> tuple[tuple[int, int], float]:
        return self.settings.viewport, self.settings.device_scale_factor

    def _perform_input(self, action: A.Action, audit: CoordinateAudit | None) -> None:
        mouse, keyboard = self.page.mouse, self.page.keyboard
        x, y = audit.css if audit else (None, None)
        match action:
            case A.LeftClick():
                mouse.click(x, y)
            case A.DoubleClick():
                mouse.dblclick(x, y)
            case A.TripleClick():
                mouse.click(x, y, click_count=3)
            case A.RightClick():
                mouse.click(x, y, button="right")
            case A.MiddleClick():
                mouse.click(x, y, button="middle")
            case A.MouseMove():
                mouse.move(x, y)
            case A.LeftClickDrag():
                mouse.down()
                mouse.move(x, y, steps=8)
                mouse.up()
            case A.Key():
                keyboard.press(playwright_chord(action.keys))
            case A.Scroll() | A.HScroll():
                if action.coordinate is not None:
                    mouse.move(*self._map(action.coordinate).css)
                if isinstance(action, A.Scroll):
                    mouse.wheel(0, -action.pixels)  # positive pixels scroll up
                else:
                    mouse.wheel(action.pixels, 0)
            case A.UploadFile():
                path = self.files.get(action.file)
                if path is None:
                    names = ", ".join(sorted(self.files)) or "none"
                    raise ActionError(f"no file named {action.file!r} in this task (declared files: {names})")
                self._chooser = None
                mouse.click(x, y)
                deadline = time.monotonic() + self.settings.action_timeout_ms / 1000
                while self._chooser is None and time.monotonic() < deadline:
                    self.page.wait_for_timeout(10)
                if self._chooser is None:
                    raise ActionError(
                        f"no file chooser opened at {audit.css if audit else (x, y)}: "
                        "click the file input (or its 'Choose file' button)"
                    )
                self._chooser.set_files(str(path))
                self._chooser = None
            case A.GotoUrl():
                url = self.resolve_url(action.url)
                self.check_url_allowed(url)
                self.page.goto(url, wait_until="load")
            case _:
                super()._perform_input(action, audit)

    def _type_chunk(self, chunk: str) -> None:
        self.page.keyboard.type(chunk)

    def _sleep(self, seconds: float) -> None:
        self.page.wait_for_timeout(seconds * 1000)

    # -- settle --------------------------------------------------------------------------------
    def _on_request(self, request: Any) -> None:
        if request.is_navigation_request() and request.frame == self.page.main_frame:
            self._navigations += 1

    def _on_file_chooser(self, chooser: Any) -> None:
        self._chooser = chooser

    def _on_load(self, _page: Any) -> None:
        self._loads = self._navigations

    def _mark(self) -> int:
        return self._navigations

    def _navigated(self, mark: Any) -> bool:
        return mark is not None and self._navigations > mark

    def _settle(self, mark: Any) -> None:
        """Wait until the action's effects are on screen: two animation frames, and a started navigation loaded."""
        navigations_before = int(mark)
        try:
            self.page.evaluate(_TWO_FRAMES)
        except Exception:
            pass  # the document went away: a navigation is under way, handled below
        deadline = time.monotonic() + self.settings.settle_timeout_ms / 1000
        while self._navigations > navigations_before and self._loads < self._navigations:
            if time.monotonic() > deadline:
                break  # a slow page is not an error of the action; the next screenshot shows it
            self.page.wait_for_timeout(10)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}".lower()
