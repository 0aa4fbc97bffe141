"""The Playwright executor on real headless Chromium, against a small local page."""

from __future__ import annotations

import pytest

from tools.actions import ToolCall, parse_tool_call


def act(browser, name="computer_use", **arguments):
    return browser.act(parse_tool_call(ToolCall(name=name, arguments=arguments)))


@pytest.fixture
def page(browser, shop):
    browser.allowed_origins.append(shop.base_url)
    browser.goto(shop.base_url + "/login")
    return browser


def test_perceive_reports_sizes_url_and_title(page):
    observation = page.perceive()
    assert observation.screenshot_png.startswith(b"\x89PNG")
    assert observation.screenshot_size == observation.css_size == (1280, 800)
    assert observation.url.endswith("/login") and "Sign in" in observation.title


def test_click_type_and_secret_reveal(page):
    from tools.browser import Target

    box = page.locate(Target(label="Password"))
    x, y = box.center
    outcome = act(page, action="left_click", coordinate=[x / 1280 * 1000, y / 800 * 1000])
    assert outcome.status == "ok" and outcome.element.tag == "input"
    assert act(page, action="type", text="<secret>password</secret>!").status == "ok"
    assert page.page.input_value("#password") == "s3cr3t-value!"
    unknown = act(page, action="type", text="<secret>api_key</secret>")
    assert unknown.status == "error" and "unknown secret 'api_key'" in unknown.error


def test_enter_submits_and_the_executor_waits_for_the_new_page(page):
    from tools.browser import Target

    for label, text in (("Username", "admin"), ("Password", "Xq7-tulip-4821")):
        page.page.get_by_label(label, exact=True).fill(text)
    page.page.get_by_label("Password", exact=True).focus()
    outcome = act(page, action="key", keys=["enter"])
    assert outcome.status == "ok" and outcome.navigated
    assert page.perceive().title.startswith("Dashboard")
    assert page.locate(Target(text="Recently added products")) is not None


def test_goto_url_is_limited_to_allowed_origins(page):
    outside = act(page, name="goto_url", url="http://example.invalid/admin")
    assert outside.status == "error" and "outside the allowed origins" in outside.error
    assert "example.invalid" not in page.page.url
    inside = act(page, name="goto_url", url=page.page.url.replace("/login", "/healthz"))
    assert inside.status == "ok" and page.page.url.endswith("/healthz")


def test_upload_only_declared_files(page):
    from tools.browser import Target

    page.page.set_content('<input type="file" id="f" style="width:300px;height:40px">')
    box = page.locate(Target(selector="#f"))
    point = [box.center[0] / 1280 * 1000, box.center[1] / 800 * 1000]
    undeclared = act(page, name="upload_file", file="/etc/passwd", coordinate=point)
    assert undeclared.status == "error" and "no file named '/etc/passwd'" in undeclared.error
    assert act(page, name="upload_file", file="lamp", coordinate=point).status == "ok"
    assert page.page.evaluate("document.querySelector('#f').files[0].name") == "desk_lamp.png"


def test_scroll_sign_follows_qwen(page):
    page.page.set_content('<div style="height:5000px">tall</div>')
    assert act(page, action="scroll", pixels=-600).status == "ok"
    down = page.page.evaluate("window.scrollY")
    assert down > 0
    assert act(page, action="scroll", pixels=300).status == "ok"  # positive scrolls up
    assert 0 <= page.page.evaluate("window.scrollY") < down


def test_unknown_key_is_an_error_not_a_crash(page):
    outcome = act(page, action="key", keys=["hyperspace"])
    assert outcome.status == "error" and "unknown key name" in outcome.error


def test_coordinates_are_clamped_and_audited(page):
    outcome = act(page, action="left_click", coordinate=[1500, -20])
    assert outcome.status == "ok"
    assert outcome.coordinate.clamped and outcome.coordinate.css == (1279, 0)


def test_device_scale_factor_two(chromium, shop):
    from tools.browser import BrowserExecutor, BrowserSettings, Target

    with BrowserExecutor(BrowserSettings(device_scale_factor=2, viewport=(800, 600))) as browser:
        browser.goto(shop.base_url + "/login")
        observation = browser.perceive()
        assert observation.screenshot_size == (1600, 1200) and observation.css_size == (800, 600)
        import io

        from PIL import Image

        assert Image.open(io.BytesIO(observation.screenshot_png)).size == (1600, 1200)
        box = browser.locate(Target(label="Username"))
        outcome = act(browser, action="left_click", coordinate=[box.center[0] / 800 * 1000, box.center[1] / 600 * 1000])
        assert outcome.element.tag == "input" and outcome.coordinate.screenshot_size == (1600, 1200)


def test_missing_chromium_says_how_to_install(monkeypatch):
    from tools.chromium import ChromiumNotFound, find_chromium

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("GLASSBOX_CHROMIUM", raising=False)
    with pytest.raises(ChromiumNotFound, match="apt-get install chromium"):
        find_chromium()
    monkeypatch.setenv("GLASSBOX_CHROMIUM", "/nonexistent/chrome")
    with pytest.raises(ChromiumNotFound, match="not an executable file"):
        find_chromium()


def test_without_a_window_the_headless_shell_is_preferred(monkeypatch, tmp_path):
    from tools.chromium import find_chromium

    for name in ("chromium", "chromium-headless-shell"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("GLASSBOX_CHROMIUM", raising=False)
    assert find_chromium(headless=True) == tmp_path / "chromium-headless-shell"
    assert find_chromium() == tmp_path / "chromium"  # a window (--headed) needs the whole browser
    (tmp_path / "chromium-headless-shell").unlink()
    assert find_chromium(headless=True) == tmp_path / "chromium"


def test_a_target_inside_a_frame_is_found_where_it_shows_on_the_page(browser):
    """An embedded form (a same-origin iframe, inside a frame with a border and padding) was never found: "no
    visible element matches". It is found after the page itself, at its place on the page, and the click lands."""
    from tests.servers import LocalServer, QuietHandler
    from tools.browser import Target

    outer = b"""<!doctype html><body style="margin:0"><p style="height:90px;margin:0">Outer Save</p>
    <iframe src="/inner.html" style="position:absolute;left:100px;top:150px;width:600px;height:400px;
      border:7px solid #000;padding:5px"></iframe></body>"""
    inner = b"""<!doctype html><body style="margin:0"><div style="height:120px"></div>
    <button id="b" style="margin-left:40px;width:200px;height:50px" onclick="parent.clicked = true">Inner Save</button>
    </body>"""

    class Site(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.reply(200, inner if self.path == "/inner.html" else outer, "text/html")

    with LocalServer(Site) as server:
        browser.goto(server.url + "/")
        browser.page.wait_for_function("document.querySelector('iframe').contentDocument.getElementById('b') !== null")
        found = browser.locate(Target(text="Inner Save"))
        assert found is not None and found.point is not None
        assert (found.x, found.y, found.width, found.height) == (100 + 7 + 5 + 40, 150 + 7 + 5 + 120, 200, 50)
        assert browser.locate(Target(text="Outer Save")) is not None  # the page itself first, as before
        x, y = found.point
        assert act(browser, action="left_click", coordinate=[x / 1280 * 1000, y / 800 * 1000]).status == "ok"
        assert browser.page.evaluate("window.clicked === true")
