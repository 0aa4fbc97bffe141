"""The diff page in real Chromium: two runs step by step, both screenshots at one size with their markers, the first
difference (the one ``glassbox diff`` prints) highlighted and scrolled to, linked from the replay and the original."""

from __future__ import annotations

import os
import re

import pytest

from replays.diff import diff_runs, line_up
from replays.replay import replay
from tests.conftest import copy_bundled_run, glassbox_in_process
from tools.browser import BrowserExecutor, BrowserSettings
from tracer import RunStatus, read_steps

pytestmark = pytest.mark.usefixtures("chromium")
SHOTS = os.environ.get("GLASSBOX_DIFF_SHOTS")  # a folder: save the page's screenshots there (for docs/)


@pytest.fixture(scope="module")
def branch(tmp_path_factory, bundled_run):
    """The bundled run and a replay of it on another layout, where the script takes over from the divergence."""
    runs = tmp_path_factory.mktemp("diff") / "runs"
    source = copy_bundled_run(bundled_run, runs)
    fork = replay(runs, source.run_id, fallback="policy", layout_seed=3)
    assert fork.status is RunStatus.succeeded, fork.end_reason
    return runs, source, fork


def test_the_line_up_pairs_steps_by_index_and_marks_the_first_difference(branch):
    runs, source, fork = branch
    first = diff_runs(source.run_dir, fork.run_dir)
    assert first.step is not None
    rows = line_up(read_steps(source.run_dir), read_steps(fork.run_dir), first)
    assert [r.step for r in rows] == list(range(max(source.steps, fork.steps)))
    [marked] = [r for r in rows if r.note == first.reason]
    assert marked.step == first.step and not marked.same
    assert all(r.same for r in rows[: first.step])  # before it, the same actions and outcomes
    for side in (marked.a, marked.b):
        assert side is not None and "{" not in side.action  # words, no dict


def test_the_terminal_names_the_same_first_difference_in_words(branch):
    runs, source, fork = branch
    first = diff_runs(source.run_dir, fork.run_dir)
    proc = glassbox_in_process("diff", source.run_id, fork.run_id, "--runs-dir", str(runs), env={"COLUMNS": "200"})
    assert proc.returncode == 1, proc.stderr
    assert f"first difference at step {first.step}: {first.reason}" in proc.stdout
    assert "{'" not in proc.stdout and '{"' not in proc.stdout


@pytest.mark.parametrize("size", [(1440, 900), (1366, 768)])
def test_the_diff_page_from_a_replay_lines_the_runs_up(branch, size):
    from replays.viewer import ViewerServer

    runs, source, fork = branch
    first = diff_runs(source.run_dir, fork.run_dir)
    with ViewerServer(runs) as viewer, BrowserExecutor(BrowserSettings(viewport=size)) as browser:
        page = browser.page
        # The original lists its replay with a link to the comparison; the replay links back to its original.
        page.goto(f"{viewer.url}/runs/{source.run_id}")
        assert page.locator(f"#branches a[href='/runs/{fork.run_id}']").count() == 1
        page.goto(f"{viewer.url}/runs/{fork.run_id}")
        page.click("#compare-original", timeout=60_000)
        page.wait_for_url(re.compile(r"/diff\?a=.*#first-diff$"), timeout=60_000)
        page.wait_for_load_state("load", timeout=60_000)
        main = page.inner_text("main")
        assert f"First difference at step {first.step}: {first.reason}" in main
        assert "{'" not in main and '{"' not in main  # no Python dict dumps
        row = page.locator("tr.first-diff")
        assert row.count() == 1 and row.get_attribute("data-step") == str(first.step)
        assert "first difference" in row.inner_text()
        # Highlighted: its cells have the highlight colour, other rows do not; and it is on screen (jumped to).
        colour = row.locator("td").first.evaluate("td => getComputedStyle(td).backgroundColor")
        assert colour == "rgb(255, 247, 237)"
        top = row.evaluate("tr => tr.getBoundingClientRect().top")
        assert 0 <= top < size[1] / 2
        # Every row: both screenshots drawn at one size, each with its markers where the step acted.
        rows = page.locator("table.diff-table tbody tr[data-step]")
        assert rows.count() == max(source.steps, fork.steps)
        sizes = page.evaluate(
            """() => [...document.querySelectorAll('table.diff-table tbody tr[data-step]')].map(tr =>
                [...tr.querySelectorAll('figure.diff-shot img')].map(i => {
                  const r = i.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; }))"""
        )
        pairs = [s for s in sizes if len(s) == 2]
        assert pairs and all(a == b and a[0] > 300 for a, b in pairs), sizes
        steps_a, steps_b = read_steps(source.run_dir), read_steps(fork.run_dir)
        for letter, steps, column in (("A", steps_a, 2), ("B", steps_b, 3)):
            step = next(s for s in steps if s.index == first.step)
            markers = row.locator(f"td:nth-child({column}) svg.markers g.click")
            assert markers.count() == (1 if step.coordinate is not None else 0), letter
            if step.coordinate is not None:  # the marker sits where the step acted, in screenshot pixels
                cx = float(markers.locator("circle").get_attribute("cx") or "nan")
                assert cx == pytest.approx(step.coordinate.css[0] * step.coordinate.device_scale_factor)
        if SHOTS:
            page.screenshot(path=os.path.join(SHOTS, f"diff-{size[0]}x{size[1]}.png"))
