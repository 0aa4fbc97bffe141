"""The browser's settle policy after an action: network idle and finished animations, up to max_ms; the
default stays today's fast settle (two frames and a started navigation)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tools.actions import ToolCall, parse_tool_call
from tools.browser import _ANIMATIONS_DONE, SettlePolicy

PAGE = b"""<!doctype html><title>fetch</title>
<button id="go" style="position:absolute;left:0;top:0;width:400px;height:200px">Load</button>
<p id="result" style="position:absolute;top:300px"></p>
<script>
document.getElementById('go').onclick = () =>
  fetch(location.search.includes('held') ? '/held' : '/slow').then(r => r.text()).then(t => {
    document.getElementById('result').textContent = t;
  });
</script>"""

ANIMATED = """<!doctype html><style>
#box { position:absolute; left:0; top:0; width:400px; height:200px; background:#48c; transition: transform 1.5s linear; }
#box.moved { transform: translateX(600px); }
#spin { position:absolute; top:400px; width:20px; height:20px; background:#c84; animation: spin 1s linear infinite; }
@keyframes spin { to { transform: rotate(360deg); } }
</style><div id="box" onclick="this.classList.add('moved')"></div><div id="spin"></div>"""

RUNNING_FINITE = """() => document.getAnimations().filter(a => a.playState === 'running'
  && Number.isFinite(a.effect.getComputedTiming().endTime)).length"""


class _Site(ThreadingHTTPServer):
    release = threading.Event()  # /held answers once the test sets it


class _Handler(BaseHTTPRequestHandler):
    server: _Site

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/slow"):
            time.sleep(0.4)  # the server is slow: the scenario under test, not a wait in the test
            body = b"done"
        elif self.path.startswith("/held"):
            self.server.release.wait(30)
            body = b"released"
        else:
            body = PAGE
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if body is PAGE else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[_Site]:
    server = _Site(("127.0.0.1", 0), _Handler)
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def click(browser, x: int = 100, y: int = 100):
    action = parse_tool_call(ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [x, y]}))
    return browser.act(action)


def result_text(browser) -> str:
    return str(browser.page.evaluate("document.getElementById('result').textContent"))


def test_network_idle_waits_for_the_request_a_click_started(browser, site):
    browser.settle_policy = SettlePolicy(network_idle=True, max_ms=15_000)
    browser.goto(f"http://127.0.0.1:{site.server_port}/")
    outcome = click(browser)
    assert outcome.status == "ok" and outcome.settle_ms is not None
    assert result_text(browser) == "done"  # the response arrived and was drawn before act returned


def test_the_default_settle_does_not_wait_for_the_network(browser, site):
    assert browser.settle_policy == SettlePolicy()  # off unless the task asks
    browser.goto(f"http://127.0.0.1:{site.server_port}/?held")
    outcome = click(browser)
    assert outcome.status == "ok"
    assert result_text(browser) == ""  # the request is still held by the server
    site.release.set()
    browser.page.wait_for_function("document.getElementById('result').textContent === 'released'")


def test_network_idle_stops_at_max_ms_when_a_request_never_ends(browser, site):
    browser.settle_policy = SettlePolicy(network_idle=True, max_ms=300)
    browser.goto(f"http://127.0.0.1:{site.server_port}/?held")
    outcome = click(browser)
    assert outcome.status == "ok"  # a busy network is not an error of the action
    assert result_text(browser) == ""
    site.release.set()


def test_animations_settle_waits_for_a_transition_the_click_started(browser):
    browser.settle_policy = SettlePolicy(animations=True, max_ms=15_000)
    browser.page.set_content(ANIMATED)
    assert click(browser).status == "ok"
    assert browser.page.evaluate(RUNNING_FINITE) == 0
    assert browser.page.evaluate("document.getElementById('box').getBoundingClientRect().x") == 600
    assert browser.page.evaluate("document.getAnimations().length") == 1  # the endless spinner runs on


def test_the_default_settle_returns_while_the_transition_runs(browser):
    browser.page.set_content(ANIMATED)
    assert click(browser).status == "ok"
    assert browser.page.evaluate(RUNNING_FINITE) == 1
    assert browser.page.evaluate("document.getElementById('box').getBoundingClientRect().x") < 600


def test_endless_animations_are_not_waited_for(browser):
    browser.page.set_content(ANIMATED)
    # True: nothing finite is running (False would mean it waited for the spinner until the limit).
    assert browser.page.evaluate(_ANIMATIONS_DONE, 3000) is True


def test_goto_url_never_opens_local_files(browser, tmp_path):
    (tmp_path / "start.html").write_text("<title>start</title>", encoding="utf-8")
    (tmp_path / "other.html").write_text("<title>other</title>", encoding="utf-8")
    browser.goto((tmp_path / "start.html").as_uri())  # the harness opens a task's local start page
    # A relative URL resolves against the local start page: the executor still refuses the file it names.
    action = parse_tool_call(ToolCall(name="goto_url", arguments={"url": "other.html"}))
    outcome = browser.act(action)
    assert outcome.status == "error" and "goto_url cannot open file: URLs" in (outcome.error or "")
    assert browser.page.url.endswith("/start.html")
