"""A run folder is untrusted: a recorded screenshot that is corrupt, or a PNG bomb larger than any screen, is
named and worked around by diff, replay and the HTML export; never decoded, never a traceback. Real Chromium
and the real shop (the bundled run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from replays.diff import diff_runs
from replays.replay import replay
from tests.conftest import copy_bundled_run, glassbox_in_process
from tests.tools.test_images import png_bomb
from tracer import RunStatus, read_steps


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, bundled_run) -> tuple[Path, Path, Path]:
    """The bundled run, and a copy of it whose step 3 screenshot is junk and step 4's a 12000x9000 PNG."""
    runs = tmp_path_factory.mktemp("runs")
    source = copy_bundled_run(bundled_run, runs).run_dir
    copy = runs / "damaged-copy"
    shutil.copytree(source, copy)
    record = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**record, "run_id": copy.name}))
    steps = {s.index: s for s in read_steps(copy)}
    (copy / steps[3].screenshot).write_bytes(b"junk, not a PNG")
    (copy / steps[4].screenshot).write_bytes(png_bomb(12000, 9000))
    return runs, source, copy


def test_diff_compares_the_actions_where_a_screen_cannot_be_read_and_says_so(damaged) -> None:
    runs, source, copy = damaged
    result = diff_runs(source, copy)
    assert result.step is None and result.compared == len(read_steps(source))
    assert result.screens_unchecked == [3, 4]
    assert result.unchecked_reason == "damaged-copy/steps/0003/screenshot.png is not an image (no known format)"
    proc = glassbox_in_process("diff", str(source), str(copy), "--runs-dir", str(runs), env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "screens not compared at step(s) 3, 4" in proc.stdout and "no difference over" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_the_html_export_shows_a_placeholder_for_each_unreadable_screenshot(damaged, tmp_path) -> None:
    runs, _source, copy = damaged
    out = tmp_path / "run.html"
    proc = glassbox_in_process("export", "html", str(copy), "--runs-dir", str(runs), "--out", str(out), env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout + proc.stderr
    assert "is not an image" in said and "is 12000x9000 pixels: not a screenshot" in said
    assert out.stat().st_size > 10_000


def test_a_replay_stops_at_the_step_whose_recorded_screenshot_cannot_be_read(damaged) -> None:
    runs, _source, copy = damaged
    result = replay(runs, copy.name)
    assert result.status is RunStatus.failed
    assert "cannot replay recorded step 3: steps/0003/screenshot.png is not an image" in (result.end_reason or "")
    steps = read_steps(result.run_dir)
    assert [s.index for s in steps] == [0, 1, 2, 3]  # 0-2 replayed; 3 records the stop, and nothing is done there
    assert steps[3].action is None and steps[3].reasoning == "The screenshot of recorded step 3 cannot be read."


def test_the_diff_page_says_which_screens_it_could_not_compare(damaged) -> None:
    from fastapi.testclient import TestClient

    from replays.viewer import create_viewer

    runs, source, copy = damaged
    page = TestClient(create_viewer(runs), base_url="http://127.0.0.1").get(f"/diff?a={source.name}&b={copy.name}")
    assert page.status_code == 200, page.text
    assert 'id="unchecked"' in page.text and "Screens not compared at steps 3, 4, only the actions" in page.text
    assert "the same actions." in page.text and "on the same screens" not in page.text


def test_explain_refuses_an_unreadable_screenshot_before_loading_a_model(damaged) -> None:
    from agent.explain import ExplainError, explain_step

    _runs, _source, copy = damaged
    # No model exists at this path: were it loaded first, the error would be that it is missing.
    with pytest.raises(ExplainError, match=r"^steps/0003/screenshot.png is not an image"):
        explain_step(copy, 3, model="/nonexistent/model")
    # Step 4's prompt holds the screenshots of the steps before it too (a script step's, rebuilt): each is checked.
    with pytest.raises(ExplainError, match=r"^steps/0003/screenshot.png is not an image"):
        explain_step(copy, 4, model="/nonexistent/model")
