"""A page chooses its title, and every step records it: it is cut to MAX_PAGE_TITLE. Real Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import require_chromium
from tests.servers import one_page
from tools import actions as A
from tools.browser import BrowserExecutor, BrowserSettings
from tools.views import MAX_PAGE_TITLE

PAGE = b"""<!doctype html><title>short</title>
<button style="position:absolute;left:0;top:0;width:400px;height:400px"
  onclick="document.title = 'after '.repeat(40000)">grow</button>
<script>document.title = 'T'.repeat(200000);</script>"""


@pytest.fixture
def pages() -> Iterator[str]:
    with one_page(PAGE) as server:
        yield server.url


def test_a_long_page_title_is_cut_when_observed_before_and_after_an_action(pages) -> None:
    require_chromium()
    with BrowserExecutor(BrowserSettings()) as browser:
        browser.goto(pages)
        first = browser.perceive()  # a fresh capture, the title read beside it
        assert first.title == "T" * MAX_PAGE_TITLE
        browser.act(A.LeftClick(action="left_click", coordinate=[100, 100]))  # model coordinates (0-1000)
        after = browser.perceive()  # the settle's capture, its title read in the same round trip
        assert after.title is not None and len(after.title) == MAX_PAGE_TITLE
        assert after.title.startswith("after after ")


def test_the_page_text_a_check_reads_includes_open_shadow_roots_and_same_origin_frames(chromium) -> None:
    """innerText stops at a shadow root and at a frame: a text_present check said "not on the page" for a button a
    person sees (and the script clicked). Another origin's frame stays unread."""
    from tests.conftest import require_chromium
    from tests.servers import LocalServer, QuietHandler
    from tools.browser import BrowserExecutor, BrowserSettings

    page = b"""<!doctype html><title>w</title><body><h1>Widgets</h1><div id="host"></div>
    <iframe src="/inner.html"></iframe><iframe src="http://localhost:9/"></iframe>
    <script>const root = document.getElementById('host').attachShadow({mode: 'open'});
    root.innerHTML = '<button>Shadow button</button><span>and a note</span>';</script></body>"""

    class Site(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"<!doctype html><body><p>Inside frame</p></body>" if self.path == "/inner.html" else page
            self.reply(200, body, "text/html")

    require_chromium()
    with LocalServer(Site) as server, BrowserExecutor(BrowserSettings()) as browser:
        browser.goto(server.url + "/")
        browser.page.wait_for_function("document.querySelector('iframe').contentDocument.body.innerText.length > 0")
        text = browser.page_text()
    assert "Widgets" in text and "Shadow button" in text and "and a note" in text and "Inside frame" in text
