"""Every command that takes a run accepts the folder `glassbox run` prints, the run id or a unique prefix; list and
show print JSON and whole rows; a desktop task is offered computer_use only."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from agent.policy import ModelTrace, Policy, PolicyDecision, PolicyOutput
from agent.prompt import build_prompt, system_text, tools_for
from agent.task import FileSpec, Task, load_task
from cli.output import Column, print_table
from cli.run_ref import RunRefError, resolve_run
from tests.conftest import ROOT, TASKS, require_chromium
from tools.actions import ToolCall
from tools.views import Observation
from tracer import RunStatus, read_run, read_steps
from tracer.schema import StepRecord


def glassbox(*args: str, cwd: Path, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess; stdout is a pipe, as in `glassbox runs list | grep failed`."""
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )


class Recorded:
    def __init__(self, cwd: Path, printed: str, failed_id: str) -> None:
        self.cwd = cwd
        self.printed = printed  # "runs/<id>", exactly as `glassbox run` printed it
        self.run_dir = cwd / printed
        self.run_id = self.run_dir.name
        self.failed_id = failed_id

    def refs(self) -> dict[str, str]:
        return {
            "printed": self.printed,
            "slash": self.printed + "/",
            "absolute": str(self.run_dir),
            "id": self.run_id,
            "prefix": self.run_id[:-1],
        }


def _printed_dir(stdout: str) -> str:
    match = re.search(r"^run recorded in (\S+)$", stdout, re.MULTILINE)
    assert match, stdout
    return match.group(1)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Recorded:
    """The bundled task once (script policy, succeeds), and once cut off after 2 steps (fails), from a folder
    whose runs dir is the relative `runs`, so that `glassbox run` prints `runs/<id>`."""
    require_chromium()
    cwd = tmp_path_factory.mktemp("cli_refs")
    ok = glassbox("run", str(TASKS / "publish_product.yaml"), "--runs-dir", "runs", cwd=cwd)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    printed = _printed_dir(ok.stdout)
    assert printed.startswith("runs/") and (cwd / printed / "run.json").is_file()
    bad = glassbox("run", str(TASKS / "publish_product.yaml"), "--runs-dir", "runs", "--max-steps", "2", cwd=cwd)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    failed_id = Path(_printed_dir(bad.stdout)).name
    assert read_run(cwd / "runs" / failed_id).status is RunStatus.failed
    return Recorded(cwd, printed, failed_id)


def test_show_accepts_the_printed_folder_the_id_and_a_prefix(recorded):
    docs = {}
    for kind, ref in recorded.refs().items():
        proc = glassbox("runs", "show", ref, "--json", cwd=recorded.cwd)
        assert proc.returncode == 0, (kind, proc.stderr)
        docs[kind] = json.loads(proc.stdout)
        assert Path(docs[kind]["run_dir"]).name == recorded.run_id
    first = docs["printed"]
    assert first["run"]["run_id"] == recorded.run_id and first["run"]["status"] == "succeeded"
    assert len(first["steps"]) == first["run"]["steps"] == len(read_steps(recorded.run_dir))
    for kind, doc in docs.items():
        assert (doc["run"], doc["steps"]) == (first["run"], first["steps"]), kind
    text = {kind: glassbox("runs", "show", ref, cwd=recorded.cwd) for kind, ref in recorded.refs().items()}
    assert all(p.returncode == 0 and f"{recorded.run_id}  publish-product" in p.stdout for p in text.values())
    assert len({p.stdout.replace(str(recorded.run_dir), recorded.printed) for p in text.values()}) == 1


def test_graph_diff_export_explain_and_resume_resolve_every_form_to_the_same_run(recorded, tmp_path):
    outcomes: dict[str, list[int | str]] = {}
    for kind, ref in recorded.refs().items():
        graph = glassbox("graph", ref, "--format", "mermaid", cwd=recorded.cwd)
        diff = glassbox("diff", ref, recorded.printed, cwd=recorded.cwd)
        script = tmp_path / f"{kind}.py"
        export = glassbox("export", "playwright", ref, "--out", str(script), cwd=recorded.cwd)
        explain = glassbox("explain", ref, "--step", "999", cwd=recorded.cwd)
        resume = glassbox("resume", ref, "--from-step", "999", cwd=recorded.cwd)
        outcomes[kind] = [
            graph.returncode,
            graph.stdout,
            diff.returncode,
            diff.stdout,
            export.returncode,
            script.read_text(),
            explain.returncode,
            explain.stderr,
            resume.returncode,
            resume.stderr,
        ]
    first = outcomes["printed"]
    assert first[0] == 0 and str(first[1]).count("-->") > 20
    assert first[2] == 0 and "no difference over 21 steps" in str(first[3])
    assert first[4] == 0 and "page.mouse.click(" in str(first[5])
    assert first[6] == 2 and f"run {recorded.run_id} has no step 999 (it has 21)" in str(first[7])
    assert first[8] == 2 and f"run {recorded.run_id} has steps 0..20; cannot resume from step 999" in str(first[9])
    for kind, outcome in outcomes.items():
        assert outcome == first, kind


@pytest.mark.parametrize("kind", ["printed", "id", "prefix"])
def test_replay_takes_every_form_and_records_beside_the_source(recorded, kind):
    proc = glassbox("replay", recorded.refs()[kind], cwd=recorded.cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "succeeded after 21 steps" in proc.stdout and "replayed 21, fallback 0" in proc.stdout
    new_dir = recorded.cwd / _printed_dir(proc.stdout)
    assert new_dir.parent == recorded.cwd / "runs"
    assert read_run(new_dir).parent_run == recorded.run_id


def test_a_folder_outside_the_runs_dir(recorded, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shown = glassbox("runs", "show", str(recorded.run_dir), "--json", "--runs-dir", str(tmp_path / "none"), cwd=elsewhere.parent)
    assert shown.returncode == 0 and json.loads(shown.stdout)["run"]["run_id"] == recorded.run_id
    # Without --runs-dir a writing command takes the folder's parent as the runs dir (and gets as far as the step check)...
    resumed = glassbox("resume", str(recorded.run_dir), "--from-step", "999", cwd=tmp_path)
    assert resumed.returncode == 2 and "cannot resume from step 999" in resumed.stderr
    # ...but an explicit --runs-dir that names another directory is refused rather than guessed at.
    for args in (
        ("resume", str(recorded.run_dir), "--from-step", "999"),
        ("replay", str(recorded.run_dir)),
        ("runs", "rm", str(recorded.run_dir), "--yes"),
    ):
        refused = glassbox(*args, "--runs-dir", str(tmp_path / "other"), cwd=tmp_path)
        assert refused.returncode == 2, args
        assert f"is not in --runs-dir {tmp_path / 'other'}" in refused.stderr
    assert recorded.run_dir.is_dir()


def test_unknown_and_ambiguous_refs_exit_2_saying_what_was_looked_for(recorded, tmp_path):
    runs = tmp_path / "runs"
    for suffix in ("aaaaaa", "aaaabb"):
        shutil.copytree(recorded.run_dir, runs / f"20990101-000000-copy-{suffix}")
    ambiguous = glassbox("graph", "20990101-000000-copy-aaaa", "--runs-dir", str(runs), cwd=tmp_path)
    assert ambiguous.returncode == 2
    assert "'20990101-000000-copy-aaaa' matches 2 runs" in ambiguous.stderr
    assert "20990101-000000-copy-aaaaaa" in ambiguous.stderr and "20990101-000000-copy-aaaabb" in ambiguous.stderr
    for args in (
        ("runs", "show", "nope"),
        ("diff", "20990101-000000-copy-aaaaaa", "nope"),
        ("replay", "nope"),
        ("export", "playwright", "nope", "--out", str(tmp_path / "x.py")),
        ("explain", "nope", "--step", "0"),
    ):
        unknown = glassbox(*args, "--runs-dir", str(runs), cwd=tmp_path)
        assert unknown.returncode == 2, args
        assert f"no run 'nope' in {runs}: looked for a run id or a prefix of one among its 2 run(s)" in unknown.stderr
    for ref, why in (
        ("runs/nope/", "runs/nope is not a folder"),
        (str(runs), f"{runs} has no run.json"),
        ("runs/*", "runs/* is not a folder"),
    ):
        bad = glassbox("runs", "show", ref, cwd=tmp_path)
        assert bad.returncode == 2 and why in bad.stderr, (ref, bad.stderr)
    # A glob character in a prefix is text, not a pattern.
    assert glassbox("runs", "show", "2099*", "--runs-dir", str(runs), cwd=tmp_path).returncode == 2
    assert not (tmp_path / "x.py").exists()


def test_resolver_edge_cases(recorded, tmp_path, monkeypatch):
    runs = recorded.cwd / "runs"
    assert resolve_run(recorded.run_id, runs).by == "id"
    assert resolve_run(recorded.run_id[:-1], runs).by == "prefix"
    exact = tmp_path / "runs"
    shutil.copytree(recorded.run_dir, exact / "abc")
    shutil.copytree(recorded.run_dir, exact / "abcd")
    assert resolve_run("abc", exact).run_dir == exact / "abc"  # an exact id wins over being a prefix of another
    for ref in ("", "  ", "a\x00b", ".hidden", "x" * 5000):
        with pytest.raises(RunRefError):
            resolve_run(ref, exact)
    monkeypatch.chdir(exact / "abc")
    here = resolve_run(".", tmp_path / "missing")
    assert (here.run_id, here.by, here.runs_dir) == ("abc", "path", exact)
    monkeypatch.chdir(exact)
    bare = resolve_run("abcd", tmp_path / "missing")  # `cd runs; glassbox runs show <id>`
    assert (bare.run_dir, bare.runs_dir) == (Path("abcd"), Path("."))


def test_rm_takes_every_form(recorded, tmp_path):
    runs = tmp_path / "runs"
    names = [f"20990101-00000{i}-copy-{i}{i}{i}{i}{i}{i}" for i in range(3)]
    for name in names:
        shutil.copytree(recorded.run_dir, runs / name)
    listed = glassbox("runs", "list", "--json", "--runs-dir", "runs", cwd=tmp_path)
    assert {r["run_id"] for r in json.loads(listed.stdout)["runs"]} == set(names)
    for ref in (f"runs/{names[0]}/", names[1], names[2][:16]):
        proc = glassbox("runs", "rm", ref, "--yes", cwd=tmp_path)
        assert proc.returncode == 0 and "removed" in proc.stdout, proc.stderr
    assert not any((runs / n).exists() for n in names)
    listed = glassbox("runs", "list", "--json", "--runs-dir", "runs", cwd=tmp_path)
    assert json.loads(listed.stdout) == {"runs_dir": "runs", "runs": [], "unreadable": []}
    assert recorded.run_dir.is_dir()


def test_runs_list_json_and_piped_rows(recorded):
    listed = glassbox("runs", "list", "--json", "--runs-dir", "runs", cwd=recorded.cwd)
    assert listed.returncode == 0
    doc = json.loads(listed.stdout)
    by_id = {r["run_id"]: r for r in doc["runs"]}
    assert by_id[recorded.run_id]["status"] == "succeeded" and by_id[recorded.run_id]["steps"] == 21
    assert by_id[recorded.failed_id]["status"] == "failed" and by_id[recorded.failed_id]["steps"] == 2
    none = glassbox("runs", "list", "--json", "--status", "interrupted", "--runs-dir", "runs", cwd=recorded.cwd)
    assert json.loads(none.stdout)["runs"] == []
    for columns in (20, 80, 300):  # the width a pipe reports does not matter: whole rows, no colour codes
        piped = glassbox("runs", "list", "--runs-dir", "runs", cwd=recorded.cwd, columns=columns)
        lines = piped.stdout.splitlines()
        assert lines[0].split() == ["run", "task", "policy", "status", "steps", "errors", "time", "started"]
        failed = [line for line in lines if "failed" in line]
        assert len(failed) == 1 and failed[0].split()[:6] == [recorded.failed_id, "publish-product", "script", "failed", "2", "0"]
        ok = [line for line in lines if recorded.run_id in line]
        assert len(ok) == 1 and "succeeded" in ok[0] and "\x1b" not in piped.stdout
        assert "--limit N shows more" not in piped.stderr
    cut = glassbox("runs", "list", "--limit", "1", "--runs-dir", "runs", cwd=recorded.cwd)
    assert len(cut.stdout.splitlines()) == 2 and "showing the first 1 runs; --limit N shows more" in cut.stderr


def test_show_piped_prints_whole_step_lines(recorded):
    shown = glassbox("runs", "show", recorded.printed, cwd=recorded.cwd, columns=30)
    steps = [line for line in shown.stdout.splitlines() if re.match(r"^\s+\d+ ", line)]
    assert len(steps) == 21 and all(" ok " in line and "…" not in line for line in steps)
    # The whole first line of the reasoning is kept, however narrow the (piped) terminal says it is.
    first_reasoning = (read_steps(recorded.run_dir)[0].reasoning or "").splitlines()[0][:70]
    assert first_reasoning and steps[0].endswith(first_reasoning)


def test_terminal_tables_wrap_instead_of_dropping_columns():
    columns = [Column(header="run"), Column(header="task", wraps=True), Column(header="status")]
    rows = [("20261126-102820-publish-product-6eceec", "a task name that is much too long for a narrow terminal", "failed")]
    for width in (70, 40):
        out = io.StringIO()
        print_table(Console(file=out, force_terminal=True, width=width, color_system=None), columns, rows, tty=True)
        text = out.getvalue()
        assert "20261126-102820-publish-product-6eceec" in text and "failed" in text
        assert "…" not in text and "".join(text.split()).count("narrowterminal") == 1
    out = io.StringIO()  # a control character in a name cannot split a row or drive the terminal
    print_table(Console(file=out, force_terminal=True), columns, [("r1", "evil\nname\x1b[2J", "failed")])  # not a TTY
    assert out.getvalue().splitlines()[1].split() == ["r1", "evil", "name", "[2J", "failed"]


# -- tools offered per executor kind -------------------------------------------------------------------------------


def _names(task: Task) -> list[str]:
    return [f["name"] for f in tools_for(task)]


def test_desktop_prompt_offers_computer_use_only_and_the_browser_prompt_has_its_tools():
    desktop = load_task(TASKS / "desktop_form.yaml")
    browser = load_task(TASKS / "publish_product.yaml")
    assert _names(desktop) == ["computer_use"]
    assert _names(browser) == ["computer_use", "upload_file", "goto_url"]
    with_files = desktop.model_copy(update={"files": {"doc": FileSpec(path=str(TASKS / "fixtures" / "desk_lamp.png"))}})
    assert _names(with_files) == ["computer_use"]
    no_files = browser.model_copy(update={"files": {}})
    assert _names(no_files) == ["computer_use", "goto_url"]
    png = (TASKS / "fixtures" / "desk_lamp.png").read_bytes()
    desktop_system = build_prompt(desktop, [], png).messages[0].text()
    browser_system = build_prompt(browser, [], png).messages[0].text()
    assert desktop_system == system_text(tools_for(desktop))
    assert "goto_url" not in desktop_system and "upload_file" not in desktop_system
    assert '"name": "goto_url"' in browser_system and '"name": "upload_file"' in browser_system


class _GotoThenStop(Policy):
    """A model that ignores the tools it was offered: goto_url on a desktop, then gives up."""

    name = "test-goto"

    def __init__(self) -> None:
        self.second_prompt: str | None = None

    def decide(self, task: Task, history: list[StepRecord], observation: Observation) -> PolicyOutput:
        if not history:
            call = ToolCall(name="goto_url", arguments={"url": "http://127.0.0.1:1/"})
            trace = ModelTrace(raw_output="<tool_call>goto</tool_call>")
            return PolicyOutput(decision=PolicyDecision(tool_calls=[call]), trace=trace)
        prompt = build_prompt(task, history, observation.screenshot_png)
        self.second_prompt = "\n".join(m.text() for m in prompt.messages)
        return PolicyOutput(
            decision=PolicyDecision(
                tool_calls=[ToolCall(name="computer_use", arguments={"action": "terminate", "status": "failure"})]
            ),
            trace=ModelTrace(raw_output="<tool_call>stop</tool_call>"),
        )


@pytest.mark.desktop
def test_a_desktop_model_calling_goto_url_gets_an_error_step_fed_back(tmp_path):
    from agent.loop import run_task
    from tests.tools.test_desktop import require_xvfb

    require_xvfb()
    policy = _GotoThenStop()
    result = run_task(
        load_task(TASKS / "desktop_form.yaml"), runs_dir=tmp_path / "runs", policy_factory=lambda task, executor: policy
    )
    steps = read_steps(result.run_dir)
    assert [s.index for s in steps] == [0, 1] and result.status is RunStatus.failed
    first = steps[0]
    assert first.outcome != "ok" and first.error_kind == "action" and first.action is None
    assert first.error == "the tool 'goto_url' is not available in this task"
    assert policy.second_prompt is not None
    assert "could not be used because: the tool 'goto_url' is not available in this task" in policy.second_prompt
    assert '"name": "goto_url"' not in policy.second_prompt


def test_listing_a_runs_dir_that_does_not_exist_says_so_and_creates_nothing(tmp_path):
    missing = tmp_path / "typo"
    for extra, expect in (([], "no runs in"), (["--json"], '"runs": []')):
        proc = subprocess.run(
            [sys.executable, "-m", "cli", "runs", "list", "--runs-dir", str(missing), *extra],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        assert expect in proc.stdout
    assert not missing.exists()


def test_a_damaged_run_record_is_a_message_for_every_reading_command_and_can_still_be_removed(tmp_path):
    runs = tmp_path / "runs"
    (runs / "broken").mkdir(parents=True)
    (runs / "broken" / "run.json").write_text("{not json")

    def glassbox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args, "--runs-dir", str(runs)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    for args in (["runs", "show", "broken"], ["graph", "broken"], ["explain", "broken", "--step", "0"]):
        proc = glassbox(*args)
        assert proc.returncode == 2 and "run broken cannot be read" in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert glassbox("runs", "rm", "broken", "--yes").returncode == 0 and not (runs / "broken").exists()
