"""An eval worker keeps one Chromium between its runs (tools.browser.share_browser_between_runs): each run gets a
browser context of its own, so nothing a page stored reaches the next run, and a Chromium that died is launched
again. Runs in a child process: sharing is process-wide."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("chromium")

CHILD = textwrap.dedent("""\
    from tools.browser import BrowserExecutor, share_browser_between_runs

    share_browser_between_runs()
    PAGE = "data:text/html,<title>t</title>"
    with BrowserExecutor() as first:
        first.page.goto(PAGE)
        first.page.context.add_cookies([{"name": "seen", "value": "1", "url": "http://127.0.0.1:9/"}])
        browser = first._browser
    assert browser.is_connected(), "closing a run closed the shared browser"
    with BrowserExecutor() as second:
        assert second._browser is browser, "the second run launched another browser"
        assert second.page.context.cookies() == [], "a cookie of the first run reached the second"
    browser.close()  # Chromium dies between two runs
    with BrowserExecutor() as third:
        assert third._browser is not browser and third._browser.is_connected()
        third.page.goto(PAGE)
        assert third.page.title() == "t"
    print("ok")
""")


def test_runs_in_one_process_share_chromium_but_nothing_a_page_stored():
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
