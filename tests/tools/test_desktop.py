"""The desktop backend on a real X display (Xvfb): mss screenshots, pyautogui input, xdotool typing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import httpx
import pytest

from agent.task import TaskError, parse_task  # noqa: F401
from tests.conftest import ROOT, TASKS
from tools.actions import ActionError
from tools.desktop import Monitor, pick_monitor, to_screen
from tools.keys import pyautogui_keys
from tools.xvfb import DisplayError, check_display, display_gone
from tracer import RunStatus, read_run, read_steps


def require_xvfb() -> None:
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            raise AssertionError(f"CI must install {', '.join(missing)} (.ci/setup does)")
        pytest.skip(f"needs {', '.join(missing)}: sudo apt-get install xvfb xdotool")


def test_key_names_map_to_pyautogui():
    assert pyautogui_keys(["ctrl", "a"]) == ["ctrl", "a"]
    assert pyautogui_keys(["Return"]) == ["enter"]
    assert pyautogui_keys(["ctrl+shift+Esc"]) == ["ctrl", "shift", "esc"]
    assert pyautogui_keys(["super", "Left", "PageDown", "F5"]) == ["winleft", "left", "pagedown", "f5"]
    with pytest.raises(ActionError, match="unknown key name 'hyper'"):
        pyautogui_keys(["hyper"])


def test_multi_monitor_offsets():
    monitors = [
        {"left": 0, "top": 0, "width": 3840, "height": 1080},
        {"left": 0, "top": 0, "width": 1920, "height": 1080},
        {"left": 1920, "top": 0, "width": 1920, "height": 1080},
    ]
    second = pick_monitor(monitors, 2)
    assert second == Monitor(left=1920, top=0, width=1920, height=1080)
    assert to_screen((100, 50), second) == (2020, 50)
    assert to_screen((100, 50), pick_monitor(monitors, 1)) == (100, 50)
    with pytest.raises(DisplayError, match="monitor 3 does not exist; this display has 2 monitor"):
        pick_monitor(monitors, 3)


def test_a_missing_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(DisplayError, match="no X display: set DISPLAY"):
        check_display(None)
    with pytest.raises(DisplayError, match=r"X display :987 is not running"):
        check_display(":987")
    assert display_gone(":987") and display_gone(":987.0")  # no server there
    assert not display_gone("remote-host:0")  # another machine's display is not judged from here


def test_desktop_task_validation():
    base = TASKS / "desktop_form.yaml"
    text = base.read_text()
    with pytest.raises(TaskError, match="desktop scripts give coordinates or a text target found by OCR"):
        parse_task(text.replace("{action: left_click, coordinate: [381, 121]", "{action: left_click, target: {label: Name}"))
    parse_task(text.replace("{action: left_click, coordinate: [381, 121]", "{action: left_click, target: {text: Name}"))
    with pytest.raises(TaskError, match="js checks do not apply to desktop tasks"):
        parse_task(text.replace("  - type: window_title\n    text:", "  - type: js\n    expression:"))
    with pytest.raises(TaskError, match="needs a 'desktop' section"):
        # (each key once: duplicate keys are refused)
        parse_task(
            "\n".join(
                line for line in text.split("\n") if not line.startswith(("desktop:", "  command", "  xvfb", "  window_title"))
            )
        )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.desktop
def test_desktop_task_with_chinese_text_succeeds_shows_in_the_viewer_and_replays(tmp_path):
    # Runs go through the CLI, as a user runs them: pyautogui binds to one display per process.
    require_xvfb()
    from replays.viewer import ViewerServer

    runs = tmp_path / "runs"
    proc = cli("run", str(TASKS / "desktop_form.yaml"), "--runs-dir", str(runs))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run_dir] = [p for p in runs.iterdir() if p.is_dir()]
    run = read_run(run_dir)
    assert run.status is RunStatus.succeeded and all(c.passed for c in run.checks)
    steps = read_steps(run_dir)
    assert [s.action.text for s in steps if s.action.action == "type"][2] == "上海 Shanghai"
    clicks = [s for s in steps if s.action.action == "left_click"]
    assert all(s.evidence is not None and s.evidence.sized_by == "fixed" for s in clicks)
    assert steps[0].screenshot_size == (1024, 768)
    with ViewerServer(runs) as viewer:
        page = httpx.get(f"{viewer.url}/runs/{run.run_id}")
        assert page.status_code == 200 and "desktop-form" in page.text
        assert httpx.get(f"{viewer.url}/runs/{run.run_id}/files/{clicks[0].screenshot}").status_code == 200
        assert httpx.get(f"{viewer.url}/runs/{run.run_id}/files/{clicks[0].evidence.crop}").status_code == 200
    again = cli("replay", run.run_id, "--runs-dir", str(runs))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "replayed 9" in again.stdout and "model calls: 0" in again.stdout


@pytest.mark.desktop
def test_desktop_cli_exit_codes(tmp_path):
    require_xvfb()
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "run", str(TASKS / "desktop_form.yaml"), "--runs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Xlib" not in proc.stdout + proc.stderr


@pytest.mark.desktop
def test_desktop_form_with_text_targets_found_by_ocr(tmp_path):
    require_xvfb()
    from tools.ocr import ocr_available

    if ocr_available() is not None:
        pytest.skip(f"needs the ocr extra: {ocr_available()}")
    runs = tmp_path / "runs"
    proc = cli("run", str(TASKS / "desktop_form_ocr.yaml"), "--runs-dir", str(runs))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run_dir] = [p for p in runs.iterdir() if p.is_dir()]
    run = read_run(run_dir)
    assert run.status is RunStatus.succeeded and all(c.passed for c in run.checks)
    steps = read_steps(run_dir)
    found = [s.policy_state["target"] for s in steps if s.action is not None and s.action.action == "left_click"]
    assert [(t["by"], t["text"], t["match"]) for t in found] == [
        ("ocr", "Full name", "exact"),
        ("ocr", "Email", "exact"),
        ("ocr", "city", "contains"),
        ("ocr", "Send me the newsletter", "exact"),
        ("ocr", "Save", "exact"),
    ]
    assert found[2]["line"].startswith("City") and "城市" in found[2]["line"]
    for step in (s for s in steps if s.action is not None and s.action.action == "left_click"):
        left, top, right, bottom = step.policy_state["target"]["box"]
        x, y = step.coordinate.css  # the click landed inside the line's box
        assert left <= x <= right and top <= y <= bottom and step.policy_state["target"]["score"] > 0.5


@pytest.mark.desktop
def test_replay_of_a_desktop_run_compares_the_ocr_text_under_each_click(tmp_path):
    require_xvfb()
    from tools.ocr import ocr_available
    from tracer.ocr_files import ocr_step_path, read_ocr_step

    if ocr_available() is not None:
        pytest.skip(f"needs the ocr extra: {ocr_available()}")
    # OCR recorded for the clicks (and waited for: a loaded CPU reads slowly); an ASCII city, as typing Chinese
    # while OCR reads beside it is the slow path this test is not about.
    text = (TASKS / "desktop_form_ocr.yaml").read_text().replace("city: 上海 Shanghai", "city: Shanghai")
    task = tmp_path / "desktop_form_ocr.yaml"
    task.write_text(text.replace("\nlimits:", "\nocr: {enabled: true, steps: acting, catch_up_s: 300}\nlimits:"))
    runs = tmp_path / "runs"
    proc = cli("run", str(task), "--allow-programs", "--runs-dir", str(runs))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [source] = [p for p in runs.iterdir() if p.is_dir()]
    [save] = [s for s in read_steps(source) if s.policy_state.get("target", {}).get("text") == "Save"]
    recorded = read_ocr_step(source, save.index)
    assert recorded is not None and recorded.point is not None and recorded.point.under is not None
    assert recorded.point.under.text == "Save"

    # The recording now says another word was under the Save click: the live screen's "Save" is a divergence, and
    # the clicks before it (their recorded text under the point read the same now) replayed.
    tampered = recorded.model_copy(
        update={"point": recorded.point.model_copy(update={"under": recorded.point.under.model_copy(update={"text": "Delete"})})}
    )
    (source / ocr_step_path(save.index)).write_text(tampered.model_dump_json())
    changed = cli("replay", source.name, "--allow-programs", "--runs-dir", str(runs))
    assert changed.returncode == 1, changed.stdout + changed.stderr
    x, y = recorded.point.point
    said = " ".join(changed.stdout.split())  # the terminal wraps long lines
    assert (
        f"first divergence at recorded step {save.index}: the text under ({x}, {y}) changed: "
        "the recording read 'Delete' there, now 'Save'"
    ) in said
    assert f"replayed {save.index}, fallback 0" in said
    earlier = [s for s in read_steps(source)[: save.index] if s.action is not None and s.action.action == "left_click"]
    checked = [read_ocr_step(source, s.index) for s in earlier]
    assert len(checked) == 4 and all(c is not None and c.point is not None and c.point.under is not None for c in checked)


@pytest.mark.desktop
def test_two_desktop_runs_in_one_process_each_connect_to_their_own_display(tmp_path):
    """An eval worker runs episode after episode in one process; each run's Xvfb is new, often under the number
    the last one freed. pyautogui had kept its connection to the old server: the next run's first click failed
    and the run then hung in python-xlib waiting for a reply."""
    require_xvfb()
    from agent import load_task, run_task

    outer = os.environ.get("DISPLAY")
    for attempt in range(2):
        result = run_task(load_task(TASKS / "desktop_form.yaml"), policy="script", runs_dir=tmp_path / str(attempt))
        steps = read_steps(result.run_dir)
        assert result.status is RunStatus.succeeded, (attempt, [s.error for s in steps if s.error])
        assert not [s.error for s in steps if s.error]
        assert os.environ.get("DISPLAY") == outer  # not left pointing at the run's stopped Xvfb


@pytest.mark.desktop
def test_a_display_that_goes_away_mid_run_fails_the_run_saying_so(tmp_path, monkeypatch):
    require_xvfb()
    from agent import load_task, run_task
    from agent.events import Hooks, StepRecorded
    from tools.xvfb import Xvfb

    servers: list[Xvfb] = []
    start = Xvfb.start

    def recorded_start(self: Xvfb, timeout: float = 10.0) -> Xvfb:
        servers.append(self)
        return start(self, timeout)

    def stop_the_server(event: StepRecorded) -> None:
        if event.step.index == 1:
            servers[-1]._proc.kill()
            servers[-1]._proc.wait()

    monkeypatch.setattr(Xvfb, "start", recorded_start)
    hooks = Hooks()
    hooks.on(StepRecorded, stop_the_server)
    with pytest.raises(DisplayError, match="went away during the run"):  # not mss's bare AssertionError
        run_task(load_task(TASKS / "desktop_form.yaml"), policy="script", runs_dir=tmp_path, hooks=hooks)
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    run = read_run(run_dir)
    assert run.status is RunStatus.failed
    assert "the X display" in (run.end_reason or "") and "went away during the run" in (run.end_reason or ""), run.end_reason
    assert len(read_steps(run_dir)) >= 2  # what was recorded before stays
