"""A secret typed into a field that shows its text (an API key into a text input, a token into a textarea) is drawn
as discs, as a password field draws it: no screenshot (the run folder's, a served model's) shows the value, and the
field still holds it. Text without a secret is drawn as typed. Real Chromium."""

from __future__ import annotations

import io
import urllib.parse

import pytest
from PIL import Image, ImageChops

from tests.servers import LocalServer, QuietHandler
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


# -- a secret the page itself shows ----------------------------------------------------------------------------------

FORM = b"""<!doctype html><body style="margin:0;font:40px sans-serif"><form method="post" action="/save">
<textarea name="key" style="width:1200px;height:100px;font:40px monospace"></textarea><button>Save</button></form>"""


class _Site(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/settings":  # the key, shown when the page loads
            self.reply(200, f"<p id='said'>Your key: <b id='key'>{SECRET}</b></p>".encode(), "text/html")
        elif self.path.startswith("/framed"):  # the settings page in a frame (of this origin, or of ?src=)
            src = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("src", ["/settings"])[0]
            self.reply(200, f"<iframe src='{src}' width=900 height=200></iframe>".encode(), "text/html")
        else:
            self.reply(200, FORM, "text/html")

    def do_POST(self) -> None:  # noqa: N802
        value = urllib.parse.parse_qs(self.read_body().decode())["key"][0]
        # Re-rendered with the values after a validation error, as form frameworks do: a new element, in clear.
        page = (
            '<body style="margin:0;font:40px sans-serif"><p id="error">Name is required.</p>'
            f'<textarea id="again" style="width:1200px;height:100px;font:40px monospace">{value}</textarea>'
            f'<p id="echo">Saved <b id="key">{value}</b></p></body>'
        )
        self.reply(200, page.encode(), "text/html")


@pytest.fixture
def site():
    with LocalServer(_Site) as server:
        yield server.url


HIDDEN = "el => getComputedStyle(el).webkitTextSecurity"


def shown_differs_from_clear(browser, png: bytes, selector: str) -> bool:
    """Whether the element looks different in ``png`` than with its text drawn in clear (what a page shows)."""
    box = browser.page.locator(selector).bounding_box()
    top = int(box["y"])
    browser.page.evaluate(f"document.querySelector({selector!r}).style.removeProperty('-webkit-text-security')")
    clear = browser.page.screenshot(type="png")
    return ImageChops.difference(band(png, top), band(clear, top)).getbbox() is not None


def test_a_form_re_rendered_with_the_secret_shows_it_as_discs(chromium, site):
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings(), secrets={"api_key": SECRET}, allowed_origins=[site]) as browser:
        browser.goto(site + "/")
        act(browser, action="left_click", coordinate=[400, 60])
        assert act(browser, action="type", text="<secret>api_key</secret>").status == "ok"
        act(browser, action="key", keys=["Tab"])
        assert act(browser, action="key", keys=["Enter"]).navigated  # the form is sent and comes back
        png = browser.perceive().screenshot_png
        assert browser.page.eval_on_selector("#again", HIDDEN) == "disc"  # a new field, holding the value
        assert browser.page.eval_on_selector("#key", HIDDEN) == "disc"  # the value in the page's text
        assert browser.page.eval_on_selector("#error", HIDDEN) == "none"  # the rest is as the page draws it
        assert shown_differs_from_clear(browser, png, "#key")


def test_a_secret_on_a_page_as_it_loads_is_hidden_from_the_first_screenshot(chromium, site):
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings(), secrets={"api_key": SECRET}, allowed_origins=[site]) as browser:
        browser.goto(site + "/settings")
        png = browser.perceive().screenshot_png  # no action yet: a fresh capture
        assert browser.page.eval_on_selector("#key", HIDDEN) == "disc"
        assert shown_differs_from_clear(browser, png, "#key")


def test_a_page_of_another_origin_is_not_given_the_secrets(chromium, site):
    from tools.browser import BrowserExecutor, BrowserSettings

    other = site.replace("127.0.0.1", "localhost")
    with BrowserExecutor(BrowserSettings(), secrets={"api_key": SECRET}, allowed_origins=[other]) as browser:
        browser.goto(site + "/settings")  # it shows the value (this test's page knows it), but is not the task's
        browser.perceive()
        assert browser.page.eval_on_selector("#key", HIDDEN) == "none"


def test_checks_and_the_record_read_the_page_text_not_the_discs(chromium, site):
    """innerText reads masked text as discs: a text_present check on the secret failed, and the element under a click
    read '•••' where the record (which masks secrets itself) should say 'Your key: ●●●●'."""
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings(), secrets={"api_key": SECRET}, allowed_origins=[site]) as browser:
        browser.goto(site + "/settings")
        browser.perceive()  # masked
        assert f"Your key: {SECRET}" in browser.page_text()
        box = browser.page.locator("#key").bounding_box()
        element = browser.element_at((int(box["x"] + 5), int(box["y"] + 5)))
        assert element is not None and (element.tag, element.text) == ("b", SECRET)
        assert browser.page.eval_on_selector("#key", HIDDEN) == "disc"  # put back in the same task


def test_a_secret_the_page_writes_after_the_mask_and_before_the_capture_is_hidden_too(chromium, site):
    """A search box that echoes what was typed after a 20 ms debounce wrote the key between the mask script and the
    capture's frame: 4 screenshots of 10 showed it. Text added or changed after a capture's mask is masked before any
    frame draws it (here: written, then shot with no mask in between)."""
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings(), secrets={"api_key": SECRET}, allowed_origins=[site]) as browser:
        browser.goto(site + "/")
        browser.perceive()  # a capture: its mask script ran
        browser.page.evaluate(
            f"""() => {{
              const p = document.createElement('p'); p.id = 'added'; p.textContent = 'Key: ' + {SECRET!r};
              const q = document.createElement('p'); q.id = 'changed'; q.textContent = 'nothing yet';
              const r = document.createElement('p'); r.id = 'plain'; r.textContent = 'no key here';
              document.body.append(p, q, r);
              setTimeout(() => {{ q.firstChild.data = 'Now ' + {SECRET!r}; }}, 0);
            }}"""
        )
        browser.page.wait_for_function("document.getElementById('changed').textContent.startsWith('Now')")
        png = browser.page.screenshot(type="png")  # no mask script before this one
        for selector in ("#added", "#changed"):
            assert browser.page.eval_on_selector(selector, HIDDEN) == "disc", selector
            assert shown_differs_from_clear(browser, png, selector), selector
        assert browser.page.eval_on_selector("#plain", HIDDEN) == "none"


def test_a_secret_in_a_frame_of_the_task_origin_is_hidden_and_another_origin_frame_is_not_given_it(chromium, site):
    """A login form in a same-origin frame, re-rendered with the key, was captured in clear: only the page itself was
    masked."""
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings(), secrets={"api_key": SECRET}, allowed_origins=[site]) as browser:
        browser.goto(site + "/framed")
        frame = browser.page.frame_locator("iframe")
        frame.locator("#key").wait_for()
        png = browser.perceive().screenshot_png
        assert frame.locator("#key").evaluate(HIDDEN) == "disc"
        frame.locator("#key").evaluate("el => el.style.removeProperty('-webkit-text-security')")
        assert ImageChops.difference(band(png, 0), band(browser.page.screenshot(type="png"), 0)).getbbox() is not None
        other = site.replace("127.0.0.1", "localhost") + "/settings"
        browser.goto(site + "/framed?src=" + urllib.parse.quote(other))
        frame.locator("#key").wait_for()
        browser.perceive()
        assert frame.locator("#key").evaluate(HIDDEN) == "none"  # another origin's frame: never given the values


def test_a_field_inside_a_closed_shadow_root_draws_the_secret_as_discs(chromium, site):
    """A custom element's own field (in a closed shadow root, out of reach of any page script but its own) showed the
    typed key in every screenshot."""
    from tools.browser import BrowserExecutor, BrowserSettings

    custom = (
        "<div id=host></div><script>const root = document.getElementById('host').attachShadow({mode: 'closed'});"
        "root.innerHTML = '<input id=f style=\"width:600px;font:40px monospace\">';"
        "window.field = root.getElementById('f'); window.field.focus();</script>"
    )
    with BrowserExecutor(BrowserSettings(), secrets={"api_key": SECRET}, allowed_origins=[site]) as browser:
        browser.goto(site + "/")
        browser.page.set_content(custom)  # the task's origin still (set_content keeps the document's URL)
        assert act(browser, action="type", text="<secret>api_key</secret>").status == "ok"
        assert browser.page.evaluate("window.field.value") == SECRET
        assert browser.page.evaluate("getComputedStyle(window.field).webkitTextSecurity") == "disc"


def test_a_select_showing_the_secret_and_an_image_whose_alt_text_holds_it_draw_no_text(chromium, site):
    from tools.browser import BrowserExecutor, BrowserSettings

    page = (
        f"<select id=s style='font:40px monospace'><option>one</option><option selected>{SECRET}</option></select>"
        f"<img id=i alt='Key {SECRET}' src='/missing.png' style='display:block;font:40px monospace;width:900px;height:60px'>"
        "<select id=plain style='font:40px monospace'><option selected>nothing secret</option></select>"
    )
    with BrowserExecutor(BrowserSettings(), secrets={"api_key": SECRET}, allowed_origins=[site]) as browser:
        browser.goto(site + "/")
        browser.page.set_content(page)
        browser.page.wait_for_function("document.getElementById('i').complete")
        png = browser.perceive().screenshot_png
        color = "el => getComputedStyle(el).color"
        assert browser.page.eval_on_selector("#s", color) == browser.page.eval_on_selector("#i", color) == "rgba(0, 0, 0, 0)"
        assert browser.page.eval_on_selector("#plain", color) != "rgba(0, 0, 0, 0)"
        for selector in ("#s", "#i"):
            box = browser.page.locator(selector).bounding_box()
            browser.page.eval_on_selector(selector, "el => el.style.removeProperty('color')")
            top = int(box["y"])
            assert ImageChops.difference(band(png, top), band(browser.page.screenshot(type="png"), top)).getbbox() is not None
