"""In real Chromium: the runs page shows each run's lowest confidence, sorts least confident first, and updates
without a reload while a run starts, records and finishes; the run page's graph follows the selected step."""

from __future__ import annotations

import pytest

from replays.viewer import ViewerServer
from tests.conftest import copy_bundled_run
from tests.tracer.test_index_confidence import write_run
from tests.tracer.test_store import record, step
from tools.browser import BrowserExecutor, BrowserSettings
from tracer import RunStatus, RunWriter, read_steps

pytestmark = pytest.mark.usefixtures("chromium")


@pytest.fixture
def page():
    with BrowserExecutor(BrowserSettings(viewport=(1366, 768))) as browser:
        yield browser.page


def rows(page) -> list[str]:
    return page.eval_on_selector_all("#runs-rows tr[data-run]", "trs => trs.map(t => t.dataset.run)")


def test_runs_page_sorts_least_confident_first_and_shows_the_band_word(tmp_path, page) -> None:
    write_run(tmp_path, "high", [0.95], minutes_ago=1)
    write_run(tmp_path, "low", [0.9, 0.12], minutes_ago=3)
    write_run(tmp_path, "script", [None], minutes_ago=0)
    write_run(tmp_path, "medium", [0.6], minutes_ago=2)
    with ViewerServer(tmp_path) as viewer:
        page.goto(viewer.url + "/")
        assert rows(page) == ["script", "high", "medium", "low"]
        assert page.inner_text("tr[data-run='low'] td.lowest") == "0.12 low step 1"
        assert page.inner_text("tr[data-run='script'] td.lowest") == "unknown"
        assert page.get_attribute("tr[data-run='low'] td.lowest a", "href") == "/runs/low#step-1"
        page.select_option("#order", "least_confident")  # applies at once
        page.wait_for_url("**order=least_confident**")
        assert rows(page) == ["low", "medium", "high", "script"]
        assert page.inner_text("tr[data-run='medium'] td.lowest") == "0.60 medium step 0"


def test_runs_page_updates_without_reload_as_a_run_starts_records_and_ends(tmp_path, page) -> None:
    write_run(tmp_path, "older", [0.9], minutes_ago=5)
    with ViewerServer(tmp_path) as viewer:
        page.goto(viewer.url + "/")
        assert rows(page) == ["older"]
        assert page.inner_text("#runs-total") + " " + page.inner_text("#runs-noun") == "1 run"
        page.evaluate("window.__sameDocument = true")
        writer = RunWriter.create(tmp_path, record("fresh"))
        try:
            page.wait_for_selector("tr[data-run='fresh'][data-status='running']", timeout=15000)
            assert page.inner_text("#runs-total") == "2"
            assert page.inner_text("#runs-noun") == "runs"
            writer.write_step(step(0).model_copy(update={"confidence": 0.35}))
            page.wait_for_function(
                "document.querySelector(\"tr[data-run='fresh'] td.lowest\").innerText.trim() === '0.35 low step 0'",
                timeout=15000,
            )
        finally:
            writer.finish(status=RunStatus.succeeded, end_reason="done")
        page.wait_for_selector("tr[data-run='fresh'][data-status='succeeded']", timeout=15000)
        assert rows(page) == ["fresh", "older"]
        assert page.evaluate("window.__sameDocument") is True  # never reloaded


def test_graph_cards_follow_the_selected_step_and_select_it(tmp_path, bundled_run, page) -> None:
    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    steps = read_steps(result.run_dir)
    assert len(steps) == 21
    with ViewerServer(tmp_path / "runs") as viewer:
        page.goto(f"{viewer.url}/runs/{result.run_id}#step-3")
        page.wait_for_selector("#graph-step-3.sel")
        assert page.get_attribute("#graph svg.graph", "data-rows") == "4"
        box = page.locator("#graph svg.graph").bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1366  # no sideways scrolling at 1366 px
        page.keyboard.press("ArrowRight")
        page.wait_for_selector("#graph-step-4.sel")
        assert page.locator("#graph .gstep.sel").count() == 1
        page.locator("#graph-step-7").click()
        page.wait_for_selector("#graph-step-7.sel")
        assert "Step 7" in page.inner_text("#step-title")
        title = page.locator("#graph-step-7 title").text_content() or ""
        assert "confidence: unknown" in title and (steps[7].reasoning or "")[:40] in title
        page.click("#mark-correct")  # a label given on the page marks the step's card without a reload
        page.wait_for_selector("#graph-step-7.labelled-correct", timeout=15000)
        assert "✓" in (page.locator("#graph-step-7 text.head").text_content() or "")


def test_a_live_runs_graph_grows_with_its_steps(tmp_path, page) -> None:
    writer = RunWriter.create(tmp_path, record("live"))
    try:
        writer.write_step(step(0).model_copy(update={"confidence": 0.9}))
        with ViewerServer(tmp_path) as viewer:
            page.goto(f"{viewer.url}/runs/live")
            page.wait_for_selector("#graph-step-0.sel")
            writer.write_step(step(1).model_copy(update={"confidence": 0.2}))
            page.wait_for_selector("#graph-step-1[data-band='low']", timeout=15000)
            page.wait_for_selector("#graph-step-1.sel")  # the page follows the newest step, and so does the graph
            assert page.locator("#graph .gstep").count() == 2
    finally:
        writer.finish(status=RunStatus.succeeded, end_reason="done")
