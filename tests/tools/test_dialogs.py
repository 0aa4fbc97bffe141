"""JavaScript dialogs (alert, confirm, prompt): never on a screenshot, so each is answered at once as the task's
``browser.dialogs`` says, recorded in the step, shown on its terminal line and told to the model. Real Chromium."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import load_task
from agent.prompt import tool_response
from agent.task import TaskError
from replays.playwright_export import export_playwright
from replays.viewer import ViewerServer
from tests.conftest import require_chromium
from tests.servers import one_page
from tests.tools.page_events import click, run_one_click
from tools.browser import BrowserExecutor, BrowserSettings

PAGE = b"""<!doctype html><title>start</title>
<button id="delete" style="position:absolute;left:0;top:0;width:600px;height:300px"
  onclick="document.title = confirm('Delete the lamp?') ? 'deleted' : 'kept'">Delete</button>
<button id="name" style="position:absolute;left:0;top:400px;width:600px;height:300px"
  onclick="document.title = 'name ' + prompt('New name?', 'Lamp')">Rename</button>"""


@pytest.fixture
def pages() -> Iterator[str]:
    with one_page(PAGE) as server:
        yield server.url


@pytest.mark.parametrize(("answer", "title", "renamed"), [("dismiss", "kept", "name null"), ("accept", "deleted", "name Lamp")])
def test_a_dialog_is_answered_as_the_task_says_and_recorded(pages, answer, title, renamed) -> None:
    require_chromium()
    with BrowserExecutor(BrowserSettings(dialogs=answer)) as browser:
        browser.goto(pages)
        outcome = click(browser, 200, 100)  # model coordinates: 0..1000
        assert outcome.status == "ok" and browser.perceive().title == title
        [dialog] = outcome.dialogs
        assert (dialog.kind, dialog.message, dialog.answer) == ("confirm", "Delete the lamp?", answer + "ed")
        outcome = click(browser, 200, 800)
        assert [d.kind for d in outcome.dialogs] == ["prompt"] and browser.perceive().title == renamed
        assert click(browser, 900, 900).dialogs == []  # taken once: the next action starts afresh


EDITOR = b"""<!doctype html><title>editor</title>
<input style="position:absolute;left:0;top:0;width:1280px;height:400px">
<script>addEventListener('beforeunload', e => { e.preventDefault(); e.returnValue = ''; });</script>"""


@pytest.mark.parametrize("answer", ["dismiss", "accept"])
def test_goto_url_from_a_page_that_asks_to_confirm_leaving_says_what_happened(answer) -> None:
    """Playwright says only net::ERR_ABORTED when a leave-page dialog is dismissed: the step says why it stayed."""
    require_chromium()
    from tools.actions import ToolCall, parse_tool_call

    with one_page(EDITOR) as server, BrowserExecutor(BrowserSettings(dialogs=answer), allowed_origins=[server.url]) as browser:
        browser.goto(server.url + "/edit")
        click(browser, 500, 200)  # a page asks only after a person interacted with it
        goto = parse_tool_call(ToolCall(name="goto_url", arguments={"url": server.url + "/elsewhere"}))
        outcome = browser.act(goto)
        assert [(d.kind, d.answer) for d in outcome.dialogs] == [("beforeunload", answer + "ed")]  # in this step
        if answer == "dismiss":
            assert outcome.status == "error"
            assert outcome.error == (
                "the page asked to confirm leaving it (unsaved changes?) and the dialog was dismissed "
                f"(browser.dialogs: dismiss), so it stayed on {server.url}/edit"
            )
        else:
            assert outcome.status == "ok" and browser.perceive().url == server.url + "/elsewhere"


def test_a_run_records_the_dialog_and_tells_the_model(tmp_path: Path, pages) -> None:
    require_chromium()
    run_id, (first, last) = run_one_click(tmp_path, f"{pages}/", (200, 100))
    assert [(d.kind, d.message, d.answer) for d in first.dialogs] == [("confirm", "Delete the lamp?", "dismissed")]
    assert last.dialogs == [] and last.title == "kept"
    told = tool_response(first)
    assert "A confirm dialog said 'Delete the lamp?'; it was dismissed." in told
    with ViewerServer(tmp_path / "runs") as viewer, BrowserExecutor(BrowserSettings()) as browser:
        browser.goto(f"{viewer.url}/runs/{run_id}")
        browser.page.keyboard.press("ArrowLeft")  # the run page opens on the last step: to step 0
        row = browser.page.locator("table.kv tr", has_text="dialogs")
        assert row.inner_text().split() == ["dialogs", "confirm", "“Delete", "the", "lamp?”", "·", "dismissed"]
    # The exported Playwright script answers it the same way, and says so.
    script = tmp_path / "replay.py"
    export_playwright(tmp_path / "runs" / run_id, script)
    replayed = subprocess.run([sys.executable, str(script), "--base-url", pages], capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    assert "confirm dialog: 'Delete the lamp?' dismissed" in replayed.stdout


def test_the_setting_is_checked_where_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        'name: d\ngoal: g\ntarget: {start_url: "http://127.0.0.1:9/"}\nbrowser: {dialogs: maybe}\n'
        "script: [{action: terminate, status: success}]\n",
        encoding="utf-8",
    )
    with pytest.raises(TaskError, match=r"line 4: browser\.dialogs"):
        load_task(path)
