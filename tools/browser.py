"""Playwright executor on the system Chromium: perceive (screenshot), act, and wait for the page to settle.

Usage::

    with BrowserExecutor(BrowserSettings(), files={"main_image": Path("img.png")}) as browser:
        browser.goto("http://127.0.0.1:8000/login")
        observation = browser.perceive()
        outcome = browser.act(LeftClick(action="left_click", coordinate=[500, 400]))
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools import actions as A
from tools.actions import ActionError
from tools.chromium import LAUNCH_ARGS, find_chromium
from tools.coords import CoordinateAudit, CoordinateMode, to_css
from tools.keys import playwright_chord
from tools.views import Box, ElementInfo, Observation, Outcome

SECRET_PATTERN = re.compile(r"<secret>([A-Za-z_][A-Za-z0-9_]*)</secret>")

_ELEMENT_AT = """([x, y]) => {
  const el = document.elementFromPoint(x, y);
  if (!el) return null;
  const r = el.getBoundingClientRect();
  const text = (el.innerText || el.value || el.getAttribute('aria-label') || el.getAttribute('alt') || '').trim();
  return {tag: el.tagName.toLowerCase(), text: text.slice(0, 200), box: {x: r.x, y: r.y, width: r.width, height: r.height}};
}"""
_TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"
TYPE_CHUNK = 32  # characters typed between two looks at the run's deadline


class BudgetSpent(ActionError):
    """The run's wall-clock budget ran out in the middle of an action; the action was cut off."""


def budget_cut_off(done: int, total: int) -> BudgetSpent:
    return BudgetSpent(f"cut off: the run's time budget ran out while typing ({done:,} of {total:,} characters "
                       "typed)")


_Side = Annotated[int, Field(ge=100, le=4096)]
MAX_DEVICE_PIXELS = 8192  # per side of the screenshot: beyond it a PNG is hundreds of MB


class BrowserSettings(BaseModel):
    """How the browser is launched; explicit so that every run sees the same pixels."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    headed: bool = False
    viewport: tuple[_Side, _Side] = (1280, 800)
    device_scale_factor: float = Field(default=1.0, ge=0.5, le=4)
    locale: str = Field(default="en-US", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")
    timezone: str = "UTC"
    settle_timeout_ms: int = Field(default=5000, ge=0, le=60_000)
    action_timeout_ms: int = Field(default=5000, ge=100, le=120_000)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        import zoneinfo

        known = zoneinfo.available_timezones()
        if known and v not in known and v != "UTC":
            raise ValueError(f"unknown time zone {v[:60]!r}; use an IANA name such as UTC, Europe/Berlin or Asia/Shanghai")
        if not known and not re.fullmatch(r"[A-Za-z_]+(/[A-Za-z0-9_+\-]+){0,2}", v):  # no tz database here
            raise ValueError(f"{v[:60]!r} is not an IANA time zone name")
        return v

    @model_validator(mode="after")
    def _screen_size(self) -> "BrowserSettings":
        width, height = self.viewport
        if max(width, height) * self.device_scale_factor > MAX_DEVICE_PIXELS:
            raise ValueError(f"viewport {width}x{height} at device_scale_factor {self.device_scale_factor} makes "
                             f"screenshots wider or taller than {MAX_DEVICE_PIXELS} pixels")
        return self


class Target(BaseModel):
    """An element named by CSS selector, visible text, form label or ARIA role + name."""

    model_config = ConfigDict(extra="forbid")

    selector: str | None = None
    text: str | None = None
    label: str | None = None
    role: str | None = None
    name: str | None = None

    def describe(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.model_dump(exclude_none=True).items())


class BrowserExecutor:
    """Drives one Chromium page. Secrets and files are given here, never to the policy."""

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
        self.settings = settings or BrowserSettings()
        self.files = dict(files or {})
        self._secrets = dict(secrets or {})
        self.allowed_origins = [_origin(o) for o in (allowed_origins or [])]
        self.coordinate_mode = coordinate_mode
        self.coordinate_divisor = coordinate_divisor
        self._pw: Any = None
        self._browser: Any = None
        self._context: Any = None
        self.page: Any = None
        self._navigations = 0
        self._loads = 0
        self._chooser: Any = None
        self._start_url: str | None = None  # the target's URL: relative goto_url URLs resolve against it
        self._deadline: float | None = None  # time.monotonic() at which the run's budget runs out

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "BrowserExecutor":
        from playwright.sync_api import sync_playwright

        executable = find_chromium()
        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(
                executable_path=str(executable), headless=not self.settings.headed, args=LAUNCH_ARGS,
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
        for closer in (self._context, self._browser):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # closing a crashed browser must not hide the original error
                    pass
        if self._pw is not None:
            self._pw.stop()
        self._pw = self._browser = self._context = self.page = None

    def __enter__(self) -> "BrowserExecutor":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- perceive ------------------------------------------------------------------------------
    def goto(self, url: str) -> None:
        """Open ``url`` (the task's start page) and wait for it to load."""
        if self._start_url is None:
            self._start_url = url
        self.page.goto(url, wait_until="load")

    def perceive(self) -> Observation:
        png = self.page.screenshot(type="png")
        width, height = self.settings.viewport
        scale = self.settings.device_scale_factor
        try:
            title = self.page.title()
        except Exception:  # the page may be navigating; the title is informational
            title = None
        return Observation(
            screenshot_png=png, screenshot_size=(round(width * scale), round(height * scale)),
            css_size=(width, height), device_scale_factor=scale, url=self.page.url, title=title,
            taken_at=datetime.now(timezone.utc),
        )

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

    # -- act -----------------------------------------------------------------------------------
    def act(self, action: A.Action, *, deadline: float | None = None) -> Outcome:
        """Perform ``action`` and wait for the page to settle. Never raises for a failed action.

        ``deadline`` (a ``time.monotonic()`` value) is when the run's time budget runs out: long typing and
        waits stop there, and the outcome is an error that says the action was cut off.
        """
        audit: CoordinateAudit | None = None
        element: ElementInfo | None = None
        navigations_before = self._navigations
        self._deadline = deadline
        try:
            coordinate = getattr(action, "coordinate", None)
            if coordinate is not None:
                audit = self._map(coordinate)
                element = self._element_at(audit.css)
            self._perform(action, audit)
            self._settle(navigations_before)
        except ActionError as exc:
            return Outcome(status="error", error=str(exc), coordinate=audit, element=element)
        except Exception as exc:  # Playwright errors: timeouts, detached elements, closed pages
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return Outcome(status="error", error=f"{type(exc).__name__}: {message}", coordinate=audit, element=element)
        return Outcome(status="ok", coordinate=audit, element=element, navigated=self._navigations > navigations_before)

    def _map(self, coordinate: list[float]) -> CoordinateAudit:
        return to_css(
            coordinate, css_size=self.settings.viewport, device_scale_factor=self.settings.device_scale_factor,
            mode=self.coordinate_mode, divisor=self.coordinate_divisor,
            resized_size=self.settings.viewport if self.coordinate_mode is CoordinateMode.absolute else None,
        )

    def element_at(self, css: tuple[int, int]) -> ElementInfo | None:
        """The element under a CSS pixel (tag, text, box), or None."""
        return self._element_at(css)

    def _element_at(self, css: tuple[int, int]) -> ElementInfo | None:
        try:
            info = self.page.evaluate(_ELEMENT_AT, list(css))
        except Exception:
            return None
        return ElementInfo(tag=info["tag"], text=info["text"], box=Box(**info["box"])) if info else None

    def _perform(self, action: A.Action, audit: CoordinateAudit | None) -> None:
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
            case A.Type():
                self._type(self._reveal(action.text))
            case A.Key():
                keyboard.press(playwright_chord(action.keys))
            case A.Scroll() | A.HScroll():
                if action.coordinate is not None:
                    mouse.move(*self._map(action.coordinate).css)
                if isinstance(action, A.Scroll):
                    mouse.wheel(0, -action.pixels)  # positive pixels scroll up
                else:
                    mouse.wheel(action.pixels, 0)
            case A.Wait():
                left = self._time_left()
                self.page.wait_for_timeout(min(action.time, left) * 1000 if left is not None else action.time * 1000)
                if left is not None and left < action.time:
                    raise BudgetSpent(f"cut off: the run's time budget ran out during the {action.time:g} s wait")
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
                    raise ActionError(f"no file chooser opened at {audit.css if audit else (x, y)}: "
                                      "click the file input (or its 'Choose file' button)")
                self._chooser.set_files(str(path))
                self._chooser = None
            case A.GotoUrl():
                url = self.resolve_url(action.url)
                self.check_url_allowed(url)
                self.page.goto(url, wait_until="load")
            case A.Terminate() | A.Answer():
                pass  # nothing to do on the page; the loop reads these
            case _:
                raise ActionError(f"the browser cannot perform {action.action!r}")

    def _time_left(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def _type(self, text: str) -> None:
        """Type ``text`` in chunks, stopping when the run's deadline passes (1 MB of typing takes minutes)."""
        keyboard = self.page.keyboard
        for start in range(0, len(text), TYPE_CHUNK):
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise budget_cut_off(start, len(text))
            keyboard.type(text[start:start + TYPE_CHUNK])

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

    def _reveal(self, text: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self._secrets:
                raise ActionError(f"unknown secret {name!r}; known secrets: {', '.join(sorted(self._secrets)) or 'none'}")
            return self._secrets[name]

        return SECRET_PATTERN.sub(value, text)

    # -- settle --------------------------------------------------------------------------------
    def _on_request(self, request: Any) -> None:
        if request.is_navigation_request() and request.frame == self.page.main_frame:
            self._navigations += 1

    def _on_file_chooser(self, chooser: Any) -> None:
        self._chooser = chooser

    def _on_load(self, _page: Any) -> None:
        self._loads = self._navigations

    def _settle(self, navigations_before: int) -> None:
        """Wait until the action's effects are on screen: two animation frames, and a started navigation loaded."""
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
