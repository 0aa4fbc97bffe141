"""The run page in real headless Chromium: one-motion labelling by keyboard, confidence in the filmstrip, live end
of a run, and an unreadable step line that keeps its place."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from replays.viewer import ViewerServer
from tests.conftest import copy_bundled_run
from tools.browser import BrowserExecutor, BrowserSettings
from tracer import RunRecord, RunStatus, RunWriter, StepRecord, StepTimings, read_steps
from tracer.schema import CheckResult, GateRecord

pytestmark = pytest.mark.usefixtures("chromium")

# Known confidences for the bundled run's steps (it has 21): step 4 is the least confident, step 3 has none.
CONFIDENCES = [0.95, 0.7, 0.62, None, 0.15, 0.85, 0.3, 0.9, 0.88, 0.55] + [0.9] * 11
CORRECTED_STEP = 6  # a person answered "Correct" for it before it acted


def rewrite_steps(run_dir: Path, lines: list[str]) -> None:
    (run_dir / "steps.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def with_confidences(run_dir: Path) -> list[StepRecord]:
    """Give the recorded steps the confidences above (and one person's correction), through the step model."""
    steps = read_steps(run_dir)
    assert len(steps) == len(CONFIDENCES)
    changed = []
    for step, confidence in zip(steps, CONFIDENCES, strict=True):
        update: dict = {"confidence": confidence}
        if step.index == CORRECTED_STEP:
            update["gate"] = GateRecord(who="approval", decision="replace", reason="low confidence", answered_by="viewer")
        changed.append(step.model_copy(update=update))
    rewrite_steps(run_dir, [s.model_dump_json() for s in changed])
    return changed


@pytest.fixture(scope="module")
def runs(tmp_path_factory, bundled_run):
    runs = tmp_path_factory.mktemp("runs")
    result = copy_bundled_run(bundled_run, runs)
    with_confidences(result.run_dir)
    return runs, result


@pytest.fixture(scope="module")
def viewer(runs):
    with ViewerServer(runs[0]) as server:
        yield server


@pytest.fixture(scope="module")
def small_page():
    from tests.conftest import require_chromium

    require_chromium()
    with BrowserExecutor(BrowserSettings(viewport=(1366, 768))) as browser:
        yield browser.page


def labels_of(viewer, run_id):
    return httpx.get(f"{viewer.url}/api/runs/{run_id}").json()["labels"]


def in_viewport(page, selector):
    box = page.locator(selector).bounding_box()
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    if box is None:
        return False
    return box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= height and box["x"] + box["width"] <= width


def test_keyboard_labelling_c_w_click_u_survives_reload(viewer, runs, small_page):
    page = small_page
    _, result = runs
    run_id = result.run_id
    page.goto(f"{viewer.url}/runs/{run_id}#step-2")
    page.wait_for_function("document.getElementById('shot').naturalWidth === 1280")
    # The label controls are beside the screenshot and on screen without scrolling, long reasoning or not.
    for control in ("#mark-correct", "#mark-wrong", "#undo-last", "#label-note"):
        assert in_viewport(page, control), control
    page.keyboard.press("c")
    page.wait_for_selector("ul.labels li.correct")
    assert page.inner_text("#film-2 .marks") == "✓"

    page.keyboard.press("j")
    assert page.inner_text("#step-title").startswith("Step 3")
    page.keyboard.press("w")
    assert in_viewport(page, "#shot-wrap")  # the whole screenshot to click is on screen
    for control in ("#mark-correct", "#mark-wrong"):
        assert in_viewport(page, control), control
    box = page.locator("#shot").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.30, box["y"] + box["height"] * 0.60)
    page.wait_for_selector("ul.labels li.wrong")
    assert page.inner_text("#film-3 .marks") == "✗"
    saved = {(lbl["step"], lbl["verdict"]): lbl for lbl in labels_of(viewer, run_id)}
    assert set(saved) == {(2, "correct"), (3, "wrong")}
    x, y = saved[3, "wrong"]["correction"]["coordinate"]
    assert abs(x - 300) <= 2 and abs(y - 600) <= 2
    assert saved[3, "wrong"]["correction"]["action"] == "left_click"

    # Typing in the note is typing, not labelling.
    page.click("#label-note")
    page.keyboard.type("cwu")
    assert page.input_value("#label-note") == "cwu"
    assert len(labels_of(viewer, run_id)) == 2

    page.reload()
    page.wait_for_selector("ul.labels li.wrong")
    assert page.inner_text("#step-title").startswith("Step 3")
    assert page.inner_text("#film-2 .marks") == "✓" and page.inner_text("#film-3 .marks") == "✗"
    page.keyboard.press("u")
    page.wait_for_function("!document.querySelector('ul.labels li')")
    assert [(lbl["step"], lbl["verdict"]) for lbl in labels_of(viewer, run_id)] == [(2, "correct")]
    assert page.inner_text("#film-3 .marks") == ""
    page.keyboard.press("k")
    page.keyboard.press("u")
    page.wait_for_function("!document.querySelector('ul.labels li')")
    assert labels_of(viewer, run_id) == []


def test_a_stale_error_is_cleared_when_a_point_is_picked(viewer, runs, small_page):
    page = small_page
    _, result = runs
    page.goto(f"{viewer.url}/runs/{result.run_id}#step-5")
    page.click("#mark-wrong")
    page.select_option("#fix-action", "type")
    page.click("#fix-save")  # "type" without text: refused by the label API
    page.wait_for_selector("#fix-error:not([hidden])")
    assert "type needs text" in page.inner_text("#fix-error")
    # The attention panel below fills in after its fetch and can move the page by a pixel or two: aim once it is done.
    page.wait_for_selector("#attention-panel:not([aria-busy])", state="attached")
    box = page.locator("#shot").bounding_box()
    # Aimed at click time (Playwright waits for the element to stop moving), not at the box measured before.
    page.locator("#shot").click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
    assert page.locator("#fix-error").is_hidden()
    # Mouse events land on whole CSS pixels and the picture may start at a fractional y: within a pixel of the middle.
    x, y = (int(v) for v in page.inner_text("#fix-point").removeprefix("point ").split(", "))
    assert abs(x - 500) <= 2 and abs(y - 500) <= 2, (x, y)
    page.keyboard.press("Escape")
    assert labels_of(viewer, result.run_id) == []


def test_filmstrip_shows_confidence_bands_marks_and_jumps_to_the_least_confident_step(viewer, runs, small_page):
    page = small_page
    _, result = runs
    page.goto(f"{viewer.url}/runs/{result.run_id}#step-0")
    page.wait_for_selector("#film-20")
    badges = page.eval_on_selector_all(".film .cb", "els => els.map(e => [e.className, e.textContent])")
    expected = [
        ("high" if c >= 0.8 else "medium" if c >= 0.5 else "low", f"{c:.2f}") if c is not None else ("unknown", "?")
        for c in CONFIDENCES
    ]
    assert badges == [[f"cb conf-{band}", text] for band, text in expected]
    assert page.locator(".conf-legend").count() == 1
    assert page.locator(f"#film-{CORRECTED_STEP} .mk.corrected").count() == 1
    assert page.locator(".film .mk.corrected").count() == 1
    meter = page.locator("#conf-meter")
    assert (meter.get_attribute("low"), meter.get_attribute("high"), meter.get_attribute("optimum")) == ("0.5", "0.8", "1")
    page.keyboard.press("l")
    assert page.inner_text("#step-title").startswith("Step 4")
    assert page.evaluate("location.hash") == "#step-4"
    assert page.inner_text(".conf-row .chip") == "low"
    page.keyboard.press("Home")
    page.goto(f"{viewer.url}/runs/{result.run_id}#step-20")
    page.click("#least-btn")
    assert page.inner_text("#step-title").startswith("Step 4")
    assert page.locator("#film-4.sel").count() == 1


def test_an_unreadable_step_line_keeps_its_place_and_labels_land_on_the_right_step(tmp_path, bundled_run, small_page):
    page = small_page
    runs = tmp_path / "runs"
    result = copy_bundled_run(bundled_run, runs)
    lines = (result.run_dir / "steps.jsonl").read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]  # a damaged line, not the last one
    rewrite_steps(result.run_dir, lines)
    with ViewerServer(runs) as viewer:
        page.goto(f"{viewer.url}/runs/{result.run_id}#step-4")
        page.wait_for_selector("#film-20")
        assert page.locator(".film").count() == len(lines)
        assert page.locator(".film.unreadable").count() == 1
        assert page.get_attribute("#film-3", "class").split() == ["film", "unreadable"]
        assert "unreadable" in page.inner_text("#film-3")
        recorded = {s.index: s for s in read_steps(result.run_dir)}
        assert 3 not in recorded and recorded[4].action is not None
        assert page.inner_text("#step-title").startswith(f"Step 4 · {recorded[4].action.action}")
        assert recorded[4].reasoning == page.inner_text("pre.reasoning")
        page.keyboard.press("c")
        page.wait_for_selector("ul.labels li.correct")
        assert [(lbl["step"], lbl["verdict"]) for lbl in labels_of(viewer, result.run_id)] == [(4, "correct")]
        page.keyboard.press("k")
        assert page.inner_text("#step-title") == "Step 3 · unreadable"
        assert "Line 4 of steps.jsonl cannot be read" in page.inner_text("#details")  # counted from 1, as the CLI does
        page.keyboard.press("c")  # nothing to label
        page.keyboard.press("k")
        assert page.inner_text("#step-title").startswith("Step 2")
        assert len(labels_of(viewer, result.run_id)) == 1
        api = httpx.get(f"{viewer.url}/api/runs/{result.run_id}").json()
        assert [s["index"] for s in api["steps"]] == list(range(len(lines)))
        assert api["steps"][3]["unreadable"] == "not JSON" and api["steps"][3]["line"] == 3


def test_a_live_page_shows_new_steps_with_their_crop_and_the_finished_runs_checks_without_reload(
    tmp_path, bundled_run, small_page
):
    page = small_page
    _, recorded = bundled_run
    png = (recorded.run_dir / read_steps(recorded.run_dir)[0].screenshot).read_bytes()
    runs = tmp_path / "runs"
    runs.mkdir()
    record = RunRecord(
        run_id="live-1",
        task_name="live task",
        task_file=None,
        task={"goal": "see it end"},
        policy="script",
        status=RunStatus.running,
        started_at=datetime.now(timezone.utc),
        pid=os.getpid(),
        host=socket.gethostname(),
    )
    with ViewerServer(runs) as viewer:
        writer = RunWriter.create(runs, record)

        def add_step(index: int) -> None:
            screenshot = writer.write_screenshot(index, png, wait=False)
            evidence = writer.evidence.submit(index, png, (1280, 800), (300, 200), 1.0, None)
            writer.write_step(
                StepRecord(
                    index=index,
                    started_at=datetime.now(timezone.utc),
                    timings=StepTimings(),
                    url=None,
                    title=None,
                    screenshot=screenshot,
                    screenshot_size=(1280, 800),
                    policy="script",
                    raw_output=None,
                    reasoning=f"step {index}",
                    action={"action": "left_click", "coordinate": [300, 200]},
                    evidence=evidence,
                    confidence=0.4 + index / 10,
                    outcome="ok",
                )
            )

        add_step(0)
        page.goto(f"{viewer.url}/runs/live-1")
        page.wait_for_selector("#film-0")
        page.evaluate("window.__sameDocument = true")
        assert page.inner_text("#run-status") == "running" and page.locator("#checks li").count() == 0
        add_step(1)
        page.wait_for_selector("#film-1")
        assert page.inner_text("#step-title").startswith("Step 1")
        # The step was announced with its crop on disk: the image loads the first time it is asked for.
        page.wait_for_function("(() => { const i = document.querySelector('img.crop'); return i && i.complete; })()")
        assert page.evaluate("document.querySelector('img.crop').naturalWidth") > 0
        assert page.inner_text("#film-1 .cb") == "0.50"
        with open(writer.run_dir / "steps.jsonl", "ab") as fh:  # a damaged line arrives live, then step 3
            fh.write(b'{"index": 2, "torn\n')
        add_step(3)
        page.wait_for_selector("#film-3")
        assert page.get_attribute("#film-2", "class").split() == ["film", "unreadable"]
        assert page.inner_text("#step-title").startswith("Step 3") and page.inner_text("#film-3 .cb") == "0.70"
        writer.record.checks = [
            CheckResult(type="text", description="the page says done", passed=True, detail="found"),
            CheckResult(type="url", description="the URL ends in /done", passed=False, detail="it is /x"),
        ]
        writer.finish(status=RunStatus.failed, end_reason="a check failed")
        page.wait_for_function("document.getElementById('run-status').textContent === 'failed'")
        page.wait_for_function("document.querySelectorAll('#checks li').length === 2")
        assert page.evaluate("window.__sameDocument") is True  # no reload happened
        assert page.inner_text("#end-reason") == "a check failed"
        checks = page.text_content("#checks")
        assert "✓ the page says done" in checks and "✗ the URL ends in /done" in checks
        assert page.inner_text("#checks-summary") == "checks 1/2 passed"


def test_what_a_model_said_afterwards_shows_in_the_step_panel_and_on_the_screenshot(tmp_path, bundled_run, small_page):
    # glassbox decide records each answer beside the run (tracer.decisions); the page shows it with the step it was
    # asked about, as text (a decision file is untrusted like the rest of the run folder).
    import json

    from tracer.decisions import DECISIONS_DIR

    page = small_page
    runs = tmp_path / "runs"
    result = copy_bundled_run(bundled_run, runs)
    folder = result.run_dir / DECISIONS_DIR
    folder.mkdir()
    hostile = "<img src=x onerror=\"document.title='owned'\">"
    decision = {
        "id": "abcdef012345",
        "step": 2,
        "created_at": "2026-11-27T08:00:00Z",
        "policy": "openai",
        "model": "other-model",
        "prompt_source": "recorded",
        "action": "left_click",
        "coordinate": [250, 500],
        "pixel": [320, 400],
        "confidence": 0.42,
        "reasoning": f"The Sign in button is lower. {hostile}",
        "tool_calls": [{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [250, 500]}}],
    }
    (folder / "step-0002.jsonl").write_text(json.dumps(decision) + "\n")
    with ViewerServer(runs) as server:
        api = httpx.get(f"{server.url}/api/runs/{result.run_id}").json()
        assert [(d["id"], d["step"], d["pixel"]) for d in api["decisions"]] == [("abcdef012345", 2, [320, 400])]
        page.goto(f"{server.url}/runs/{result.run_id}#step-2")
        page.wait_for_selector("#decisions")
        panel = page.inner_text("#decisions")
        assert "Asked afterwards (1)" in panel and "openai · other-model" in panel and "left_click at (320, 400)" in panel
        assert "confidence 0.42" in panel and hostile in panel  # the markup shown as text, never run
        assert page.title() != "owned"
        circle = page.locator("#overlay circle.asked")
        assert (circle.get_attribute("cx"), circle.get_attribute("cy")) == ("320", "400")
        assert page.locator("#t-asked").is_visible()
        page.uncheck("#t-asked")
        assert page.locator("#overlay circle.asked").count() == 0
        page.click("#film-3")  # the next step
        page.wait_for_function("document.getElementById('step-title').textContent.startsWith('Step 3')")
        assert page.locator("#decisions").count() == 0  # only the step it was asked about
        (folder / "step-0002.jsonl").unlink()
        page.reload()
        page.wait_for_selector("#step-title")
        assert not page.locator("#t-asked").is_visible()  # no decisions: no toggle


def test_a_long_unbroken_note_wraps_inside_the_step_panel(tmp_path, bundled_run, small_page):
    from replays.labels import label_step

    runs = tmp_path / "runs"
    result = copy_bundled_run(bundled_run, runs)
    url = "https://tracker.example.invalid/issues/" + "x" * 160  # no break point in 190 characters
    label_step(result.run_dir, 3, "wrong", at=(500, 500), note=url)
    page = small_page
    with ViewerServer(runs) as viewer:
        page.goto(f"{viewer.url}/runs/{result.run_id}#step-3")
        page.wait_for_selector("ul.labels li.wrong")
        panel = page.locator("aside.details").bounding_box()
        shot = page.locator(".shot-col").bounding_box()
    assert panel is not None and shot is not None
    assert panel["width"] <= 440, panel  # its own 400 px and padding, not the note's length
    assert shot["x"] + shot["width"] <= panel["x"] + 1, (shot, panel)  # side by side, not over the screenshot


def test_the_wrong_form_offers_what_a_label_can_hold_and_saves_a_goto_url(viewer, runs, small_page):
    page = small_page
    _, result = runs
    page.goto(f"{viewer.url}/runs/{result.run_id}#step-5")
    page.wait_for_function("document.getElementById('shot').naturalWidth === 1280")
    page.click("#mark-wrong")
    offered = page.eval_on_selector_all("#fix-action option", "os => os.map(o => o.value)")
    assert "scroll" not in offered and "upload_file" not in offered and {"goto_url", "answer"} <= set(offered)
    page.select_option("#fix-action", "goto_url")
    page.fill("#fix-text", "/products")
    page.click("#fix-save")
    page.wait_for_selector("ul.labels li.wrong")
    saved = [lbl for lbl in labels_of(viewer, result.run_id) if lbl["step"] == 5]
    assert saved[-1]["correction"]["action"] == "goto_url" and saved[-1]["correction"]["text"] == "/products"
    page.goto(f"{viewer.url}/runs/{result.run_id}#step-18")  # the upload step: its own file may be the correction
    page.reload()  # only the hash changed
    page.wait_for_selector("#step-title:text('Step 18')")
    page.click("#mark-wrong")
    assert "upload_file" in page.eval_on_selector_all("#fix-action option", "os => os.map(o => o.value)")
