"""An executor for tests that needs no Chromium and no display, the way httpx ships ``MockTransport``.

It serves scripted screenshots and records what it was asked to do; it goes through the same shared act path
as the real executors (coordinate mapping, secret reveal at type time, deadline cut-off, outcomes)::

    fake = FakeExecutor([screenshot("white"), screenshot("navy")], errors={2: "the button is disabled"})
    with fake:
        result = run_task(task, executor=fake, runs_dir=tmp_path)
    assert [a.action for a in fake.actions] == ["left_click", "type", "left_click"]
    assert fake.typed == ["admin"]

``FakePage`` adds the page abilities (a URL, page text, scripted ``locate`` and ``run_script`` answers), so
browser checks and the script policy's targets work against it too.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from tools import actions as A
from tools.actions import ActionError
from tools.coords import CoordinateAudit, CoordinateMode
from tools.executor import BaseExecutor
from tools.views import Box, ElementInfo, Located, Observation, Outcome, ScriptValue, Target

ErrorScript = Mapping[int, str] | Callable[[int, A.Action], "str | None"]


def screenshot(colour: str | tuple[int, int, int] = "white", size: tuple[int, int] = (1280, 800)) -> bytes:
    """A plain PNG of ``size`` in ``colour`` (a PIL colour name or RGB)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


class FakeExecutor(BaseExecutor):
    """Scripted screens in, recorded actions out.

    ``screens``: the PNG shown before the first action, after the first, ...; the last one stays. ``errors``:
    action number (0-based, counting every ``act`` call) -> the error that action fails with, or a function of
    (number, action) giving an error or None. ``elements``: what ``element_at`` answers for a point.
    """

    kind = "fake"

    def __init__(
        self,
        screens: Sequence[bytes] | None = None,
        *,
        size: tuple[int, int] = (1280, 800),
        errors: ErrorScript | None = None,
        elements: Callable[[tuple[int, int]], ElementInfo | None] | None = None,
        files: dict[str, Any] | None = None,
        secrets: dict[str, str] | None = None,
        coordinate_mode: CoordinateMode = CoordinateMode.relative_1000,
        coordinate_divisor: float = 1000.0,
    ) -> None:
        super().__init__(files=files, secrets=secrets, coordinate_mode=coordinate_mode, coordinate_divisor=coordinate_divisor)
        self.size = size
        self.screens = list(screens) if screens else [screenshot("white", size)]
        self.errors = errors or {}
        self.elements = elements
        self.actions: list[A.Action] = []  # every action asked for, as asked (secrets still placeholders)
        self.performed: list[A.Action] = []  # the ones that reached the "device" without an error
        self.typed: list[str] = []  # text as typed, secrets revealed: what a real keyboard would have sent
        self.points: list[tuple[int, int]] = []  # CSS pixels acted on, after coordinate mapping
        self.observations = 0
        self.started = self.closed = False

    def start(self) -> "FakeExecutor":
        self.started = True
        return self

    def close(self) -> None:
        self.closed = True

    def perceive(self) -> Observation:
        png = self.screens[min(len(self.actions), len(self.screens) - 1)]
        self.observations += 1
        return Observation(
            screenshot_png=png,
            screenshot_size=self.size,
            css_size=self.size,
            device_scale_factor=1.0,
            url=self._url(),
            title=None,
            taken_at=datetime.now(timezone.utc),
        )

    def element_at(self, css: tuple[int, int]) -> ElementInfo | None:
        return self.elements(css) if self.elements else None

    def act(self, action: A.Action, *, deadline: float | None = None) -> Outcome:
        self.actions.append(action)
        return super().act(action, deadline=deadline)

    def _url(self) -> str | None:
        return None

    def _scripted_error(self) -> str | None:
        number, action = len(self.actions) - 1, self.actions[-1]
        return self.errors(number, action) if callable(self.errors) else self.errors.get(number)

    def _screen(self) -> tuple[tuple[int, int], float]:
        return self.size, 1.0

    def _perform(self, action: A.Action, audit: CoordinateAudit | None) -> None:
        error = self._scripted_error()
        if error is not None:
            raise ActionError(error)
        typed_before = len(self.typed)
        super()._perform(action, audit)
        if isinstance(action, A.Type):
            self.typed[typed_before:] = ["".join(self.typed[typed_before:])]  # one entry per type action
        if audit is not None:
            self.points.append(audit.css)
        self.performed.append(action)

    def _perform_input(self, action: A.Action, audit: CoordinateAudit | None) -> None:
        if isinstance(action, A.UploadFile) and action.file not in self.files:
            names = ", ".join(sorted(self.files)) or "none"
            raise ActionError(f"no file named {action.file!r} in this task (declared files: {names})")
        if isinstance(action, A.GotoUrl):
            raise ActionError(f"the {self.kind} executor has no page to open {action.url!r} in")

    def _type_chunk(self, chunk: str) -> None:
        self.typed.append(chunk)

    def _sleep(self, seconds: float) -> None:
        return None  # a fake wait takes no time


class FakePage(FakeExecutor):
    """A fake with a web page's abilities: a URL that ``goto_url`` changes, page text, scripted lookups."""

    def __init__(
        self,
        screens: Sequence[bytes] | None = None,
        *,
        url: str = "http://fake.invalid/",
        text: str = "",
        targets: Mapping[str, Box] | None = None,
        scripts: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(screens, **kwargs)
        self.url = url
        self.text = text
        self.targets = dict(targets or {})  # Target.describe() -> where it is
        self.scripts = dict(scripts or {})  # script -> the value it returns (JSON-able)
        self.visited: list[str] = []

    def goto(self, url: str) -> None:
        self.url = url
        self.visited.append(url)

    def locate(self, target: Target) -> Located | None:
        box = self.targets.get(target.describe())  # where it is; nothing covers it on a fake page
        return None if box is None else Located(**box.model_dump(), point=box.center)

    def page_url(self) -> str:
        return self.url

    def page_text(self) -> str:
        return self.text

    def run_script(self, script: str, *, timeout_ms: int) -> ScriptValue:
        if script not in self.scripts:
            raise ActionError(f"the fake page has no answer for {script!r}")
        value = self.scripts[script]
        kind = (
            "object"
            if value is None or isinstance(value, dict | list)
            else {bool: "boolean", str: "string"}.get(type(value), "number")
        )
        return ScriptValue(kind, bool(value), json.dumps(value))

    def _url(self) -> str | None:
        return self.url

    def _perform_input(self, action: A.Action, audit: CoordinateAudit | None) -> None:
        if isinstance(action, A.GotoUrl):
            self.goto(action.url)
            return
        super()._perform_input(action, audit)
