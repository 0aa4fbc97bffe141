"""Task setup (run in the page before step 0, recorded in run.json), file: start pages under the task's
folders, the settle policy on a widget that animates in, and js checks that report the value they read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent import load_task, run_task
from agent.task import MAX_SETUP_TIMEOUT_MS, TaskError, parse_task
from tests.conftest import ROOT, TASKS
from tools.fake import FakeExecutor, screenshot
from tools.views import SettlePolicy
from tracer import RunStatus, read_run, read_steps

PAGE = TASKS / "fixtures" / "animated_menu" / "index.html"
SECRET = "Xq7-tulip-4821"

BASE = """\
name: setup-test
goal: Open the menu and pick the item the page asks for.
inputs:
  password: {value: Xq7-tulip-4821, secret: true}
target: {start_url: "file:page/index.html"}
"""


def task_dir(tmp_path: Path) -> Path:
    """A task folder holding a copy of the animated menu page (page/index.html)."""
    (tmp_path / "page").mkdir(parents=True, exist_ok=True)
    shutil.copy(PAGE, tmp_path / "page" / "index.html")
    return tmp_path


def write(tmp_path: Path, text: str, name: str = "task.yaml") -> Path:
    task_dir(tmp_path)
    path = tmp_path / name
    path.write_text(BASE + textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, **kwargs) -> str:
    with pytest.raises(TaskError) as info:
        load_task(write(tmp_path, text), **kwargs)
    return str(info.value)


# -- the bundled example: setup, file: start page, settle, js check value -----------------------------------


@pytest.mark.browser
def test_bundled_animated_menu_runs_setup_before_step_0_and_records_it(tmp_path):
    task = load_task(TASKS / "animated_menu.yaml")
    result = run_task(task, policy="script", runs_dir=tmp_path)
    run = read_run(result.run_dir)
    assert run.status is RunStatus.succeeded, run.end_reason
    assert [(s.index, s.kind, s.ok) for s in run.setup] == [(0, "js", True), (1, "wait_for", True), (2, "wait_for", True)]
    assert run.setup[0].detail == 'returned {"seed":7,"items":9}'
    assert run.setup[1].detail == "'#open' is visible"
    steps = read_steps(result.run_dir)
    # Setup is not agent steps, and it ran before step 0: the button the first step clicks is hidden until
    # startEpisode (a setup step) shows it.
    assert [s.action.action for s in steps if s.action] == ["left_click", "left_click", "terminate"]
    assert steps[0].url == PAGE.resolve().as_uri() and steps[0].outcome == "ok"
    assert steps[0].element is not None and steps[0].element.text == "Open menu"
    assert steps[0].timings.settle_ms is not None and steps[0].timings.settle_ms <= steps[0].timings.act_ms
    assert run.checks[0].passed and run.checks[0].detail == "expression returned 1"


@pytest.mark.browser
def test_the_default_settle_clicks_the_menu_while_it_moves_and_fails(tmp_path):
    task = load_task(TASKS / "animated_menu.yaml")
    task.settle = SettlePolicy()  # today's fast settle: two frames and a started navigation
    result = run_task(task, policy="script", runs_dir=tmp_path)
    run = read_run(result.run_dir)
    assert run.status is RunStatus.failed
    assert run.agent_verdict == "success"  # the script clicked where the item was; the page ignored it
    assert run.checks[0].detail == "expression returned 0 (falsy: the check fails)"


# -- setup failures ----------------------------------------------------------------------------------------


@pytest.mark.browser
def test_a_failing_setup_step_fails_the_run_with_its_name_and_keeps_run_json(tmp_path):
    path = write(
        tmp_path,
        """\
        setup:
          - js: startEpisode(3)
          - wait_for: {selector: "#never-there"}
            timeout_ms: 400
          - js: window.after = true
        checks: [{type: js, expression: window.reward}]
        script: [{action: terminate, status: success}]
        """,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "run", str(path), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [run_dir] = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    run = read_run(run_dir)
    assert run.status is RunStatus.failed
    reason = "setup[1].wait_for: no element matching '#never-there' was visible within 400 ms"
    assert run.end_reason == f"setup failed: {reason}"
    assert [(s.kind, s.ok) for s in run.setup] == [("js", True), ("wait_for", False)]  # the third never ran
    assert run.setup[0].detail == 'returned {"seed":3,"items":9}'
    assert run.setup[1].detail == reason and run.setup[1].ms >= 400  # it waited its limit, then failed
    assert run.steps == 0 and read_steps(run_dir) == [] and run.checks == []
    assert "setup failed" in proc.stdout + proc.stderr


@pytest.mark.browser
@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ("- js: 'while (true) {}'\n  timeout_ms: 500", "setup[0].js: the script did not finish within 500 ms"),
        ("- js: new Promise(() => {})\n  timeout_ms: 300", "setup[0].js: the script's promise did not settle within 300 ms"),
        ("- js: throw new Error('no such widget')", "setup[0].js: the script threw: Error: no such widget"),
        (
            "- wait_for: {js: window.seed}\n  timeout_ms: 300",
            "setup[0].wait_for: the expression was not true within 300 ms; it was undefined",
        ),
        ("- goto: https://elsewhere.example/", None),  # refused when the task loads (below), not here
    ],
)
def test_setup_steps_stop_at_their_limit_with_a_clear_reason(tmp_path, step, reason):
    if reason is None:
        assert "setup[0].goto: 'https://elsewhere.example/' is outside the task's origins" in problems(
            tmp_path, "setup:\n" + textwrap.indent(step, "  ") + "\n"
        )
        return
    script = "script: [{action: terminate, status: success}]\n"
    task = load_task(write(tmp_path, "setup:\n" + textwrap.indent(step, "  ") + "\n" + script))
    result = run_task(task, policy="script", runs_dir=tmp_path / "runs")
    run = read_run(result.run_dir)
    assert run.status is RunStatus.failed and run.end_reason == f"setup failed: {reason}"
    assert run.setup[-1].ok is False and run.setup[-1].detail == reason


@pytest.mark.browser
def test_setup_goto_opens_a_page_under_the_task_folder_and_values_are_masked(tmp_path):
    (tmp_path / "page").mkdir()
    (tmp_path / "page" / "second.html").write_text("<title>Second</title><p id=s>second page</p>", encoding="utf-8")
    path = write(
        tmp_path,
        """\
        setup:
          - goto: second.html
          - wait_for: {selector: "#s"}
          - js: "'the password is ' + 'Xq7-tulip-' + '4821'"
        checks:
          - {type: js, expression: "document.title + ' Xq7-tulip-4821'"}
        script: [{action: terminate, status: success}]
        """,
    )
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs")
    run = read_run(result.run_dir)
    assert run.status is RunStatus.succeeded, run.end_reason
    assert run.setup[0].detail == f"opened {(tmp_path / 'page' / 'second.html').resolve().as_uri()}"
    assert run.setup[2].detail is not None and run.setup[2].detail.startswith('returned "the password is ●●●●')
    assert run.checks[0].detail.startswith('expression returned "Second ●●●●')
    for file in result.run_dir.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file


@pytest.mark.browser
def test_js_checks_that_never_end_fail_within_their_limit_and_the_rest_still_run(tmp_path, monkeypatch):
    import agent.checks

    monkeypatch.setattr(agent.checks, "JS_CHECK_LIMIT_MS", 500)  # 10 s in a real run
    path = write(
        tmp_path,
        """\
        checks:
          - {type: js, expression: "while (true) {}"}
          - {type: js, expression: "new Promise(() => {})"}
          - {type: js, expression: "() => 40 + 2"}
          - {type: js, expression: "({seen: document.title.length > 0})"}
        script: [{action: terminate, status: success}]
        """,
    )
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs")
    checks = read_run(result.run_dir).checks
    assert [c.passed for c in checks] == [False, False, True, True]
    assert "did not finish within 500 ms" in checks[0].detail
    assert "did not settle within 500 ms" in checks[1].detail
    assert checks[2].detail == "expression returned 42"  # a function is called, as page.evaluate does
    assert checks[3].detail == 'expression returned {"seen": true}'


def test_setup_needs_a_browser_page(tmp_path):
    task = load_task(write(tmp_path, "setup: [{js: '1'}]\nscript: [{action: terminate, status: success}]\n"))
    with FakeExecutor([screenshot()]) as fake:
        result = run_task(task, policy="script", runs_dir=tmp_path / "runs", executor=fake)
    assert result.status is RunStatus.failed
    assert result.end_reason == "setup failed: setup[0].js: this run's executor (fake) has no browser page to run setup in"
    assert fake.actions == []


# -- file: start pages and their roots ---------------------------------------------------------------------


def test_a_file_start_url_under_the_task_folder_resolves_to_an_absolute_page(tmp_path):
    task = load_task(write(tmp_path, ""))
    assert task.start_page() == (tmp_path / "page" / "index.html").resolve().as_uri()
    query = parse_task(
        (BASE + "").replace("file:page/index.html", (tmp_path / "page" / "index.html").as_uri() + "?seed=3#top"),
        source=tmp_path / "task.yaml",
    )
    assert query.start_page() == (tmp_path / "page" / "index.html").resolve().as_uri() + "?seed=3#top"


@pytest.mark.parametrize(
    ("start_url", "expected"),
    [
        ("file:///etc/hostname", "is outside the task's folder and allowed_roots"),
        ("file:../outside.html", "resolves to"),
        ("file:page/../../outside.html", "resolves to"),
        ("file:link.html", "resolves to"),  # a symlink in the folder pointing outside it
        ("file:page/missing.html", "no such file"),
        ("file:page", "is not a regular file"),
        ("file://somehost/page/index.html", "names a host ('somehost')"),
        ("ftp://example.com/x", "start_url must be an http:// or https:// URL, or a file: URL"),
    ],
)
def test_file_start_urls_outside_the_task_folder_are_refused(tmp_path, start_url, expected):
    inner = tmp_path / "task"
    (tmp_path / "outside.html").write_text("<p>outside</p>", encoding="utf-8")
    task_dir(inner)
    (inner / "link.html").symlink_to(tmp_path / "outside.html")
    path = inner / "task.yaml"
    path.write_text(BASE.replace("file:page/index.html", start_url), encoding="utf-8")
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert "target.start_url" in str(info.value) and expected in str(info.value)


def test_allowed_roots_let_a_task_open_pages_of_another_folder(tmp_path):
    pages = tmp_path / "pages"  # e.g. an installed benchmark's pages
    task_dir(pages)
    inner = tmp_path / "task"
    inner.mkdir()
    path = inner / "task.yaml"
    start = "file:../pages/page/index.html"
    path.write_text(BASE.replace("file:page/index.html", start), encoding="utf-8")
    with pytest.raises(TaskError) as info:
        load_task(path)  # not without the root
    assert "target.start_url: 'file:../pages/page/index.html' (resolves to" in str(info.value)
    path.write_text(BASE.replace("file:page/index.html", start) + "allowed_roots: [../pages]\n", encoding="utf-8")
    with pytest.raises(TaskError) as info:
        load_task(path)  # a root outside the task's folder needs the user's consent (keys live in folders like it)
    assert f"allowed_roots[0]: '../pages' ({pages.resolve()}) is outside the task's folder" in str(info.value)
    assert f"--files-root {pages.resolve()}" in str(info.value)
    assert load_task(path, files_root=pages).start_page() == (pages / "page" / "index.html").resolve().as_uri()
    absolute = (pages / "page" / "index.html").resolve().as_uri()
    path.write_text(BASE.replace("file:page/index.html", absolute) + f"allowed_roots: ['{pages}']\n", encoding="utf-8")
    assert load_task(path, files_root=tmp_path).start_page() == absolute


def test_a_root_in_installed_packages_needs_no_flag(tmp_path):
    # Installed packages' pages are public (the miniwob package's tasks): no --files-root needed.
    import sysconfig

    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    pages = next(p for p in sorted(site_packages.iterdir()) if p.is_dir() and any(p.glob("*.py")))
    page = next(pages.glob("*.py"))
    path = write(tmp_path, "").with_name("task.yaml")
    text = BASE.replace("file:page/index.html", page.as_uri()) + f"allowed_roots: ['{pages}']\n"
    path.write_text(text, encoding="utf-8")
    assert load_task(path).start_page() == page.as_uri()


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("/", "allowed_roots[0]: '/' is too broad"),
        (str(Path.home()), "is too broad; name the folder that holds the task's pages (not / or a home folder)"),
        (str(Path.home().parent), "is too broad"),
        ("missing", "allowed_roots[0]: 'missing': no such folder"),
    ],
)
def test_allowed_roots_must_be_real_and_narrow(tmp_path, root, expected):
    assert expected in problems(tmp_path, f"allowed_roots: ['{root}']\n")


def test_a_file_start_url_outside_the_folder_is_exit_2_from_the_cli(tmp_path):
    path = write(tmp_path, "").with_name("task.yaml")
    path.write_text(BASE.replace("file:page/index.html", "file:///etc/hostname"), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "run", str(path), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "target.start_url" in proc.stderr and "outside the task's folder" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_setup_goto_of_a_file_outside_the_roots_is_refused(tmp_path):
    (tmp_path.parent / f"{tmp_path.name}-outside.html").write_text("x", encoding="utf-8")
    text = f"setup: [{{goto: 'file:../{tmp_path.name}-outside.html'}}]\n"
    assert "setup[0].goto: 'file:../" in problems(tmp_path, text)


# -- hostile task files ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("setup: start the episode\n", "setup: Input should be a valid list"),
        ("setup: [startEpisode(3)]\n", "setup[0]: a setup step is a mapping with one of js, wait_for or goto (got the text"),
        ("setup: [[1, 2]]\n", "setup[0]: a setup step is a mapping with one of js, wait_for or goto (got list)"),
        ("setup: [{}]\n", "setup[0]: a setup step does one thing: js, wait_for or goto (this one has none)"),
        ("setup: [{js: '1', goto: page/index.html}]\n", "(this one has js and goto)"),
        ("setup: [{js: '1', run: true}]\n", "setup[0].run: unknown field"),
        (f"setup: [{{js: '1', timeout_ms: {10**12}}}]\n", f"less than or equal to {MAX_SETUP_TIMEOUT_MS}"),
        ("setup: [{js: '1', timeout_ms: 0}]\n", "setup[0].timeout_ms: Input should be greater than or equal to 1"),
        ("setup: [{js: '1', timeout_ms: .inf}]\n", "setup[0].timeout_ms"),
        ("setup: [{wait_for: {}}]\n", "wait_for takes one of 'js' (an expression) or 'selector' (CSS)"),
        ("setup: [{wait_for: {js: a, selector: b}}]\n", "wait_for takes one of"),
        ("setup: [{wait_for: {js: a, state: hidden}}]\n", "'state' applies to a selector wait"),
        ("setup: [{wait_for: {selector: a, state: gone}}]\n", "setup[0].wait_for.state"),
        ("setup: [{goto: 'javascript:alert(1)'}]\n", "setup[0].goto: 'javascript:alert(1)' is outside the task's origins"),
        ("settle: {max_ms: 1000000}\n", "settle.max_ms: Input should be less than or equal to 30000"),
        ("settle: {animations: yes please}\n", "settle.animations: Input should be a valid boolean"),
        ("settle: {wait: true}\n", "settle.wait: unknown field"),
        ("allowed_roots: /\n", "allowed_roots: Input should be a valid list"),
    ],
)
def test_hostile_setup_and_settle_sections_are_clear_usage_errors(tmp_path, text, expected):
    assert expected in problems(tmp_path, text)


def test_setup_and_settle_are_refused_on_desktop_tasks(tmp_path):
    text = """\
    name: d
    goal: g
    environment: desktop
    desktop: {command: ["{python}", "-c", "pass"]}
    setup: [{js: "1"}]
    settle: {animations: true}
    """
    with pytest.raises(TaskError) as info:
        parse_task(textwrap.dedent(text))
    message = str(info.value)
    assert "setup: setup applies to browser tasks only" in message
    assert "settle: settle applies to browser tasks only" in message


def test_the_task_as_recorded_keeps_its_setup_and_settle(tmp_path):
    task = load_task(write(tmp_path, "setup: [{js: startEpisode(1), timeout_ms: 2000}]\nsettle: {animations: true}\n"))
    data = json.loads(json.dumps(task.public_dict()))
    assert data["setup"][0]["js"] == "startEpisode(1)" and data["setup"][0]["timeout_ms"] == 2000
    assert data["settle"] == {"network_idle": False, "animations": True, "max_ms": 1500}


# -- a third-party benchmark page ---------------------------------------------------------------------------


@pytest.mark.browser
def test_a_miniwob_episode_runs_from_a_task_file(tmp_path):
    miniwob = pytest.importorskip("miniwob", reason="needs the miniwob package (its task pages)")
    html = Path(miniwob.__file__).parent / "html"
    path = tmp_path / "click-test.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: miniwob-click-test
        goal: Click the button.
        target: {{start_url: "{(html / "miniwob" / "click-test.html").as_uri()}"}}
        allowed_roots: ["{html}"]
        setup:
          - js: "Math.seedrandom(11); core.startEpisodeReal(); WOB_TASK_READY"
          - wait_for: {{js: WOB_TASK_READY}}
        checks:
          - {{type: js, expression: "({{reward: WOB_RAW_REWARD_GLOBAL, done: WOB_DONE_GLOBAL}})"}}
          - {{type: js, expression: WOB_RAW_REWARD_GLOBAL > 0}}
        script:
          - {{action: left_click, target: {{text: Click Me!}}}}
          - {{action: terminate, status: success}}
        """),
        encoding="utf-8",
    )
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs")
    run = read_run(result.run_dir)
    assert run.status is RunStatus.succeeded, run.end_reason
    assert [s.ok for s in run.setup] == [True, True]
    assert run.checks[0].detail == 'expression returned {"reward": 1, "done": true}'
