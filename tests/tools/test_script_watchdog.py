"""A page whose script holds its main thread cannot hold the run: its click handler's endless loop (or endless
dialogs) is stopped after the action's time limit, the step says so, and the page goes on answering. Real
Chromium."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import require_chromium
from tests.servers import one_page
from tests.tools.page_events import click
from tools.browser import BrowserExecutor, BrowserSettings

PAGE = b"""<!doctype html><title>stuck</title><body style="margin:0">
<button style="position:absolute;left:0;top:0;width:640px;height:200px" onclick="for (;;) {}">loop</button>
<button style="position:absolute;left:640px;top:0;width:640px;height:200px" onclick="for (;;) alert('again')">alerts</button>
<button id="slow" style="position:absolute;left:0;top:400px;width:1280px;height:200px"
  onclick="const end = Date.now() + 600; while (Date.now() < end) {} this.textContent = 'done'">slow</button>
</body>"""


@pytest.fixture
def browser() -> Iterator[BrowserExecutor]:
    """The page above, with a 1 s limit on actions (the default is 5 s)."""
    require_chromium()
    with one_page(PAGE) as server, BrowserExecutor(BrowserSettings(action_timeout_ms=1000)) as executor:
        executor.goto(server.url + "/")
        yield executor


def test_an_endless_click_handler_is_stopped_and_the_page_answers_again(browser: BrowserExecutor) -> None:
    started = time.monotonic()
    outcome = click(browser, 250, 120)
    took = time.monotonic() - started
    assert outcome.status == "error" and outcome.error is not None
    assert outcome.error.startswith("the page did not respond for 1 s after the left_click")
    assert took < 10, took  # not for ever (Playwright's click has no time limit of its own)
    assert browser.page.evaluate("1 + 1") == 2  # the stop did not carry over to the next script
    assert browser.perceive().title == "stuck"
    assert click(browser, 500, 620).status == "ok"  # 600 ms of work, under the limit: left alone
    assert browser.page.inner_text("#slow") == "done"


def test_dialogs_without_end_are_stopped_and_recorded_in_part(browser: BrowserExecutor) -> None:
    outcome = click(browser, 750, 120)
    assert outcome.status == "error" and "did not respond for 1 s" in (outcome.error or "")
    assert len(outcome.dialogs) == 20 and outcome.dialogs_more > 0  # all answered; the first 20 kept
    assert {(d.kind, d.message, d.answer) for d in outcome.dialogs} == {("alert", "again", "dismissed")}
    assert browser.page.evaluate("1 + 1") == 2
