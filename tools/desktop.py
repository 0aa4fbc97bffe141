"""Desktop executor on X11: mss screenshots of one monitor, pyautogui for mouse and keys, xdotool for typing
(pyautogui cannot type non-ASCII text such as Chinese; ``xdotool type`` can).

    with DesktopExecutor(DesktopSettings(display=":7")) as desktop:
        observation = desktop.perceive()
        desktop.act(LeftClick(action="left_click", coordinate=[500, 300]))

Coordinates are on the chosen monitor (0..1000 of its width and height); the monitor's offset inside the
whole X screen is added before the mouse moves, so multi-monitor set-ups work.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools import actions as A
from tools.actions import ActionError
from tools.coords import CoordinateAudit, CoordinateMode
from tools.executor import BaseExecutor
from tools.keys import pyautogui_keys
from tools.views import Observation
from tools.xvfb import DisplayError, check_display, display_gone

SCROLL_PIXELS_PER_CLICK = 100  # one wheel click; Qwen's `pixels` are converted to clicks
TYPE_CHUNK = 64  # characters per xdotool call: the run's deadline is looked at between calls
NON_ASCII_DELAY_MS = 50  # between keys when a chunk needs keymap remapping (see _type_chunk)


class DesktopSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display: str | None = None  # e.g. ":0"; None: $DISPLAY
    monitor: int = Field(default=1, ge=1)  # mss numbering: 1 = the first monitor
    settle_timeout_ms: int = Field(default=1500, ge=0)
    type_delay_ms: int = Field(default=8, ge=0)


class Monitor(BaseModel):
    left: int
    top: int
    width: int
    height: int


def pick_monitor(monitors: list[dict[str, int]], index: int) -> Monitor:
    """mss's monitor list: [0] is the whole virtual screen, [1..] the monitors."""
    if index >= len(monitors) or index < 1:
        raise DisplayError(f"monitor {index} does not exist; this display has {len(monitors) - 1} monitor(s)")
    m = monitors[index]
    return Monitor(left=m["left"], top=m["top"], width=m["width"], height=m["height"])


def to_screen(point: tuple[int, int], monitor: Monitor) -> tuple[int, int]:
    """A point on the monitor -> absolute X screen coordinates."""
    return monitor.left + point[0], monitor.top + point[1]


class DesktopExecutor(BaseExecutor):
    """Drives one X11 monitor. It has no page: ``tools.executor.page_of`` gives None for it."""

    kind = "desktop"
    type_chunk = TYPE_CHUNK

    def __init__(
        self,
        settings: DesktopSettings | None = None,
        *,
        files: dict[str, Any] | None = None,
        secrets: dict[str, str] | None = None,
        coordinate_mode: CoordinateMode = CoordinateMode.relative_1000,
        coordinate_divisor: float = 1000.0,
    ) -> None:
        super().__init__(files=files, secrets=secrets, coordinate_mode=coordinate_mode, coordinate_divisor=coordinate_divisor)
        self.settings = settings or DesktopSettings()
        self.display: str | None = None
        self.monitor: Monitor | None = None
        self._mss: Any = None
        self._gui: Any = None
        self._outer_display: str | None = None  # $DISPLAY before this run set it, put back at close

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "DesktopExecutor":
        self.display = check_display(self.settings.display)
        self._outer_display = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = self.display  # pyautogui and mss read it when they connect
        import mss

        self._mss = mss.MSS() if hasattr(mss, "MSS") else mss.mss()
        self.monitor = pick_monitor(self._mss.monitors, self.settings.monitor)
        self._gui = _pyautogui(self.display)
        return self

    def close(self) -> None:
        if self._mss is not None:
            _close_quietly(self._mss)  # raises when the X server has gone already
            self._mss = None
        if self._gui is not None:  # before the run's Xvfb goes; the next run connects afresh (_pyautogui)
            _close_quietly(getattr(getattr(self._gui, "_pyautogui_x11", None), "_display", None))
            self._gui = None
        if self.display is not None and os.environ.get("DISPLAY") == self.display:
            # A process that runs more (an eval worker) must not go on pointing at this run's Xvfb once it stops.
            if self._outer_display is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = self._outer_display

    # -- perceive ------------------------------------------------------------------------------
    def grab(self) -> Any:
        assert self.monitor is not None
        try:
            return self._mss.grab(self.monitor.model_dump())
        except Exception as exc:  # mss says only "AssertionError" when the X server has gone
            if self.display is not None and display_gone(self.display):
                raise DisplayError(self._gone()) from exc
            raise

    def perceive(self) -> Observation:
        from PIL import Image

        shot = self.grab()
        image = Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=1)  # speed over size: the recorder keeps it as is
        size = (shot.size[0], shot.size[1])
        return Observation(
            screenshot_png=buffer.getvalue(),
            screenshot_size=size,
            css_size=size,
            device_scale_factor=1.0,
            url=None,
            title=self._active_title(),
            taken_at=datetime.now(timezone.utc),
        )

    # element_at: BaseExecutor's None, as a plain X desktop has no element tree

    # -- act (the rest is BaseExecutor's) ------------------------------------------------------
    def _screen(self) -> tuple[tuple[int, int], float]:
        assert self.monitor is not None
        return (self.monitor.width, self.monitor.height), 1.0

    def _describe_error(self, exc: Exception) -> str:
        if self.display is not None and display_gone(self.display):
            return self._gone()
        return f"{type(exc).__name__}: {exc}"  # pyautogui / X errors

    def _gone(self) -> str:
        return f"the X display {self.display} went away during the run (its X server stopped)"

    def _perform_input(self, action: A.Action, audit: CoordinateAudit | None) -> None:
        gui, monitor = self._gui, self.monitor
        assert monitor is not None
        x, y = to_screen(audit.css, monitor) if audit else (None, None)
        match action:
            case A.LeftClick():
                gui.click(x, y)
            case A.DoubleClick():
                gui.doubleClick(x, y)
            case A.TripleClick():
                gui.tripleClick(x, y)
            case A.RightClick():
                gui.rightClick(x, y)
            case A.MiddleClick():
                gui.middleClick(x, y)
            case A.MouseMove():
                gui.moveTo(x, y)
            case A.LeftClickDrag():
                gui.dragTo(x, y, duration=0.2, button="left")
            case A.Key():
                gui.hotkey(*pyautogui_keys(action.keys))
            case A.Scroll() | A.HScroll():
                if action.coordinate is not None:
                    gui.moveTo(*to_screen(self._map(action.coordinate).css, monitor))
                clicks = max(1, round(abs(action.pixels) / SCROLL_PIXELS_PER_CLICK)) * (1 if action.pixels > 0 else -1)
                (gui.scroll if isinstance(action, A.Scroll) else gui.hscroll)(clicks)
            case _:
                super()._perform_input(action, audit)

    def _before_typing(self, text: str) -> None:
        if shutil.which("xdotool") is None and not text.isascii():
            raise ActionError("typing non-ASCII text needs xdotool (`sudo apt-get install xdotool`)")

    def _type_chunk(self, chunk: str) -> None:
        xdotool = shutil.which("xdotool")
        if xdotool is None:
            self._gui.write(chunk, interval=self.settings.type_delay_ms / 1000)
            return
        # Characters outside the keymap are typed by remapping a spare keycode for each one; an app that reads a
        # key event after the next remap sees the wrong character (seen on a loaded machine), so give it time.
        delay = self.settings.type_delay_ms if chunk.isascii() else max(self.settings.type_delay_ms, NON_ASCII_DELAY_MS)
        result = subprocess.run(
            [xdotool, "type", "--delay", str(delay), "--", chunk],
            env={**os.environ, "DISPLAY": self.display or ""},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise ActionError(f"xdotool type failed: {result.stderr.strip()[:200]}")

    # -- settle --------------------------------------------------------------------------------
    def _digest(self) -> bytes:
        return hashlib.blake2b(self.grab().bgra, digest_size=16).digest()

    def _mark(self) -> bytes:
        return self._digest()

    def _settle(self, mark: Any) -> None:
        """Wait until the screen stops changing (two equal grabs 30 ms apart), at most settle_timeout_ms."""
        deadline = time.monotonic() + self.settings.settle_timeout_ms / 1000
        previous = mark
        changed = False
        while time.monotonic() < deadline:
            time.sleep(0.03)
            now = self._digest()
            if now != previous:
                changed, previous = True, now
            elif changed or time.monotonic() > deadline - self.settings.settle_timeout_ms / 1000 + 0.09:
                return

    def _active_title(self) -> str | None:
        xdotool = shutil.which("xdotool")
        if xdotool is None:
            return None
        result = subprocess.run(
            [xdotool, "getwindowfocus", "getwindowname"],
            capture_output=True,
            text=True,
            env={**os.environ, "DISPLAY": self.display or ""},
            timeout=5,
        )
        return result.stdout.strip() or None if result.returncode == 0 else None


def _pyautogui(display: str) -> Any:
    """pyautogui bound to ``display`` (it connects to $DISPLAY when first imported)."""
    os.environ["DISPLAY"] = display
    if not os.environ.get("XAUTHORITY") and not os.path.exists(os.path.expanduser("~/.Xauthority")):
        # python-xlib insists on an authority file; a display without access control needs an empty one.
        import tempfile

        fd, path = tempfile.mkstemp(prefix="glassbox-xauth-")
        os.close(fd)
        os.environ["XAUTHORITY"] = path
    imported_now = "pyautogui" not in sys.modules
    # python-xlib warns about the empty authority file on every connection; it is expected here.
    with _quiet_xlib():
        try:
            import pyautogui
        except Exception as exc:  # Xlib raises its own errors when the display is unreachable
            raise DisplayError(f"cannot connect pyautogui to display {display}: {exc}") from None
    x11 = getattr(pyautogui, "_pyautogui_x11", None)
    if x11 is not None and not imported_now:
        # A new connection for every run, even to a display of the same name: an earlier run's Xvfb has gone and a
        # new one takes the free number again, and python-xlib, writing to the old socket, failed the first click
        # ("'BrokenPipeError' object is not subscriptable") and then waited for its reply for ever (an eval's
        # second desktop episode in one worker hung until its timeout).
        from Xlib.display import Display

        with _quiet_xlib():
            try:
                fresh = Display(display)
            except Exception as exc:
                raise DisplayError(f"cannot connect pyautogui to display {display}: {exc}") from None
        old, x11._display = getattr(x11, "_display", None), fresh
        _close_quietly(old)
    pyautogui.FAILSAFE = False  # corners are legitimate targets for an agent
    pyautogui.PAUSE = 0
    return pyautogui


def _close_quietly(connection: Any) -> None:
    """Close an X connection whose server may be gone (python-xlib raises writing to a closed socket)."""
    if connection is None:
        return
    try:
        connection.close()
    except Exception:  # noqa: BLE001  (a dead server's socket: nothing left to close)
        pass


class _quiet_xlib:
    """Swallow what python-xlib prints (to standard output) while it connects."""

    def __enter__(self) -> None:
        import contextlib

        self._redirect = contextlib.redirect_stdout(io.StringIO())
        self._redirect.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._redirect.__exit__(None, None, None)
