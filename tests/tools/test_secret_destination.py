"""A secret is typed only into a document of the task's origins: not into a page the agent was led to, nor into a
frame of another origin inside the task's page (real Chromium, two local servers: 127.0.0.1 and localhost are
different sites, so the frame runs out of process as a third-party frame would)."""

from __future__ import annotations

import pytest

from tests.servers import one_page
from tools.actions import ToolCall, parse_tool_call
from tools.secret_destination import MAX_FRAME_DEPTH, frame_refusal, key_frames, refusal

SECRET = "hunter2-Zq9"
SITE = "http://127.0.0.1:8000"


def act(browser, **arguments):
    return browser.act(parse_tool_call(ToolCall(name="computer_use", arguments=arguments)))


# -- which frames may receive a secret -----------------------------------------------------------------------------


def test_the_task_origin_and_frames_it_wrote_may_receive_a_secret():
    assert refusal([SITE + "/login"], [SITE], local_pages=False) is None
    assert refusal([SITE + "/login", "about:blank"], [SITE], local_pages=False) is None
    assert refusal([SITE + "/login", "about:srcdoc", SITE + "/frame"], [SITE], local_pages=False) is None
    assert refusal([SITE + "/a", "blob:http://127.0.0.1:8000/5a1c"], [SITE], local_pages=False) is None


@pytest.mark.parametrize(
    ("chain", "said"),
    [
        (["https://evil.example/login"], "the page https://evil.example, which is not one of the task's origins"),
        ([SITE + "/", "https://evil.example/form"], "a frame of https://evil.example inside the page"),
        ([SITE + "/", "data:text/html,<input>"], "a frame of data:text/html,<input> inside the page"),
        ([SITE + "/", "https://evil.example/", "about:blank"], "a frame of https://evil.example inside the page"),
        (["about:blank"], "the page about:blank, a page of no origin of the task's"),
        ([SITE + "/", "blob:https://evil.example/5a1c"], "a frame of https://evil.example inside the page"),
        (["file:///home/user/task/page.html"], "a local file, and this task's pages are on the web"),
        ([SITE + "/"] * (MAX_FRAME_DEPTH + 1), f"more than {MAX_FRAME_DEPTH} frames deep"),
    ],
)
def test_other_origins_are_refused(chain, said):
    problem = refusal(chain, [SITE], local_pages=False)
    assert problem is not None and said in problem


def test_a_local_task_may_type_into_its_own_files_only():
    assert refusal(["file:///tasks/login.html"], [], local_pages=True) is None
    problem = refusal(["file:///tasks/login.html", "http://127.0.0.1:9/"], [], local_pages=True)
    assert problem is not None and "(none)" in problem


class _Frame:
    """A frame as key_frames sees one: its URL, and the frame its focused element holds (asking is recorded)."""

    def __init__(self, url: str, focused: "_Frame | None" = None) -> None:
        self.url, self.focused, self.asked = url, focused, False

    def evaluate_handle(self, _script: str) -> "_Frame":
        self.asked = True
        return self

    def as_element(self) -> "_Frame | None":
        return self if self.focused is not None else None

    def content_frame(self) -> "_Frame | None":
        return self.focused

    def json_value(self) -> bool:
        return True  # the focused element is a field

    def dispose(self) -> None:
        pass


def test_a_frame_of_another_origin_is_never_asked_where_its_focus_is():
    # A frame of another site could spin when asked (its page's thread busy for ever): it ends the search unasked.
    inner = _Frame(SITE + "/deeper")
    evil = _Frame("https://evil.example/form", focused=inner)
    page = type("Page", (), {"main_frame": _Frame(SITE + "/login", focused=evil)})()
    chain, hidden = key_frames(page, lambda url, depth: frame_refusal(url, depth, [SITE], local_pages=False) is None)
    assert [frame.url for frame in chain] == [SITE + "/login", "https://evil.example/form"] and not hidden
    assert page.main_frame.asked and not evil.asked and not inner.asked


# -- on real pages --------------------------------------------------------------------------------------------------

INNER = b'<!doctype html><body><input id="inner" aria-label="inner field"></body>'


@pytest.fixture
def pages(chromium):
    from tools.browser import BrowserExecutor, BrowserSettings

    with one_page(INNER) as inner:
        frame_url = inner.url.replace("127.0.0.1", "localhost") + "/form"
        outer = (
            '<!doctype html><body><input id="outer" aria-label="outer field">'
            f'<iframe src="{frame_url}" width="400" height="200"></iframe></body>'
        ).encode()
        with one_page(outer) as site:
            with BrowserExecutor(BrowserSettings(), secrets={"pw": SECRET}, allowed_origins=[site.url]) as browser:
                browser.goto(site.url + "/login")
                browser.page.wait_for_function("document.querySelector('iframe').contentWindow !== null")
                browser.page.frame_locator("iframe").locator("#inner").wait_for()
                yield browser, frame_url


def inner_value(browser) -> str:
    return str(browser.page.frame_locator("iframe").locator("#inner").input_value())


def test_a_secret_goes_into_the_task_page(pages):
    browser, _ = pages
    browser.page.focus("#outer")
    assert act(browser, action="type", text="<secret>pw</secret>").status == "ok"
    assert browser.page.input_value("#outer") == SECRET


def test_a_secret_is_not_typed_into_a_frame_of_another_origin(pages):
    browser, frame_url = pages
    browser.page.frame_locator("iframe").locator("#inner").focus()
    outcome = act(browser, action="type", text="pin: <secret>pw</secret>")
    assert outcome.status == "error"
    assert outcome.error is not None and "refused to type the secret pw" in outcome.error
    assert "a frame of http://localhost:" in outcome.error and SECRET not in outcome.error
    assert inner_value(browser) == ""  # not one key of it, not even the text before the secret
    # Text that holds no secret goes anywhere, as a person's typing would.
    assert act(browser, action="type", text="hello").status == "ok"
    assert inner_value(browser) == "hello"


def test_a_secret_is_not_typed_into_a_page_of_another_origin(pages):
    browser, frame_url = pages
    browser.page.goto(frame_url)  # led away from the task's site (a link, a followed popup)
    browser.page.focus("#inner")
    outcome = act(browser, action="type", text="<secret>pw</secret>")
    assert outcome.status == "error" and outcome.error is not None
    assert "the page http://localhost:" in outcome.error and "not one of the task's origins" in outcome.error
    assert browser.page.input_value("#inner") == ""


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_a_frame_of_another_origin_in_a_shadow_root_gets_no_secret(chromium, mode):
    # Inside a closed shadow root the focused frame cannot be seen: the focus is on its host, which is not a field,
    # and a frame of another origin is in the page, so the secret is refused all the same.
    from tools.browser import BrowserExecutor, BrowserSettings

    with one_page(INNER) as inner:
        frame_url = inner.url.replace("127.0.0.1", "localhost") + "/form"
        outer = (
            f"<!doctype html><body><div id=host></div><script>document.getElementById('host').attachShadow("
            f"{{mode: '{mode}'}}).innerHTML = '<iframe src=\"{frame_url}\" width=300 height=80></iframe>';</script>"
        ).encode()
        with one_page(outer) as site:
            with BrowserExecutor(BrowserSettings(), secrets={"pw": SECRET}, allowed_origins=[site.url]) as browser:
                browser.goto(site.url + "/")
                browser.page.wait_for_function("document.getElementById('host') !== null")
                frame = next(f for f in browser.page.frames if f.url == frame_url or f.url.startswith("http://localhost"))
                frame.wait_for_selector("#inner")
                frame.focus("#inner")
                outcome = act(browser, action="type", text="<secret>pw</secret>")
                assert outcome.status == "error" and outcome.error is not None
                assert "refused to type the secret pw" in outcome.error and "http://localhost:" in outcome.error
                assert frame.input_value("#inner") == ""


def test_a_page_that_moves_the_focus_to_another_origin_while_keys_arrive_gets_none_of_the_secret_there(chromium):
    """Sent as key events, a 17-character key lost its last 16 characters to a frame of another origin that the
    task's page focused on the first keydown. A secret goes in by a script in the document just checked."""
    from tools.browser import BrowserExecutor, BrowserSettings

    with one_page(INNER) as inner:
        frame_url = inner.url.replace("127.0.0.1", "localhost") + "/form"
        outer = (
            '<!doctype html><body><input id="outer" aria-label="outer field">'
            f'<iframe src="{frame_url}" width="400" height="200"></iframe><script>'
            "const field = document.getElementById('outer'), frame = document.querySelector('iframe');"
            "field.addEventListener('keydown', () => frame.focus());"  # every key: the next goes to the frame
            "field.addEventListener('beforeinput', () => frame.focus());"
            "field.addEventListener('input', e => { field.dataset.inputs = (+field.dataset.inputs || 0) + 1; });"
            "</script></body>"
        ).encode()
        with one_page(outer) as site:
            with BrowserExecutor(BrowserSettings(), secrets={"pw": SECRET}, allowed_origins=[site.url]) as browser:
                browser.goto(site.url + "/login")
                browser.page.frame_locator("iframe").locator("#inner").wait_for()
                browser.page.focus("#outer")
                assert act(browser, action="type", text="<secret>pw</secret>").status == "ok"
                assert browser.page.input_value("#outer") == SECRET  # all of it, where the focus was checked
                assert inner_value(browser) == ""
                # The page saw it typed, a character at a time.
                assert browser.page.eval_on_selector("#outer", "el => el.dataset.inputs") == str(len(SECRET))
                # Text before a secret goes as keys: the first moves the focus, and the secret is then refused.
                browser.page.focus("#outer")
                outcome = act(browser, action="type", text="pin: <secret>pw</secret>")
                assert outcome.status == "error" and outcome.error is not None
                assert "refused to type the secret pw" in outcome.error and "http://localhost:" in outcome.error
                assert SECRET not in inner_value(browser)


def test_a_one_time_code_goes_into_its_boxes_as_typed_keys_would_put_it(chromium):
    # One box a digit, each moving the focus on to the next on input, as one-time code forms do.
    from tools.browser import BrowserExecutor, BrowserSettings

    boxes = "".join(f'<input id="d{i}" maxlength="1" size="1">' for i in range(6))
    page = (
        f"<!doctype html><body>{boxes}<script>const all = [...document.querySelectorAll('input')];"
        "all.forEach((box, i) => box.addEventListener('input', () => { if (box.value && all[i + 1]) all[i + 1].focus(); }));"
        "</script></body>"
    ).encode()
    with one_page(page) as site:
        with BrowserExecutor(BrowserSettings(), secrets={"code": "482913"}, allowed_origins=[site.url]) as browser:
            browser.goto(site.url + "/")
            browser.page.focus("#d0")
            assert act(browser, action="type", text="<secret>code</secret>").status == "ok"
            assert browser.page.evaluate("[...document.querySelectorAll('input')].map(b => b.value).join('')") == "482913"
            # Each box draws its digit as a disc: the focus moved on, and the box after the first showed its part.
            shown = "[...document.querySelectorAll('input')].map(b => getComputedStyle(b).webkitTextSecurity)"
            assert browser.page.evaluate(shown) == ["disc"] * 6
