"""Values a task's setup reads from the page (``save_as``) fill ``{name}`` in the goal, the script and targets.

A benchmark page generates its instruction per seed (MiniWoB++'s utterance): the same task file must work for
every seed, so the script clicks the button the page asked for, not one written down in advance.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest

from agent.loop import run_task
from agent.task import TaskError, load_task
from replays.viewer import ViewerServer
from tests.conftest import glassbox_in_process, require_chromium
from tracer import RunStatus, read_run, read_steps

PAGE = """<!doctype html><html><body>
<div id="query"></div><div id="area"></div>
<script>
const words = ["Yes", "No", "Next", "Previous", "Submit"];
const pick = words[Number(location.hash.slice(1)) % words.length];
document.getElementById("query").textContent = `Click on the "${pick}" button.`;
for (const w of words) {
  const b = document.createElement("button"); b.textContent = w; b.className = "choice";
  b.onclick = () => { window.clicked = w; };
  document.getElementById("area").append(b);
}
</script></body></html>
"""


def write_task(tmp_path: Path, seed: int, extra: str = "") -> Path:
    (tmp_path / "page.html").write_text(PAGE, encoding="utf-8")
    path = tmp_path / "task.yaml"
    text = f"""\
        name: page-values
        goal: "{{utterance}}"
        target: {{start_url: "file:page.html#{seed}"}}
        setup:
          - {{js: "document.getElementById('query').textContent", save_as: utterance}}
          - {{js: "document.getElementById('query').textContent.match(/\\"(.+)\\"/)[1]", save_as: button}}
        checks:
          - {{type: js, expression: "window.clicked === '{{button}}'"}}
        script:
          - {{action: left_click, target: {{selector: "#area button", text: "{{button}}"}}}}
          - {{action: terminate, status: success}}
        """
    path.write_text(textwrap.dedent(text) + extra, encoding="utf-8")
    return path


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 2, 4])
def test_the_script_clicks_the_button_the_page_asked_for(tmp_path, seed):
    require_chromium()
    result = run_task(load_task(write_task(tmp_path, seed)), policy="script", runs_dir=tmp_path / "runs")
    run = read_run(result.run_dir)
    wanted = ["Yes", "No", "Next", "Previous", "Submit"][seed]
    assert run.status is RunStatus.succeeded, run.end_reason
    assert run.page_values == {"utterance": f'Click on the "{wanted}" button.', "button": wanted}
    assert run.checks[0].passed
    first = read_steps(result.run_dir)[0]
    assert first.reasoning is not None and wanted in first.reasoning  # the target as played, filled in
    assert run.goal == f'Click on the "{wanted}" button.'  # the goal as the agent was given it
    with ViewerServer(tmp_path / "runs") as viewer:  # the run page says what the page said
        page = httpx.get(f"{viewer.url}/runs/{result.run_id}").text
    assert f"<code>{{button}}</code> = {wanted}" in page and "setup[1] js" in page
    assert f"<p>Click on the &#34;{wanted}&#34; button.</p>" in page, page  # the goal filled in, not {utterance}
    shared = tmp_path / "shared.html"
    exported = glassbox_in_process("export", "html", str(result.run_dir), "--out", str(shared))
    assert exported.returncode == 0, exported.stderr
    assert f"Click on the &#34;{wanted}&#34; button." in shared.read_text(encoding="utf-8")


def test_save_as_names_must_be_new_unique_and_kept_from_a_script(tmp_path):
    path = write_task(tmp_path, 0, "inputs:\n  button: {value: x}\n")
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert "setup[1].save_as: 'button' is already the name of an input" in str(info.value)
    text = (
        path.read_text(encoding="utf-8")
        .replace("inputs:\n  button: {value: x}\n", "")
        .replace("save_as: button", "save_as: utterance")
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert "utterance is saved twice" in str(info.value)
    path.write_text(
        write_task(tmp_path, 0).read_text(encoding="utf-8").replace("- {js:", "- {goto: 'file:page.html', js:", 1),
        encoding="utf-8",
    )
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert "setup[0]" in str(info.value)
    text = write_task(tmp_path, 0).read_text(encoding="utf-8")
    path.write_text(
        text.replace(
            "{js: \"document.getElementById('query').textContent\", save_as: utterance}",
            "{wait_for: {selector: '#query'}, save_as: utterance}",
        ),
        encoding="utf-8",
    )
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert "save_as keeps a value a script returned" in str(info.value)


def test_a_placeholder_no_input_or_saved_value_names_is_still_refused(tmp_path):
    path = write_task(tmp_path, 0)
    path.write_text(path.read_text(encoding="utf-8").replace('text: "{button}"', 'text: "{buton}"'), encoding="utf-8")
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert "script[0].target.text: refers to {buton}, which is not an input" in str(info.value)


def test_seed_fills_setup_scripts_the_goal_and_targets_and_is_not_an_input_name(tmp_path):
    path = write_task(tmp_path, 0)
    text = path.read_text(encoding="utf-8").replace("name: page-values", "name: page-values\nseed: 9")
    text = text.replace('goal: "{utterance}"', 'goal: "{utterance} (episode {seed})"')
    text = text.replace("save_as: utterance}", 'save_as: utterance}\n  - {js: "const o = {seed}; o", save_as: seen}')
    path.write_text(text, encoding="utf-8")
    task = load_task(path)
    assert task.seed == 9 and task.render(task.goal) == "{utterance} (episode 9)"
    assert task.render_setup(task.setup[1].js or "") == "const o = 9; o"  # only {seed}: JavaScript keeps its braces
    assert task.render_setup("({a} = {seed})") == "({a} = 9)"
    with pytest.raises(TaskError) as info:
        load_task(write_task(tmp_path, 0, "inputs:\n  seed: {value: '3'}\n"))
    assert "inputs.seed: {seed} is Glassbox's own value" in str(info.value)


@pytest.mark.browser
@pytest.mark.slow
def test_a_target_whose_saved_value_is_empty_on_this_page_says_so(tmp_path):
    require_chromium()
    path = write_task(tmp_path, 0)
    text = path.read_text(encoding="utf-8")
    nothing = "textContent.match(/nothing(.*)/)?.[1] ?? ''"  # the page asks for no button on this seed
    path.write_text(text.replace("""textContent.match(/\\"(.+)\\"/)[1]""", nothing), encoding="utf-8")
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs")
    run = read_run(result.run_dir)
    assert run.status is not RunStatus.succeeded and run.page_values["button"] == ""
    error = read_steps(result.run_dir)[0].error
    assert error == "Script step 1/2: the target's text '{button}' is empty here", error


BOXES = """<!doctype html><html><body>
<p id="query"></p><div id="boxes"></div><button id="submit">Submit</button>
<script>
const names = ["red", "green", "blue", "cyan", "pink"];
const wanted = names.filter((_, i) => Number(location.hash.slice(1)) & (1 << i));
document.getElementById("query").textContent = "Tick " + (wanted.join(", ") || "nothing") + ".";
const boxes = document.getElementById("boxes");
for (const n of names) boxes.insertAdjacentHTML("beforeend", `<label><input type=checkbox>${n}</label>`);
document.getElementById("submit").onclick = () => {
  window.ticked = [...document.querySelectorAll("label")].filter(l => l.firstChild.checked).map(l => l.textContent);
};
</script></body></html>
"""


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize(("mask", "ticked"), [(0b10101, ["red", "blue", "pink"]), (0, [])])
def test_a_step_is_played_for_each_item_of_a_list_setup_saved_and_not_at_all_for_none(tmp_path, mask, ticked):
    require_chromium()
    (tmp_path / "boxes.html").write_text(BOXES, encoding="utf-8")
    path = tmp_path / "task.yaml"
    query = "document.getElementById('query').textContent"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: tick
            goal: "{{{{query}}}}"
            target: {{start_url: "file:boxes.html#{mask}"}}
            setup:
              - {{js: "{query}", save_as: query}}
              - {{js: "{query}.slice(5, -1) === 'nothing' ? [] : {query}.slice(5, -1).split(', ')", save_as: words}}
            checks:
              - {{type: js, expression: "JSON.stringify(window.ticked) === JSON.stringify({ticked})"}}
            script:
              - {{action: left_click, target: {{label: "{{item}}"}}, for_each: words}}
              - {{action: left_click, target: {{selector: "#submit"}}}}
              - {{action: terminate, status: success}}
            """
        ),
        encoding="utf-8",
    )
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs")
    run = read_run(result.run_dir)
    assert run.status is RunStatus.succeeded, run.end_reason
    assert json.loads(run.page_values["words"]) == ticked
    steps = read_steps(result.run_dir)
    assert [s.policy_state.get("item") for s in steps[: len(ticked)]] == list(range(len(ticked)))
    assert [s.element.tag for s in steps[: len(ticked)] if s.element] == ["input"] * len(ticked)  # each label's box
    assert len(steps) == len(ticked) + 2  # then Submit and the end


def test_for_each_names_a_saved_list_and_item_is_only_for_its_step(tmp_path):
    path = write_task(tmp_path, 0)
    text = path.read_text(encoding="utf-8")
    steps = '{action: left_click, coordinate: [1, 1], for_each: nope}\n  - {action: type, text: "{item}"}\n  - '
    path.write_text(text.replace("{action: terminate", steps + "{action: terminate"), encoding="utf-8")
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert "script[1].for_each: 'nope' is not a value setup saves" in str(info.value)
    assert "script[2].text: refers to {item}" in str(info.value)
