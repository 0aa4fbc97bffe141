"""Data shapes shared by executors: what was seen, where things are, what an action did."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.coords import CoordinateAudit


class Box(BaseModel):
    """A rectangle in CSS pixels."""

    x: float
    y: float
    width: float
    height: float

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2


class ScrollHint(BaseModel):
    """Where to scroll so that a located element comes into view: the visible middle of the element that clips it
    (a list box, a panel), and by how much its content must move (CSS pixels; positive: down / right)."""

    at: tuple[float, float]
    dx: int
    dy: int


class Located(Box):
    """An element found on the page: its box, and where a click would land on it.

    ``point``: a point of the element that is on screen, inside everything that clips it, and not covered by
    another element (the middle when it can be), or None. Then ``scroll`` says how to bring it into view when an
    element that can scroll clips it, and ``covered_by`` what lies over it where it is in view."""

    point: tuple[float, float] | None = None
    scroll: ScrollHint | None = None
    covered_by: str | None = None


MAX_PAGE_TITLE = 1000  # characters of a page's title kept: a page chooses it, and every step records it


class Observation(BaseModel):
    """One screenshot of the environment and what is known about it."""

    screenshot_png: bytes = Field(repr=False, exclude=True)
    screenshot_size: tuple[int, int]  # device pixels
    css_size: tuple[int, int]  # viewport in CSS pixels
    device_scale_factor: float
    url: str | None = None  # kept whole: replay and resume go back to it
    title: str | None = None
    taken_at: datetime

    @field_validator("title", mode="before")
    @classmethod
    def _cut_title(cls, value: object) -> object:
        return value[:MAX_PAGE_TITLE] if isinstance(value, str) else value


MAX_ELEMENT_TEXT = 200  # characters of an element's text and label kept (the page chooses them)


class ElementInfo(BaseModel):
    """The element under the acting point, as the browser saw it just before the action: its text (what it shows;
    an input's value), and for a form control its label (its ``<label>``, ``aria-labelledby``, ``aria-label``,
    placeholder or title): an empty input under a click shows no text, but "Stock" names it."""

    tag: str
    text: str
    label: str = ""
    box: Box

    @field_validator("tag", "text", "label", mode="before")
    @classmethod
    def _cut(cls, value: object) -> object:
        # cut here too: the page's own script could make the browser-side cut return more
        return value[:MAX_ELEMENT_TEXT] if isinstance(value, str) else value


TAB_CLOSED = "the tab closed itself"  # how a step's tab_change starts when the action closed its own tab
DialogKind = Literal["alert", "confirm", "prompt", "beforeunload"]
MAX_DIALOG_MESSAGE = 500  # characters of a dialog's message kept (a page chooses it)


class DialogSeen(BaseModel):
    """A JavaScript dialog the page opened (alert, confirm, prompt, leave-page) and how it was answered: a
    screenshot never shows one, so the step records it and the model is told."""

    kind: DialogKind
    message: str = Field(max_length=MAX_DIALOG_MESSAGE)
    answer: Literal["accepted", "dismissed"]


class PageEvents(BaseModel):
    """What the page did besides drawing, since the previous action: no screenshot shows it, so the step says it."""

    dialogs: list[DialogSeen] = Field(default_factory=list)  # answered at once, as browser.dialogs says (first 20)
    dialogs_more: int = 0  # how many more than those were answered
    tab_change: str | None = None  # the action opened a tab (now acted in) or closed this one: what and where
    downloads: list[str] = Field(default_factory=list)  # files the page downloaded: their names (not kept)
    blocked_tabs: list[str] = Field(default_factory=list)  # tabs a page opened by itself, closed unseen: URLs (first 10)
    blocked_tabs_more: int = 0  # how many more than those were closed


class Outcome(BaseModel):
    """What an action did: ok, or an error with the reason."""

    status: Literal["ok", "error"]
    error: str | None = None
    coordinate: CoordinateAudit | None = None
    element: ElementInfo | None = None
    navigated: bool = False
    settle_ms: float | None = None  # how long the executor waited for the screen to settle after the action
    dialogs: list[DialogSeen] = Field(default_factory=list)  # opened since the previous action, answered at once
    dialogs_more: int = 0
    tab_change: str | None = None  # the action opened a tab (now acted in) or closed this one: what and where
    downloads: list[str] = Field(default_factory=list)  # files the page downloaded since the previous action
    blocked_tabs: list[str] = Field(default_factory=list)  # tabs a page opened by itself since then, closed unseen
    blocked_tabs_more: int = 0


class Target(BaseModel):
    """An element named by CSS selector, visible text, form label or ARIA role + name; a selector with a text is
    the element matching the selector whose whole text is that text."""

    model_config = ConfigDict(extra="forbid")

    selector: str | None = None
    text: str | None = None
    label: str | None = None
    role: str | None = None
    name: str | None = None
    # Where on the element to click, as fractions of its width and height (default: its middle): [0.1, 0.5] is
    # the left end, as a person clicks a date field's month or a slider's low end.
    at: tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]] | None = None

    def describe(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.model_dump(exclude_none=True).items())

    def names(self) -> dict[str, str]:
        """The fields that find the element (all but ``at``), as given."""
        return {k: v for k, v in self.model_dump(exclude_none=True).items() if isinstance(v, str)}


MAX_SETTLE_MS = 30_000


class SettlePolicy(BaseModel):
    """What a browser waits for after each action, beyond the default (two frames and a started navigation).

    ``network_idle``: no request in flight (and none for a short quiet spell); ``animations``: every finite CSS
    animation and transition (``document.getAnimations()``) finished. Both stop waiting after ``max_ms``; off by
    default, so an action costs no more than it does today.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    network_idle: bool = False
    animations: bool = False
    max_ms: int = Field(default=1500, ge=0, le=MAX_SETTLE_MS)

    @property
    def enabled(self) -> bool:
        return (self.network_idle or self.animations) and self.max_ms > 0


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
    # How a JavaScript dialog is answered (alert, confirm, prompt, leave-page): dismiss (Cancel; a confirm is
    # false, a leave-page one keeps the page) or accept (OK; a prompt gets its default text).
    dialogs: Literal["dismiss", "accept"] = "dismiss"

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
            raise ValueError(
                f"viewport {width}x{height} at device_scale_factor {self.device_scale_factor} makes "
                f"screenshots wider or taller than {MAX_DEVICE_PIXELS} pixels"
            )
        return self


@dataclass(frozen=True)
class ScriptValue:
    """What a page script returned: its JavaScript type, whether it is truthy, and its JSON text (cut), if any."""

    type: str
    truthy: bool
    text: str | None
