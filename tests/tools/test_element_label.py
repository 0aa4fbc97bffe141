"""The element under a click names a form control by its label: an empty input shows no text, and the nearest text
OCR finds may be the next field's. Real Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent import load_task, run_task
from replays.viewer import ViewerServer
from tests.conftest import require_chromium
from tests.servers import LocalServer, QuietHandler
from tools.browser import BrowserExecutor, BrowserSettings
from tools.views import MAX_ELEMENT_TEXT
from tracer import read_steps

STYLE = "position:absolute;left:20px;width:200px;height:30px"
PAGE = f"""<!doctype html><title>form</title>
<label for="stock" style="{STYLE};top:0">Stock</label><input id="stock" style="{STYLE};top:40px">
<span id="mail">Email</span><input aria-labelledby="mail" value="a@b.c" style="{STYLE};top:100px">
<input placeholder="Search products" style="{STYLE};top:160px">
<button style="{STYLE};top:220px">Save</button>
<label style="{STYLE};top:280px;height:60px">Quantity <input style="position:absolute;left:100px;top:0;width:80px"></label>
<div id="far" style="{STYLE};top:400px">plain text</div>""".encode()
HOSTILE = b"""<!doctype html><title>hostile</title>
<div style="position:absolute;left:0;top:0;width:400px;height:400px">short</div>
<script>String.prototype.slice = function () { return 'x'.repeat(100000); };</script>"""


class _Page(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.reply(200, HOSTILE if self.path == "/hostile" else PAGE, "text/html; charset=utf-8")


@pytest.fixture
def pages() -> Iterator[str]:
    with LocalServer(_Page) as server:
        yield server.url


def test_a_form_control_is_named_by_its_label(pages) -> None:
    require_chromium()
    with BrowserExecutor(BrowserSettings()) as browser:
        browser.goto(pages)
        found = {y: browser.element_at((100 if y != 290 else 150, y)) for y in (55, 115, 175, 235, 290, 415)}
        seen = {y: (e.tag, e.text, e.label) for y, e in found.items() if e is not None}
        assert seen[55] == ("input", "", "Stock")  # <label for>
        assert seen[115] == ("input", "a@b.c", "Email")  # aria-labelledby; the value is its text
        assert seen[175] == ("input", "", "Search products")  # a placeholder
        assert seen[235] == ("button", "Save", "")  # a button's text is its name: no label repeated
        assert seen[290][0] == "input" and seen[290][2].startswith("Quantity")  # inside its <label>
        assert seen[415] == ("div", "plain text", "")


def test_a_page_cannot_make_the_element_text_long(pages) -> None:
    require_chromium()
    with BrowserExecutor(BrowserSettings()) as browser:
        browser.goto(f"{pages}/hostile")
        element = browser.element_at((100, 100))
        assert element is not None  # the page broke String.prototype.slice, which the browser-side cut uses
        assert max(len(element.tag), len(element.text), len(element.label)) <= MAX_ELEMENT_TEXT


def test_a_click_into_an_empty_field_matches_the_field_named_and_the_viewer_shows_its_label(tmp_path, pages) -> None:
    require_chromium()
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: label\ngoal: fill the stock\n"
        f'target: {{start_url: "{pages}/"}}\n'
        "script:\n"
        "  - {action: left_click, coordinate: [78, 69], note: Click the Stock field}\n"  # (100, 55) in CSS pixels
        "  - {action: terminate, status: success}\n",
        encoding="utf-8",
    )
    result = run_task(load_task(path), runs_dir=tmp_path / "runs")
    first = read_steps(result.run_dir)[0]
    assert first.element is not None and (first.element.tag, first.element.text, first.element.label) == ("input", "", "Stock")
    assert first.consistency is not None and first.consistency.verdict == "match", first.consistency
    with ViewerServer(tmp_path / "runs") as viewer, BrowserExecutor(BrowserSettings()) as browser:
        browser.goto(f"{viewer.url}/runs/{result.run_id}")
        browser.page.keyboard.press("ArrowLeft")  # the run page opens on the last step: to step 0
        row = browser.page.locator("table.kv tr", has_text="element")
        assert row.first.inner_text().split() == ["element", "input", "“”", "labelled", "“Stock”"]
