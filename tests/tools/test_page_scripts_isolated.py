"""Glassbox's own scripts in a page (the element under a click, the frame wait after an action, the animation wait)
run in an isolated world: a page that replaces the JavaScript they would call can neither forge the record nor
hold every action for the settle's whole time limit."""

from __future__ import annotations

import io
import urllib.parse

import pytest
from PIL import Image

from tools.actions import ToolCall, parse_tool_call
from tools.browser import BrowserExecutor, BrowserSettings, SettlePolicy

SETTLE_LIMIT_MS = 4000

# Two buttons; a click on "Register" turns the page red. The page's own script goes first (%s).
PAGE = """<!doctype html><body style="margin:0">
<button id="signin" style="position:absolute;left:0;top:0;width:1280px;height:300px">Sign in</button>
<button id="register" style="position:absolute;left:0;top:400px;width:1280px;height:300px"
  onclick="document.body.style.background = 'rgb(255,0,0)'">Register</button>
<script>%s</script></body>"""

FORGE_ELEMENT = """
const signin = document.getElementById('signin');
Document.prototype.elementFromPoint = function () { return signin; };
document.elementFromPoint = () => signin;
Object.defineProperty(HTMLElement.prototype, 'innerText', { get() { return 'Sign in'; } });
Element.prototype.getBoundingClientRect = function () { return new DOMRect(0, 0, 1280, 300); };
"""

NO_FRAMES = "window.requestAnimationFrame = () => 0;  // never calls back"

ENDLESS_ANIMATION = """
const forever = new Promise(() => {});
const fake = { playState: 'running', pending: false, finished: forever,
               effect: { getComputedTiming: () => ({ endTime: 1e9 }) } };
Document.prototype.getAnimations = function () { return [fake]; };
document.getAnimations = () => [fake];
"""


@pytest.fixture
def executor(chromium):
    with BrowserExecutor(BrowserSettings(settle_timeout_ms=SETTLE_LIMIT_MS)) as browser:
        yield browser


def open_page(browser: BrowserExecutor, script: str) -> None:
    # A fresh document (set_content would keep the window, and with it an earlier test's replaced prototypes).
    browser.page.goto("data:text/html," + urllib.parse.quote(PAGE % script))


def click_register(browser: BrowserExecutor):
    call = ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [500, 690]})  # y = 552 px
    return browser.act(parse_tool_call(call))


def centre_is_red(png: bytes) -> bool:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB").getpixel((640, 350)) == (255, 0, 0)


def test_a_page_cannot_forge_the_element_under_the_click(executor):
    open_page(executor, FORGE_ELEMENT)
    assert executor.page.evaluate("document.elementFromPoint(10, 600).id") == "signin"  # the page's lie, in its world
    outcome = click_register(executor)
    assert outcome.status == "ok", outcome.error
    assert outcome.element is not None
    assert (outcome.element.tag, outcome.element.text) == ("button", "Register")
    assert outcome.element.box.y == 400 and outcome.element.box.height == 300


def test_a_page_without_animation_frames_does_not_hold_the_settle(executor):
    open_page(executor, NO_FRAMES)
    outcome = click_register(executor)
    assert outcome.status == "ok", outcome.error
    assert outcome.settle_ms is not None and outcome.settle_ms < SETTLE_LIMIT_MS / 2  # returned on frames, not the limit
    assert centre_is_red(executor.perceive().screenshot_png)  # and the screenshot still shows the click's effect


def test_a_page_cannot_stretch_the_animation_wait(executor):
    executor.settle_policy = SettlePolicy(animations=True, max_ms=SETTLE_LIMIT_MS)
    open_page(executor, ENDLESS_ANIMATION)
    outcome = click_register(executor)
    assert outcome.status == "ok", outcome.error
    # No animation of the document runs: the wait ends at once, not at max_ms.
    assert outcome.settle_ms is not None and outcome.settle_ms < SETTLE_LIMIT_MS / 2


def test_glassbox_scripts_see_the_new_document_after_a_navigation(executor):
    open_page(executor, "")
    assert executor.element_at((10, 500)) is not None
    executor.page.goto("data:text/html," + urllib.parse.quote("<body style='margin:0'><a style='font-size:90px'>Next</a>"))
    element = executor.element_at((10, 40))
    assert element is not None and element.text == "Next"  # asked in the new document's world, not the old one's
