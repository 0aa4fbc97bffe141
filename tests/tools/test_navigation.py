"""The settle after an action knows the navigation the action asked for before its request is sent (a form's
submit is requested while the click is handled, its request follows tens of milliseconds later): the screenshot
after a sign-in is the next page's, never the form's. Navigations that never load (a 204 answer) end the wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.servers import LocalServer, QuietHandler
from tools.actions import ToolCall, parse_tool_call
from tools.browser import BrowserExecutor, BrowserSettings

FORM = b"""<!doctype html><title>form</title><body style="margin:0">
<form method="post" action="/held">
<button style="position:absolute;left:0;top:0;width:1280px;height:400px">Sign in</button></form>
<a href="/nothing" style="position:absolute;left:0;top:400px;width:1280px;height:400px">no content</a></body>"""
DONE = b"<!doctype html><title>done</title><body style='margin:0;background:#0a0'>signed in</body>"


class _Handler(QuietHandler):
    release: threading.Event  # the form's answer comes once this is set (it is, unless a test holds it)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/nothing":
            self.reply(204, b"", "text/plain")  # a link whose answer is no content: the page stays, nothing loads
        else:
            self.reply(200, FORM, "text/html")

    def do_POST(self) -> None:  # noqa: N802
        self.read_body()
        self.release.wait(30)
        self.reply(200, DONE, "text/html")


@dataclass
class _Site:
    url: str
    release: threading.Event


@pytest.fixture
def site() -> Iterator[_Site]:
    release = threading.Event()
    release.set()
    with LocalServer(type("Handler", (_Handler,), {"release": release})) as server:
        try:
            yield _Site(server.url, release)
        finally:
            release.set()  # a held answer must not keep the server from closing


def click(browser: BrowserExecutor, x: int, y: int):
    return browser.act(parse_tool_call(ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [x, y]})))


def test_a_submit_is_known_when_the_frame_wait_returns(browser, site):
    browser.goto(site.url + "/")
    watch = browser._watch
    assert watch is not None and not watch.pending
    requested = watch.requested
    site.release.clear()  # the form's answer is held: its navigation cannot finish before the test says
    browser.page.mouse.click(640, 200)
    watch.frames(1)
    assert watch.pending and watch.requested == requested + 1
    site.release.set()
    browser.page.wait_for_function("document.title === 'done'")
    for _ in range(500):  # the page stops loading right after its load event
        if not watch.pending:
            break
        browser.page.wait_for_timeout(10)
    assert not watch.pending


@pytest.mark.parametrize("attempt", range(3))
def test_the_screenshot_after_a_submit_is_the_next_page(chromium, site, attempt):
    with BrowserExecutor(BrowserSettings()) as browser:
        browser.goto(site.url + "/")
        outcome = click(browser, 500, 250)
        assert outcome.status == "ok" and outcome.navigated
        observation = browser.perceive()
        assert observation.title == "done" and observation.url.endswith("/held")


def test_a_navigation_that_never_loads_ends_the_wait(chromium, site):
    # A 204 answer leaves the page as it is; before, the settle waited for a load until its time limit.
    with BrowserExecutor(BrowserSettings(settle_timeout_ms=60_000)) as browser:
        browser.goto(site.url + "/")
        outcome = click(browser, 500, 750)
        assert outcome.status == "ok" and outcome.navigated
        assert outcome.settle_ms is not None and outcome.settle_ms < 30_000
        assert browser.perceive().title == "form"


_NEVER_ANSWERED = """
import socket, sys
from tools.browser import BrowserExecutor, BrowserSettings, StartPageError
silent = socket.socket()
silent.bind(("127.0.0.1", 0))
silent.listen(8)  # accepts (the kernel does) and never answers
browser = BrowserExecutor(BrowserSettings()).start()
try:
    browser.goto(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout_ms=1000)
except StartPageError as exc:
    print(exc, flush=True)
browser.close()
print("closed", flush=True)
"""


def test_a_start_page_that_never_answers_fails_and_the_browser_still_closes(chromium) -> None:
    """Chromium answers no DevTools detach while a page is loading: a server that accepts and never answers held the
    close (and `glassbox run`) for good, after the start page's error was already known. (In a child process:
    Playwright's objects cannot be closed from another thread, and a hang must not hold the suite.)"""
    import subprocess
    import sys

    from tests.conftest import ROOT

    try:
        done = subprocess.run(
            [sys.executable, "-c", _NEVER_ANSWERED], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("closing the browser hung on the page still loading")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [f"the start page {done.stdout.split()[3]} did not load within 1 s", "closed"]


def test_a_link_to_a_page_that_never_answers_is_an_error_and_the_page_before_stays(chromium) -> None:
    """Chromium answers no script on the old document while the next one has not answered: the next screenshot's
    title (and secret masking) waited until the capture failed, and the run crashed. The loading is stopped when the
    wait for it runs out (as long as a start page's, here cut by the run's time budget), as Esc does, and the step
    says so."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does) and never answers
    page = (
        f'<!doctype html><title>start</title><a href="http://127.0.0.1:{silent.getsockname()[1]}/" '
        'style="display:block;width:1280px;height:800px">stuck link</a>'
    ).encode()

    class Start(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.reply(200, page, "text/html")

    try:
        with LocalServer(Start) as server, BrowserExecutor(BrowserSettings(settle_timeout_ms=1000)) as browser:
            browser.allowed_origins.append(server.url)
            browser.goto(server.url + "/")
            action = parse_tool_call(ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [500, 500]}))
            outcome = browser.act(action, deadline=time.monotonic() + 3)  # the run's budget ends in 3 s
            said = outcome.error or ""
            assert outcome.status == "error" and "did not answer within 30 s (or the run's time budget)" in said, said
            assert "its loading was stopped (as Esc does)" in said
            observation = browser.perceive()  # no CaptureTimeout: the page before is on screen, and answers
            assert observation.title == "start"
    finally:
        silent.close()
