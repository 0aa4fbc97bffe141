"""The run page's OCR: a run recorded with OCR on (Chromium, the shop, rapidocr; one step's note names another
link than the one clicked), its routes (a step's lines, search; nothing outside the run's ocr/ folder, crafted
text returned as data) and the page in real Chromium: boxes drawn, 'Publish' found on the right steps, the
verdict beside the confidence, the mismatch marked in the filmstrip and the graph."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from agent import load_task, run_task
from agent.approval import PENDING_FILE, PendingStep
from replays.viewer import ViewerServer
from tests.agent.test_ocr_run import needs_ocr, variant
from tools.browser import BrowserExecutor, BrowserSettings
from tracer import RunStatus
from tracer.ocr_files import OCR_DIR, read_ocr_step

pytestmark = [pytest.mark.slow, pytest.mark.browser]

HOSTILE = "<img src=x onerror=alert('ocr')></title><script>alert(1)</script>"
MISMATCH_STEP = 6  # clicks New product; its note names Orders
# where the page's screenshots go for a person to look at (e.g. to refresh docs/ocr-layer.png); else a temp folder
SHOTS_ENV = "GLASSBOX_SCREENSHOTS"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str, str]:
    """A runs dir: the OCR run; a copy whose step 0 OCR file was crafted with markup; a copy with OCR off whose
    ocr folder is a link to the first run's (so not read)."""
    needs_ocr()
    folder = tmp_path_factory.mktemp("ocr-layer")

    def edit(data: dict) -> None:
        data["ocr"] = {"enabled": True, "steps": "all", "catch_up_s": 600}
        data["script"] = [
            *data["script"][:5],
            {"action": "left_click", "target": {"role": "link", "name": "Products"}, "note": 'Click "Products"'},
            {"action": "left_click", "target": {"role": "link", "name": "New product"}, "note": "Click the 'Orders' link"},
            {"action": "left_click", "target": {"label": "Product name"}, "note": "Focus the product name field"},
            {"action": "terminate", "status": "success"},
        ]

    runs = folder / "runs"
    result = run_task(load_task(variant(folder, "publish_product.yaml", edit)), runs_dir=runs)
    assert result.status is RunStatus.succeeded, result.end_reason
    run_id = result.run_dir.name

    def copy(name: str) -> Path:
        target = runs / name
        shutil.copytree(result.run_dir, target)
        run = json.loads((target / "run.json").read_text())
        (target / "run.json").write_text(json.dumps({**run, "run_id": name}))
        return target

    crafted = copy("crafted-ocr-run")
    data = json.loads((crafted / OCR_DIR / "step-0000.json").read_text())
    data["lines"] = [{"text": HOSTILE, "box": [10, 10, 300, 40], "score": 0.9}]
    (crafted / OCR_DIR / "step-0000.json").write_text(json.dumps(data))
    held = copy("held-ocr-run")  # as if the run were still going, its step 6 held for a mismatch
    run = json.loads((held / "run.json").read_text())
    (held / "run.json").write_text(json.dumps({**run, "status": "running"}))
    pending = PendingStep(
        id="ab" * 8,
        run_id=held.name,
        step=MISMATCH_STEP,
        screenshot=f"steps/{MISMATCH_STEP:04d}/screenshot.png",
        screenshot_size=(1280, 800),
        css_size=(1280, 800),
        reasoning="Click the 'Orders' link",
        action={"action": "left_click", "coordinate": [918, 148]},
        point=(918, 148),
        confidence=None,
        policy="script",
        why="mismatch",
        why_text="the reasoning names 'Orders' but the point shows 'New product'",
        asked_at=datetime.now(timezone.utc),
        timeout_s=600,
        on_timeout="skip",
    )
    (held / PENDING_FILE).write_text(pending.model_dump_json())
    linked = copy("linked-ocr-run")
    shutil.rmtree(linked / OCR_DIR)
    (linked / OCR_DIR).symlink_to(result.run_dir / OCR_DIR, target_is_directory=True)
    return runs, run_id, crafted.name, linked.name


@pytest.fixture(scope="module")
def viewer(recorded):
    with ViewerServer(recorded[0]) as server:
        yield server


def publish_steps(run_dir: Path, count: int) -> list[int]:
    """The steps whose OCR lines say 'publish' (any case), read from the files themselves."""
    found = []
    for i in range(count):
        record = read_ocr_step(run_dir, i)
        assert record is not None, i
        if any("publish" in line.text.casefold() for line in record.lines):
            found.append(i)
    return found


def test_a_steps_lines_and_verdict_are_served(viewer, recorded) -> None:
    runs, run_id, _, _ = recorded
    view = httpx.get(f"{viewer.url}/api/runs/{run_id}/ocr/steps/4").json()
    assert view["status"] == "done" and view["engine"] == "rapidocr"
    assert view["runtime"] and view["runtime"].split()[0] in ("openvino", "onnxruntime")  # from ocr/index.json
    assert "Sign in" in [line["text"] for line in view["lines"]]
    mismatch = httpx.get(f"{viewer.url}/api/runs/{run_id}/ocr/steps/{MISMATCH_STEP}").json()
    assert mismatch["verdict"]["verdict"] == "mismatch" and mismatch["verdict"]["claimed"] == ["Orders"]
    payload = httpx.get(f"{viewer.url}/api/runs/{run_id}").json()
    assert [int(i) for i, v in payload["verdicts"].items() if v["verdict"] == "mismatch"] == [MISMATCH_STEP]
    past_end = httpx.get(f"{viewer.url}/api/runs/{run_id}/ocr/steps/99").json()
    assert past_end["status"] == "not_done" and past_end["lines"] == []


def test_search_finds_publish_on_the_form_steps_only(viewer, recorded) -> None:
    runs, run_id, _, _ = recorded
    expected = publish_steps(runs / run_id, 9)
    assert expected and 0 not in expected and expected[-1] == 8  # the form shows its Publish button; the login page does not
    found = httpx.get(f"{viewer.url}/api/runs/{run_id}/ocr/search", params={"q": "PUBLISH"}).json()
    assert [hit["step"] for hit in found["hits"]] == expected and found["steps_read"] == 9
    assert all(any("publish" in t.casefold() for t in hit["texts"]) for hit in found["hits"])
    none = httpx.get(f"{viewer.url}/api/runs/{run_id}/ocr/search", params={"q": "zzqx-not-there"}).json()
    assert none["hits"] == [] and none["status"] == "searched"


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/{run}/ocr/steps/..%2F..%2Frun.json",
        "/api/runs/{run}/ocr/steps/-1",
        "/api/runs/..%2F{run}/ocr/steps/0",
        "/api/runs/{run}/ocr/steps/0%2F..%2F..%2Frun.json",
        "/api/runs/{run}/ocr/search?q=" + "x" * 101,
        "/api/runs/{run}/ocr/search?q=",
    ],
)
def test_traversal_and_bad_input_are_refused(viewer, recorded, path: str) -> None:
    response = httpx.get(viewer.url + path.format(run=recorded[1]))
    assert response.status_code in (400, 404), response.text  # a bad parameter, or no such run
    assert "task_name" not in response.text and "lines" not in response.text  # nothing of a run file came back


def test_an_ocr_folder_that_is_a_link_is_not_read(viewer, recorded) -> None:
    linked = recorded[3]
    assert httpx.get(f"{viewer.url}/api/runs/{linked}/ocr/steps/4").json()["status"] == "off"
    assert httpx.get(f"{viewer.url}/api/runs/{linked}/ocr/search", params={"q": "sign"}).json()["status"] == "off"


def test_crafted_markup_is_returned_as_data(viewer, recorded) -> None:
    crafted = recorded[2]
    response = httpx.get(f"{viewer.url}/api/runs/{crafted}/ocr/steps/0")
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["lines"][0]["text"] == HOSTILE


@pytest.mark.parametrize("viewport", [(1440, 900), (1366, 768)])
def test_the_run_page_draws_boxes_finds_text_and_shows_the_verdict(viewer, recorded, viewport) -> None:
    runs, run_id, crafted, linked = recorded
    expected = publish_steps(runs / run_id, 9)
    with BrowserExecutor(BrowserSettings(viewport=viewport)) as browser:
        page = browser.page
        errors: list[str] = []
        dialogs: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{viewer.url}/runs/{run_id}#step-{MISMATCH_STEP}")
        page.wait_for_selector("#ocr-status[data-status='done']")
        verdict = page.locator("#verdict")
        assert "mismatch" in verdict.locator(".chip").inner_text()
        text = verdict.inner_text()
        assert "“Orders”" in text and "OCR under “New product”" in text
        assert page.locator(f"#film-{MISMATCH_STEP} .mk.mismatch").count() == 1
        assert page.locator(".film .mk.mismatch").count() == 1
        assert "mismatch" in (page.locator(f"#graph-step-{MISMATCH_STEP}").get_attribute("class") or "")
        assert "≠" in page.locator(".marks-key").inner_text() and "≠" in page.locator(".graph-key").inner_text()
        # the layer: one outline per OCR line, each with its text as the hover title
        lines = read_ocr_step(runs / run_id, MISMATCH_STEP).lines  # type: ignore[union-attr]
        assert page.locator("#ocr-overlay rect.ocr-line").count() == 0
        page.check("#t-ocr")
        assert page.locator("#ocr-overlay rect.ocr-line").count() == len(lines)
        titles = page.locator("#ocr-overlay rect.ocr-line title").all_text_contents()
        assert [t.rsplit(" (score", 1)[0] for t in titles] == [line.text for line in lines]
        # search: the steps showing Publish, and its box highlighted on the selected one
        page.fill("#ocr-q", "publish")
        page.press("#ocr-q", "Enter")
        page.wait_for_selector("#ocr-hits .ocr-hit")
        assert [int(s) for s in page.locator("#ocr-hits .ocr-hit").evaluate_all("bs => bs.map(b => b.dataset.step)")] == expected
        page.locator(f"#ocr-hits .ocr-hit[data-step='{expected[-1]}']").click()
        page.wait_for_function(f"location.hash === '#step-{expected[-1]}'")
        page.wait_for_selector("#ocr-overlay rect.ocr-line.hit")
        hit_titles = page.locator("#ocr-overlay rect.hit title").all_text_contents()
        assert hit_titles and all("publish" in t.casefold() for t in hit_titles)
        assert page.locator("#ocr-overlay rect.ocr-line").count() > len(hit_titles)  # the rest stay outlined
        page.click(f"#film-{MISMATCH_STEP}")  # back to the mismatch: its verdict, the layer, the search's matches
        page.wait_for_selector("#verdict .verdict-mismatch")
        page.wait_for_function(f"document.querySelectorAll('#ocr-overlay rect.ocr-line').length === {len(lines)}")
        name = f"ocr-layer-{viewport[0]}x{viewport[1]}.png"
        page.screenshot(path=str(Path(os.environ.get(SHOTS_ENV) or runs.parent) / name))
        # the run with OCR off says so; a crafted line is text, never markup
        page.goto(f"{viewer.url}/runs/{crafted}#step-0")
        page.wait_for_selector("#ocr-status[data-status='done']")
        page.check("#t-ocr")
        assert page.locator("#ocr-overlay rect.ocr-line title").all_text_contents() == [f"{HOSTILE} (score 0.90)"]
        assert page.locator("#ocr-overlay img, #ocr-overlay script").count() == 0
        page.goto(f"{viewer.url}/runs/{linked}#step-4")  # its ocr folder is a link: not read
        page.wait_for_selector("#ocr-status[data-status='off']")
        assert page.inner_text("#ocr-status") == "OCR off" and page.locator("#ocr-overlay rect").count() == 0
        assert not errors and not dialogs, (errors, dialogs)


def test_a_step_held_for_a_mismatch_says_so(viewer, recorded) -> None:
    with BrowserExecutor(BrowserSettings(viewport=(1366, 768))) as browser:
        page = browser.page
        page.goto(f"{viewer.url}/runs/held-ocr-run")
        page.wait_for_selector("#pending:not([hidden])")
        assert page.inner_text("#pending-why") == "text at the point does not match"
        assert "names 'Orders'" in (page.get_attribute("#pending-why", "title") or "")
