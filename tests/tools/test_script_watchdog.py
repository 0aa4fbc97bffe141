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
  onclick="const end = Date.now() + 300; while (Date.now() < end) {} this.textContent = 'done'">slow</button>
<button style="position:absolute;left:0;top:700px;width:1280px;height:100px"
  onclick="setTimeout(() => { for (;;) {} }, 50)">later</button>
</body>"""


@pytest.fixture
def browser() -> Iterator[BrowserExecutor]:
    """The page above, with a 1 s limit on actions (the default is 5 s): a script is stopped when the page has not
    answered for half of it and then a 1 s probe."""
    require_chromium()
    with one_page(PAGE) as server, BrowserExecutor(BrowserSettings(action_timeout_ms=1000)) as executor:
        executor.goto(server.url + "/")
        yield executor


def test_an_endless_click_handler_is_stopped_and_the_page_answers_again(browser: BrowserExecutor) -> None:
    started = time.monotonic()
    outcome = click(browser, 250, 120)
    took = time.monotonic() - started
    assert outcome.status == "error" and outcome.error is not None
    assert outcome.error.startswith("the page did not respond for 0.5 s after the left_click")
    assert took < 10, took  # not for ever (Playwright's click has no time limit of its own)
    assert browser.page.evaluate("1 + 1") == 2  # the stop did not carry over to the next script
    assert browser.perceive().title == "stuck"
    assert click(browser, 500, 620).status == "ok"  # 300 ms of work, under the limit: left alone
    assert browser.page.inner_text("#slow") == "done"


def test_dialogs_without_end_are_stopped_and_recorded_in_part(browser: BrowserExecutor) -> None:
    outcome = click(browser, 750, 120)
    assert outcome.status == "error" and "did not respond for 0.5 s" in (outcome.error or "")
    assert len(outcome.dialogs) == 20 and outcome.dialogs_more > 0  # all answered; the first 20 kept
    assert {(d.kind, d.message, d.answer) for d in outcome.dialogs} == {("alert", "again", "dismissed")}
    assert browser.page.evaluate("1 + 1") == 2


def test_a_page_that_went_busy_after_the_action_is_stopped_at_the_next(browser: BrowserExecutor) -> None:
    """The click returns; a timer then loops for ever. The next action's input waits on the page: its script
    is stopped there, and the step says so."""
    assert click(browser, 500, 940).status == "ok"
    browser.page.wait_for_timeout(200)  # a model thinking, the page busy
    assert browser.perceive().title == "stuck"  # the settle's screenshot, or a fresh one
    outcome = click(browser, 500, 620)
    assert outcome.status == "error" and "did not respond for 0.5 s" in (outcome.error or "")
    assert browser.page.evaluate("1 + 1") == 2


def test_a_page_that_never_draws_is_a_clear_error(browser: BrowserExecutor) -> None:
    from tools.capture import CaptureTimeout

    with one_page(b"<!doctype html><title>again</title><script>location.reload()</script>") as server:
        browser.page.goto(server.url + "/", wait_until="commit")
        with pytest.raises(CaptureTimeout, match=r"^the page could not be captured: it drew no frame within 1 s"):
            browser.perceive()


CLOSE_A_BUSY_PAGE = """
import time
from tools.browser import BrowserExecutor, BrowserSettings
from tests.tools.page_events import click
executor = BrowserExecutor(BrowserSettings()).start()
executor.goto({url!r})
click(executor, 500, 940)  # a timer then loops for ever
time.sleep(0.3)
started = time.monotonic()
executor.close()
print(f"closed in {{time.monotonic() - started:.1f}} s")
"""


def test_a_busy_page_does_not_hold_the_close(browser: BrowserExecutor) -> None:
    """Playwright's close waited on a page whose script never returned: a run that had ended hung for minutes.
    In a process of its own, so a regression fails here instead of holding the test run."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    url = browser.page.url
    done = subprocess.run(
        [sys.executable, "-c", CLOSE_A_BUSY_PAGE.format(url=url)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    print(done.stdout.strip())
    assert done.stdout.startswith("closed in ")


def test_a_link_to_a_slow_server_is_a_navigation_not_a_busy_script(chromium) -> None:
    """Chromium leaves DevTools calls to the old document unanswered while the new one is on its way: a link whose
    server takes 2 s (past the 0.5 s limit) was recorded as an error and its page's script "stopped"."""
    import threading

    from tests.servers import LocalServer, QuietHandler

    start = b"""<!doctype html><title>start</title><body style="margin:0">
    <a href="/next" style="display:block;width:1280px;height:800px">slow link</a></body>"""
    release = threading.Event()

    class Slow(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/next":
                release.wait(2)
                self.reply(200, b"<!doctype html><title>next</title><p>arrived</p>", "text/html")
            else:
                self.reply(200, start, "text/html")

    require_chromium()
    with LocalServer(Slow) as server, BrowserExecutor(BrowserSettings(action_timeout_ms=1000)) as browser:
        browser.goto(server.url + "/")
        outcome = click(browser, 640, 400)
        release.set()
        assert outcome.status == "ok", outcome.error
        assert outcome.navigated and browser.perceive().title == "next"
