"""A secret typed into a field that shows its text (an API key into a text input, a token into a textarea) is drawn
as discs, as a password field draws it: no screenshot (the run folder's, a served model's) shows the value, and the
field still holds it. Text without a secret is drawn as typed. Real Chromium."""

from __future__ import annotations

import io
import urllib.parse

import pytest
from PIL import Image, ImageChops

from tools.actions import ToolCall, parse_tool_call

SECRET = "sk-live-4242-abcd"
FIELD = "position:absolute;left:0;width:1280px;height:120px;font:48px monospace;border:0;outline:none;padding:0 10px"
# The field the agent types into (text), and beside it a password field holding the same value, drawn alike.
PAGE = f"""<!doctype html><body style="margin:0">
<input id="key" style="{FIELD};top:0">
<input id="pw" type="password" style="{FIELD};top:200px">
<textarea id="note" style="{FIELD};top:400px;height:160px"></textarea>
<input id="plain" style="{FIELD};top:620px">
<script>document.getElementById('pw').value = {SECRET!r};</script></body>"""


def act(browser, **arguments):
    return browser.act(parse_tool_call(ToolCall(name="computer_use", arguments=arguments)))


def band(png: bytes, top: int) -> Image.Image:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB").crop((0, top, 1280, top + 120))


@pytest.fixture
def browser(chromium):
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings(), secrets={"api_key": SECRET}) as executor:
        executor.page.goto("data:text/html," + urllib.parse.quote(PAGE))
        yield executor


def test_a_secret_in_a_text_field_is_drawn_as_a_password_field_draws_it(browser):
    act(browser, action="left_click", coordinate=[500, 60])  # y 48: the text field
    assert act(browser, action="type", text="<secret>api_key</secret>").status == "ok"
    png = browser.perceive().screenshot_png
    assert browser.page.input_value("#key") == SECRET  # the page gets the value
    assert ImageChops.difference(band(png, 0), band(png, 200)).getbbox() is None  # pixel for pixel the password field


def test_a_textarea_holding_a_secret_hides_its_text_and_plain_typing_does_not(browser):
    act(browser, action="left_click", coordinate=[500, 600])  # y 480: the textarea
    assert act(browser, action="type", text="key: <secret>api_key</secret>").status == "ok"
    act(browser, action="left_click", coordinate=[500, 850])  # y 680: the plain field
    assert act(browser, action="type", text="hello world").status == "ok"
    png = browser.perceive().screenshot_png
    assert browser.page.input_value("#note") == f"key: {SECRET}"
    styles = "[...document.querySelectorAll('textarea, #plain')].map(e => getComputedStyle(e).webkitTextSecurity)"
    assert browser.page.evaluate(styles) == ["disc", "none"]
    # The plain field shows its text: it differs from the same field drawn as discs.
    shown = band(png, 620)
    browser.page.evaluate("document.getElementById('plain').style.webkitTextSecurity = 'disc'")
    assert ImageChops.difference(shown, band(browser.perceive().screenshot_png, 620)).getbbox() is not None
