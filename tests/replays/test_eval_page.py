"""The eval pages in real headless Chromium, over evals really run (the built-in MiniWoB++ suite, 2 tasks x 2 seeds):
the grid links every episode to its run, compare lists a flipped episode first with the step where its runs
first differ, unknown and traversal ids are a small 404 page, damaged lines of episodes.jsonl do not break the
page, and a huge eval is shown a page of episodes at a time."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from evals.miniwob import build_suite
from evals.runner import EvalOutcome, run_eval
from evals.stats import wilson_interval
from evals.suite import load_suite
from replays.viewer import ViewerServer
from replays.viewer.evals import GRID_PAGE, short_labels
from tools.browser import BrowserExecutor, BrowserSettings
from tracer.evals import EPISODES_FILE, read_eval_events

pytestmark = pytest.mark.usefixtures("chromium_module")

BROKEN = "enter-text.s1.r0"  # the episode eval B breaks: it types the wrong text at step 1


@pytest.fixture(scope="module")
def chromium_module():
    from tests.conftest import require_chromium

    require_chromium()
    if importlib.util.find_spec("miniwob") is None:
        pytest.skip("needs the miniwob package (its task pages): pip install -e .[eval]")


@pytest.fixture(scope="module")
def evals(tmp_path_factory, chromium_module) -> tuple[Path, EvalOutcome, EvalOutcome]:
    """Eval A: click-test and enter-text on seeds 0 and 1, all succeed. Eval B: the same suite with the
    enter-text seed 1 demonstration typing the wrong text, so that one episode flips."""
    base = tmp_path_factory.mktemp("evalpage")
    runs = base / "runs"
    suite_a = build_suite(base / "suite-a", tasks=["click-test", "enter-text"], seeds=[0, 1])
    shutil.copytree(suite_a.parent, base / "suite-b")
    # One task file runs every seed: a value setup reads ({seed} filled in) spoils the typed text on seed 1 only.
    broken = base / "suite-b" / "enter-text.yaml"
    spec = yaml.safe_load(broken.read_text(encoding="utf-8"))
    spec["setup"].append({"js": "{seed} === 1 ? 'zz' : ''", "save_as": "spoil"})
    typing = next(step for step in spec["script"] if step.get("text") == "{text}")
    typing["text"] = "{text}{spoil}"
    broken.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    a = run_eval(load_suite(suite_a), runs_dir=runs, workers=2, eval_id="eval-a")
    b = run_eval(load_suite(base / "suite-b" / "suite.yaml"), runs_dir=runs, workers=2, eval_id="eval-b")
    assert [r.status for r in a.results] == ["succeeded"] * 4
    assert {r.episode_id: r.status for r in b.results}[BROKEN] == "failed"
    return runs, a, b


@pytest.fixture(scope="module")
def viewer(evals):
    runs, _, _ = evals
    with ViewerServer(runs) as server:
        yield server


@pytest.fixture(scope="module")
def page(chromium_module):
    with BrowserExecutor(BrowserSettings(viewport=(1440, 900))) as browser:
        yield browser.page


def _interval(successes: int, n: int) -> str:
    interval = wilson_interval(successes, n)
    assert interval is not None
    return f"{interval[0] * 100:.1f} % – {interval[1] * 100:.1f} %"


def test_short_labels_tell_a_rows_episodes_apart() -> None:
    assert short_labels(["click-test-s0.s-.r0", "click-test-s1.s-.r0"]) == ["s0", "s1"]
    assert short_labels(["shop.s3.r0", "shop.s3.r1"]) == ["r0", "r1"]
    assert short_labels(["publish-product.s7.r0"]) == ["s7"]
    assert short_labels(["publish-product.s-.r0"]) == ["run"]  # not "product", a piece of the task's name
    assert short_labels(["animated-menu.s-.r0"]) == ["run"]


def test_evals_list_is_linked_from_the_runs_page_newest_first(viewer, evals, page):
    page.goto(viewer.url + "/")
    page.click("header.top a[href='/evals']")
    page.wait_for_url(viewer.url + "/evals")
    rows = page.locator("table.evals tbody tr")
    texts = [rows.nth(i).inner_text() for i in range(rows.count())]
    assert [t.split()[0] for t in texts][:2] == ["eval-b", "eval-a"]  # eval-b finished last
    newest, oldest = texts[0], texts[1]
    assert "75.0 % (3/4)" in newest and _interval(3, 4) in newest
    assert "100.0 % (4/4)" in oldest and _interval(4, 4) in oldest
    assert rows.nth(0).locator("a").get_attribute("href") == "/evals/eval-b"


def test_eval_page_shows_the_summary_and_links_every_episode_to_its_run(viewer, evals, page):
    runs, _, b = evals
    page.goto(viewer.url + "/evals/eval-b")
    summary = page.inner_text("#summary")
    assert "75.0 %" in summary and "3 of 4" in summary and _interval(3, 4) in summary
    rows = page.locator("#grid tbody tr")
    assert [rows.nth(i).locator("th .task").inner_text() for i in range(rows.count())] == [
        "miniwob.click-test",
        "miniwob.enter-text",
    ]
    cells = page.locator("#grid .cell")
    assert cells.count() == 4
    by_episode = {r.episode_id: r for r in b.results}
    for i in range(4):
        cell = cells.nth(i)
        result = by_episode[cell.get_attribute("data-episode") or ""]
        assert cell.get_attribute("href") == f"/runs/{result.run_id}"
        assert cell.get_attribute("class") == f"cell st-{result.status}"
        title = cell.get_attribute("title") or ""
        assert f"{result.steps} step" in title and f"{result.seconds:.1f} s" in title
    assert [cells.nth(i).inner_text() for i in range(4)] == ["s0", "s1", "s0", "s1"]
    page.click(f"#grid .cell[data-episode='{BROKEN}']")
    page.wait_for_url(f"{viewer.url}/runs/{by_episode[BROKEN].run_id}")
    assert page.inner_text("#run-status") == "failed"


def test_compare_lists_the_flipped_episode_first_with_its_first_differing_step(viewer, evals, page):
    _, a, b = evals
    run_a = next(r.run_id for r in a.results if r.episode_id == BROKEN)
    run_b = next(r.run_id for r in b.results if r.episode_id == BROKEN)
    page.goto(viewer.url + "/evals")
    page.click("form.compare-form button")  # the form offers the newest two: A = the older, B = the newer
    page.wait_for_url("**/evals/compare?a=eval-a&b=eval-b")
    assert "4 episodes in both · 1 broke" in page.inner_text("#tally")
    rows = page.locator("#compare tbody tr")
    assert rows.count() == 4
    first = rows.nth(0)
    assert first.get_attribute("data-episode") == BROKEN and first.get_attribute("data-change") == "broke"
    assert [rows.nth(i).get_attribute("data-change") for i in range(1, 4)] == ["same"] * 3
    cells = first.locator("td")
    assert cells.nth(2).inner_text() == "succeeded" and cells.nth(3).inner_text() == "failed"
    diff = cells.nth(4).inner_text()
    assert "step 1: different text" in diff and "zz" in diff
    assert first.locator("a", has_text="A at step 1").get_attribute("href") == f"/runs/{run_a}#step-1"
    assert first.locator("a", has_text="B at step 1").get_attribute("href") == f"/runs/{run_b}#step-1"
    assert first.locator("a", has_text="screens and actions").get_attribute("href") == f"/diff?a={run_a}&b={run_b}"
    first.locator("a", has_text="B at step 1").click()
    page.wait_for_function("/Step 1/.test(document.getElementById('step-title')?.textContent)")
    assert '"type"' in page.inner_text("pre.tool")


def test_an_unknown_eval_is_a_small_404_page(viewer, page):
    response = page.goto(viewer.url + "/evals/no-such-eval")
    assert response is not None and response.status == 404
    assert page.inner_text("h1") == "404 Not Found"
    assert "no eval 'no-such-eval' in the runs folder" in page.inner_text("body")


@pytest.mark.parametrize(
    "path",
    [
        "/evals/..%2F..%2Fetc",
        "/evals/%2e%2e",
        "/evals/.hidden",
        "/evals/miniwob-tasks",  # a folder under evals/ that is not an eval
        "/evals/eval-a%0A",
        "/evals/outside",  # a link out of the runs folder to a copy of a real eval
        "/evals/compare?a=eval-a&b=..%2Feval-a",
        "/evals/compare?a=nope&b=eval-a",
    ],
)
def test_traversal_and_odd_ids_are_404(viewer, evals, path, tmp_path):
    runs, _, _ = evals
    link = runs / "evals" / "outside"
    if not link.is_symlink():
        shutil.copytree(runs / "evals" / "eval-a", tmp_path / "elsewhere")
        os.symlink(tmp_path / "elsewhere", link)
    (runs / "evals" / "miniwob-tasks").mkdir(exist_ok=True)
    with httpx.Client(base_url=viewer.url, headers={"Accept": "text/html"}) as client:
        response = client.send(client.build_request("GET", path))
    assert response.status_code == 404, (path, response.status_code, response.text[:200])
    assert "<h1>404 Not Found</h1>" in response.text and "Back to the runs" in response.text


def test_a_damaged_line_does_not_break_the_page(viewer, evals, page):
    runs, a, _ = evals
    folder = runs / "evals" / "eval-damaged"
    shutil.copytree(runs / "evals" / "eval-a", folder)
    lines = (folder / EPISODES_FILE).read_bytes().split(b"\n")
    hostile = json.loads(next(line for line in lines if b'"finished"' in line))
    hostile.update(episode_id="<img src=x id=pwned>", task_name="<b>hostile</b>", run_id="../../etc")
    lines[1:1] = [b'{"event": "finished", "episode_id": 7', b"\xff\xfe not json", json.dumps(hostile).encode()]
    (folder / EPISODES_FILE).write_bytes(b"\n".join(lines) + b'{"torn last li')
    assert read_eval_events(folder).unreadable == 2

    page.goto(viewer.url + "/evals/eval-damaged")
    assert "2 lines of episodes.jsonl could not be read" in page.inner_text("#unreadable")
    assert page.locator("#grid a.cell").count() == 4  # every episode of the plan, still linked to its run
    assert page.locator("#pwned").count() == 0 and page.locator("#grid b").count() == 0
    odd = page.locator("#grid span.cell")  # the hostile line's episode: shown as text, with no link to follow
    assert odd.count() == 1 and odd.get_attribute("data-episode") == "<img src=x id=pwned>"
    assert "<b>hostile</b>" in page.inner_text("#grid")
    # summary.json (copied) counts the 4 episodes of eval-a; the figures say they are behind the file
    assert "count 4 finished episodes; episodes.jsonl holds 5" in page.inner_text("#summary-behind")
    # the runs index has never heard of this eval: the list finds its folder
    page.goto(viewer.url + "/evals")
    assert page.locator("table.evals a[href='/evals/eval-damaged']").count() == 1


def test_a_huge_eval_is_shown_a_page_of_episodes_at_a_time(viewer, evals):
    runs, a, _ = evals
    folder = runs / "evals" / "eval-huge"
    folder.mkdir()
    record = a.results[0]
    total = GRID_PAGE + 7
    with open(folder / EPISODES_FILE, "w", encoding="utf-8") as out:
        for i in range(total):
            out.write(record.model_copy(update={"episode_id": f"many.s{i}.r0"}).model_dump_json() + "\n")
    with httpx.Client(base_url=viewer.url, headers={"Accept": "text/html"}) as client:
        first = client.get("/evals/eval-huge")
        second = client.get("/evals/eval-huge?page=2")
    assert first.status_code == 200 and second.status_code == 200
    assert first.text.count('class="cell st-') == GRID_PAGE and second.text.count('class="cell st-') == 7
    assert f"Showing episodes 1–{GRID_PAGE} of {total}" in first.text
    assert f"Showing episodes {GRID_PAGE + 1}–{total} of {total}" in second.text


def test_viewer_pages_load_with_no_failed_request_and_no_console_error(viewer, evals, page):
    """A browser with a tab strip asks every page for its icon, and /favicon.ico was a 404: a console error on each
    page. (Headless Chromium asks for none, so the page's declared icon is fetched here.)"""
    failed: list[str] = []
    errors: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    for path in ("/", "/evals", "/evals/eval-a"):
        page.goto(viewer.url + path)
        page.wait_for_load_state("load")
    page.wait_for_timeout(300)  # the icon is asked for after the page
    assert failed == [] and errors == []
    icon = page.request.get(page.eval_on_selector("link[rel=icon]", "link => link.href"))
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
