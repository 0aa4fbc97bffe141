"""The fast act path keeps what the slow one guaranteed: the screenshot after an action shows its effect (drawn
at once, in the next frame, in the frame after, or in a task queued by the handler), a click that starts a
navigation is waited for, the element info is the one under the point before the action, and the mouse and
keys send the same events as before. The settle's screenshot serves the next perceive only while nothing
was done to the page in between."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

import tools.browser as browser_module
from tools.actions import ToolCall, parse_tool_call

RED, WHITE = (255, 0, 0), (255, 255, 255)

# A full-viewport box that turns red on click, the way window.mode says: at once, in the next animation
# frame, in the frame after, or in a task (setTimeout 0).
PAINT = """<!doctype html><body style="margin:0"><div id="box" style="width:1280px;height:800px;background:#fff"></div>
<script>
const box = document.getElementById('box');
const paint = () => { box.style.background = 'rgb(255,0,0)'; };
box.addEventListener('click', () => {
  if (window.mode === 'sync') paint();
  if (window.mode === 'frame') requestAnimationFrame(paint);
  if (window.mode === 'two_frames') requestAnimationFrame(() => requestAnimationFrame(paint));
  if (window.mode === 'task') setTimeout(paint, 0);
});
</script></body>"""

# Logs every mouse and key event the page sees, in order.
EVENTS = """<!doctype html><body style="margin:0">
<button id="b" style="position:absolute;left:0;top:0;width:640px;height:400px">Press me</button>
<input id="t" style="position:absolute;left:0;top:500px;width:400px;height:40px">
<script>
window.seen = [];
const log = e => window.seen.push(e.type + (e.button !== undefined ? ':' + e.button : '') + (e.detail ? ':' + e.detail : '')
  + (e.key ? ':' + e.key : ''));
for (const t of ['mousemove', 'mousedown', 'mouseup', 'click', 'dblclick', 'contextmenu', 'auxclick'])
  document.getElementById('b').addEventListener(t, e => { log(e); if (t === 'contextmenu') e.preventDefault(); });
for (const t of ['keydown', 'keypress', 'input', 'keyup']) document.getElementById('t').addEventListener(t, log);
document.getElementById('b').addEventListener('click', e => { e.target.textContent = 'Pressed'; });
</script></body>"""


def act(browser, action: str, **arguments: object):
    call = ToolCall(name="computer_use", arguments={"action": action, **arguments})
    return browser.act(parse_tool_call(call))


def centre(png: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(png)) as image:
        pixel = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    assert isinstance(pixel, tuple)
    return (int(pixel[0]), int(pixel[1]), int(pixel[2]))


@pytest.mark.parametrize("mode", ["sync", "frame", "two_frames", "task"])
def test_the_screenshot_after_a_click_shows_its_effect(browser, mode):
    browser.page.set_content(PAINT)
    browser.page.evaluate(f"window.mode = {json.dumps(mode)}")
    assert centre(browser.perceive().screenshot_png) == WHITE
    outcome = act(browser, "left_click", coordinate=[500, 500])
    assert outcome.status == "ok", outcome.error
    assert centre(browser.perceive().screenshot_png) == RED


def test_the_title_after_an_action_is_the_new_one(browser):
    browser.page.set_content(
        "<title>before</title><button onclick=\"document.title = 'after'\" style='width:1280px;height:800px'>go</button>"
    )
    assert browser.perceive().title == "before"
    assert act(browser, "left_click", coordinate=[500, 500]).status == "ok"
    assert browser.perceive().title == "after"


def test_the_settled_screenshot_is_dropped_when_the_page_is_changed_in_between(browser):
    browser.page.set_content(PAINT)
    browser.page.evaluate("window.mode = 'none'")
    assert act(browser, "left_click", coordinate=[500, 500]).status == "ok"
    browser.run_script("document.getElementById('box').style.background = 'rgb(255,0,0)'", timeout_ms=5000)  # a check, setup
    assert centre(browser.perceive().screenshot_png) == RED


def test_an_old_settled_screenshot_is_not_used(browser, monkeypatch):
    monkeypatch.setattr(browser_module, "SETTLED_SHOT_MAX_AGE_S", -1.0)  # every settled screenshot is too old
    browser.page.set_content(PAINT)
    browser.page.evaluate("window.mode = 'none'")
    assert act(browser, "left_click", coordinate=[500, 500]).status == "ok"
    # Changed behind the executor's back (a timer in the page, say): only a fresh capture shows it.
    browser.page.evaluate("document.getElementById('box').style.background = 'rgb(255,0,0)'")
    assert centre(browser.perceive().screenshot_png) == RED


def test_the_settled_screenshot_is_used_once(browser):
    browser.page.set_content(PAINT)
    browser.page.evaluate("window.mode = 'sync'")
    assert act(browser, "left_click", coordinate=[500, 500]).status == "ok"
    first = browser.perceive()
    browser.page.evaluate("document.getElementById('box').style.background = 'rgb(255,255,255)'")
    assert centre(first.screenshot_png) == RED
    assert centre(browser.perceive().screenshot_png) == WHITE  # the second perceive captures afresh


def test_a_click_that_starts_a_navigation_is_waited_for_and_shown(browser, shop):
    link = f'<a href="{shop.base_url}/login" style="display:block;width:1280px;height:800px">sign in</a>'
    browser.page.set_content(f'<!doctype html><body style="margin:0;background:#f00">{link}</body>')
    outcome = act(browser, "left_click", coordinate=[500, 500])
    assert outcome.status == "ok" and outcome.navigated
    observation = browser.perceive()
    assert observation.url == f"{shop.base_url}/login"
    assert centre(observation.screenshot_png) != RED
    assert "Username" in browser.page_text()


def test_terminate_leaves_no_settled_screenshot(browser):
    browser.page.set_content(PAINT)
    browser.perceive()
    assert act(browser, "terminate", status="success").status == "ok"
    browser.page.evaluate("document.getElementById('box').style.background = 'rgb(255,0,0)'")
    assert centre(browser.perceive().screenshot_png) == RED


def seen(browser) -> list[str]:
    return list(browser.page.evaluate("window.seen"))


def test_the_element_is_the_one_under_the_point_before_the_click(browser):
    browser.page.set_content(EVENTS)
    outcome = act(browser, "left_click", coordinate=[250, 250])  # (320, 200) in CSS pixels
    assert outcome.status == "ok"
    assert outcome.element is not None
    assert (outcome.element.tag, outcome.element.text) == ("button", "Press me")
    assert browser.page.evaluate("document.getElementById('b').textContent") == "Pressed"


@pytest.mark.parametrize(
    ("action", "events"),
    [
        ("left_click", ["mousemove:0", "mousedown:0:1", "mouseup:0:1", "click:0:1"]),
        ("right_click", ["mousemove:0", "mousedown:2:1", "contextmenu:2", "mouseup:2:1", "auxclick:2:1"]),
        ("middle_click", ["mousemove:0", "mousedown:1:1", "mouseup:1:1", "auxclick:1:1"]),
        (
            "double_click",
            [
                "mousemove:0",
                "mousedown:0:1",
                "mouseup:0:1",
                "click:0:1",
                "mousedown:0:2",
                "mouseup:0:2",
                "click:0:2",
                "dblclick:0:2",
            ],
        ),
    ],
)
def test_clicks_send_the_same_mouse_events(browser, action, events):
    browser.page.set_content(EVENTS)
    assert act(browser, action, coordinate=[250, 250]).status == "ok"
    assert seen(browser) == events


def test_typing_sends_a_key_event_per_character(browser):
    browser.page.set_content(EVENTS)
    assert act(browser, "left_click", coordinate=[100, 650]).status == "ok"  # the input
    assert act(browser, "type", text="aB").status == "ok"
    assert browser.page.evaluate("document.getElementById('t').value") == "aB"
    keys = [e for e in seen(browser) if e.startswith(("keydown", "keypress", "input", "keyup"))]
    assert keys == [
        "keydown:a",
        "keypress:a",
        "input",
        "keyup:a",
        "keydown:B",
        "keypress:B",
        "input",
        "keyup:B",
    ]


# Every field a page's key handler may read, for each key and input event, in order.
KEY_LOG = """<!doctype html><body><textarea id="t" style="width:600px;height:300px"></textarea><script>
window.seen = [];
const t = document.getElementById('t');
for (const type of ['keydown', 'keypress', 'beforeinput', 'input', 'keyup'])
  t.addEventListener(type, e => window.seen.push([e.type, e.key, e.code, e.keyCode, e.which, e.charCode, e.shiftKey,
    e.repeat, e.location, e.isComposing, e.inputType, e.data].map(String).join(' ')));
</script></body>"""

EVERY_KEY = "".join(sorted(__import__("tools.keytext", fromlist=["LAYOUT"]).LAYOUT)) + " é ü\n\tend"


def test_typing_sends_exactly_what_keyboard_type_sends(browser):
    def events_of(type_text) -> tuple[list[str], str]:
        browser.page.set_content(KEY_LOG)
        browser.page.focus("#t")
        type_text(EVERY_KEY)
        return seen(browser), str(browser.page.evaluate("document.getElementById('t').value"))

    expected = events_of(browser.page.keyboard.type)
    assert act(browser, "left_click", coordinate=[10, 10]).status == "ok"  # any earlier action: no held keys
    got = events_of(
        lambda text: browser.act(parse_tool_call(ToolCall(name="computer_use", arguments={"action": "type", "text": text})))
    )
    assert got[1] == expected[1]
    assert got[1].startswith(EVERY_KEY[:-5]) and got[1].endswith("end")
    assert got[0] == expected[0]
