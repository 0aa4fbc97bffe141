"""The script policy clicks a point of its target that is on screen and that nothing covers, and scrolls a list to
an item first (real Chromium).

Before, it clicked the middle of the target's box: an option scrolled out of view in a list box was "clicked" on
whatever lay over that point (the step said ok, with another element under the click), a button half under another
was clicked on the other one, and a scroll of the page at the screen's middle was repeated to the step limit when
it was the list that had to move.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.loop import run_task
from agent.task import load_task
from tests.conftest import require_chromium
from tracer import RunStatus, read_run, read_steps
from tracer.schema import StepErrorKind

NAMES = [f"Item {i:02d}" for i in range(40)]
PAGE = f"""<!doctype html><html><body style="margin:0;font:16px sans-serif">
<p id="query">Pick {NAMES[31]}, then press Go.</p>
<div id="list" style="height:120px;width:300px;overflow-y:auto;border:1px solid #888">
{"".join(f'<div class="item" style="height:24px">{name}</div>' for name in NAMES)}
</div>
<div style="position:relative;height:60px;margin-top:20px">
  <button id="go" style="position:absolute;left:0;top:0;width:200px;height:40px">Go</button>
  <button id="over" style="position:absolute;left:0;top:0;width:140px;height:40px">Other</button>
</div>
<div style="position:relative;height:60px">
  <button id="hidden" style="position:absolute;left:0;top:0;width:100px;height:40px">Hidden</button>
  <div id="lid" style="position:absolute;left:0;top:0;width:120px;height:50px;background:#ccc">Lid</div>
</div>
<script>
window.picked = [];
for (const el of document.querySelectorAll('.item')) el.onclick = () => window.picked.push(el.textContent);
for (const b of document.querySelectorAll('button')) b.onclick = () => window.picked.push(b.id);
</script></body></html>
"""


def write_task(tmp_path: Path, script: str) -> Path:
    (tmp_path / "page.html").write_text(PAGE, encoding="utf-8")
    path = tmp_path / "task.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: click-point
            goal: Pick {NAMES[31]}, then press Go.
            target: {{start_url: "file:page.html"}}
            browser: {{viewport: [800, 600]}}
            limits: {{max_steps: 8}}
            checks:
              - {{type: js, expression: "JSON.stringify(window.picked) === JSON.stringify(['{NAMES[31]}', 'go'])"}}
            script:
            """
        )
        + textwrap.indent(textwrap.dedent(script), "  "),
        encoding="utf-8",
    )
    return path


@pytest.mark.browser
@pytest.mark.slow
def test_an_item_scrolled_out_of_view_in_a_list_is_scrolled_to_and_a_half_covered_button_is_clicked_where_free(tmp_path):
    require_chromium()
    path = write_task(
        tmp_path,
        f"""\
        - {{action: left_click, target: {{selector: ".item", text: "{NAMES[31]}"}}}}
        - {{action: left_click, target: {{selector: "#go"}}}}
        - {{action: terminate, status: success}}
        """,
    )
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs")
    run = read_run(result.run_dir)
    assert run.status is RunStatus.succeeded, run.end_reason
    steps = read_steps(result.run_dir)
    first = steps[0]
    assert first.action is not None and first.action.action == "scroll"  # the list, at its middle, not the page
    assert first.action.coordinate is not None and first.action.coordinate[1] < 500
    clicks = [s for s in steps if s.action is not None and s.action.action == "left_click"]
    assert [(c.element.tag, c.element.text) for c in clicks if c.element] == [("div", NAMES[31]), ("button", "Go")]


@pytest.mark.browser
@pytest.mark.slow
def test_a_covered_target_is_not_clicked_and_the_step_says_what_covers_it(tmp_path):
    require_chromium()
    path = write_task(tmp_path, '- {action: left_click, target: {selector: "#hidden"}}\n')
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs")
    run = read_run(result.run_dir)
    assert run.status is not RunStatus.succeeded
    steps = read_steps(result.run_dir)
    assert steps and all(s.action is None or s.action.action != "left_click" for s in steps)  # never clicked the lid
    assert steps[0].error is not None and 'is covered by <div id=lid> "Lid"' in steps[0].error
    # Not output that could not be parsed (an eval's parse-error rate): no element to act on.
    assert steps[0].error_kind is StepErrorKind.executor and run.summary.parse_errors == 0


@pytest.mark.browser
@pytest.mark.slow
def test_at_clicks_where_on_the_target_it_says(tmp_path):
    """A date field's month is at its left end, a slider's low end at its left: `at` gives the fractions."""
    require_chromium()
    page = """<!doctype html><body style="margin:0"><button id="wide" style="width:600px;height:40px">Wide</button>
    <script>document.getElementById('wide').onclick = e => { window.at = [e.offsetX, e.offsetY]; };</script></body>"""
    (tmp_path / "wide.html").write_text(page, encoding="utf-8")
    path = tmp_path / "task.yaml"
    path.write_text(
        'name: at\ngoal: Click the left end.\ntarget: {start_url: "file:wide.html"}\n'
        'checks:\n  - {type: js, expression: "window.at[0] > 50 && window.at[0] < 70 && window.at[1] > 25"}\n'
        "script:\n  - {action: left_click, target: {selector: '#wide', at: [0.1, 0.75]}}\n"
        "  - {action: terminate, status: success}\n",
        encoding="utf-8",
    )
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs")
    assert read_run(result.run_dir).status is RunStatus.succeeded  # clicked about 60 px in, 30 px down


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("{at: [0.5, 0.5]}", "target needs one of selector, text, label or role"),
        ("{selector: '#x', at: [1.5, 0.5]}", "less than or equal to 1"),
        ("{selector: '#x', at: [0.5]}", "at"),
    ],
)
def test_at_is_two_fractions_beside_what_finds_the_element(tmp_path, target, said):
    from agent.task import TaskError

    path = tmp_path / "task.yaml"
    path.write_text(
        'name: at\ngoal: g\ntarget: {start_url: "https://example.test/"}\n'
        f"script:\n  - {{action: left_click, target: {target}}}\n",
        encoding="utf-8",
    )
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert said in str(info.value)


@pytest.mark.browser
@pytest.mark.slow
def test_a_scroll_that_does_not_move_the_target_is_not_repeated_to_the_step_limit(tmp_path):
    require_chromium()
    page = """<!doctype html><html style="overflow:hidden"><body style="margin:0;overflow:hidden">
    <button id="far" style="position:absolute;top:2000px">Far</button></body></html>"""
    (tmp_path / "far.html").write_text(page, encoding="utf-8")
    path = tmp_path / "task.yaml"
    path.write_text(
        'name: far\ngoal: Press Far.\ntarget: {start_url: "file:far.html"}\n'
        "limits: {max_steps: 12, max_consecutive_errors: 2}\n"
        "script:\n  - {action: left_click, target: {selector: '#far'}}\n",
        encoding="utf-8",
    )
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs")
    steps = read_steps(result.run_dir)
    assert [s.action.action if s.action else s.outcome for s in steps] == ["scroll", "error", "error"]
    assert steps[1].error is not None and "scrolling did not bring selector='#far' into view" in steps[1].error
    assert "2 consecutive errors" in (read_run(result.run_dir).end_reason or "")
