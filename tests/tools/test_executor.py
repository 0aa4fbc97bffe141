"""The executor interface, the shared act path, and the real loop on the fake executor (no Chromium, no display)."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from agent import load_task, run_task
from agent.policies import PolicyUnavailable
from tests.conftest import TASKS
from tools.actions import ActionError, LeftClick, Type, Wait, parse_tool_call
from tools.actions import ToolCall as Call
from tools.browser import BrowserExecutor
from tools.desktop import DesktopExecutor
from tools.executor import Executor, page_of
from tools.fake import FakeExecutor, FakePage, screenshot
from tracer import RunStatus, read_steps


def act(executor: Executor, deadline: float | None = None, **arguments: object):
    action = parse_tool_call(Call(name="computer_use", arguments=arguments))
    return executor.act(action, deadline=deadline)


# -- the interface ------------------------------------------------------------------------------------------------


def test_every_executor_meets_the_interface_and_only_a_browser_has_a_page():
    browser, desktop, fake, page = BrowserExecutor(), DesktopExecutor(), FakeExecutor(), FakePage()
    for executor, kind in ((browser, "browser"), (desktop, "desktop"), (fake, "fake"), (page, "fake")):
        assert isinstance(executor, Executor) and executor.kind == kind
    assert page_of(browser) is browser and page_of(page) is page
    assert page_of(desktop) is None and page_of(fake) is None
    # The desktop no longer pretends to be a browser.
    assert not any(hasattr(desktop, name) for name in ("page", "goto", "locate"))


# -- the shared act path, on the fake -----------------------------------------------------------------------------


def test_a_click_is_mapped_to_css_pixels_and_recorded():
    fake = FakeExecutor(size=(1280, 800))
    outcome = act(fake, action="left_click", coordinate=[500, 250])
    assert outcome.status == "ok" and outcome.coordinate is not None
    assert outcome.coordinate.css == (640, 200)
    assert fake.points == [(640, 200)] and [a.action for a in fake.performed] == ["left_click"]


def test_a_secret_is_revealed_only_when_typed():
    fake = FakeExecutor(secrets={"password": "hunter2"})
    assert act(fake, action="type", text="pw: <secret>password</secret>!").status == "ok"
    assert fake.typed == ["pw: hunter2!"]
    asked = fake.actions[0]
    assert isinstance(asked, Type) and asked.text == "pw: <secret>password</secret>!"  # the record keeps the mask
    unknown = act(fake, action="type", text="<secret>pin</secret>")
    assert (unknown.status, unknown.error) == ("error", "unknown secret 'pin'; known secrets: password")
    assert fake.typed == ["pw: hunter2!"]


def test_typing_and_waiting_stop_at_the_deadline():
    fake = FakeExecutor()
    spent = time.monotonic() - 1
    typing = act(fake, deadline=spent, action="type", text="x" * 1000)
    assert typing.error == "cut off: the run's time budget ran out while typing (0 of 1,000 characters typed)"
    waiting = act(fake, deadline=spent, action="wait", time=5)
    assert waiting.error == "cut off: the run's time budget ran out during the 5 s wait"
    assert fake.typed == [] and fake.performed == []


def test_scripted_errors_fail_the_action_with_its_coordinate():
    fake = FakeExecutor(errors={1: "the button is disabled"})
    assert act(fake, action="left_click", coordinate=[10, 10]).status == "ok"
    failed = act(fake, action="left_click", coordinate=[1000, 1000])
    assert (failed.status, failed.error) == ("error", "the button is disabled")
    assert failed.coordinate is not None and failed.coordinate.css == (1279, 799)
    assert len(fake.actions) == 2 and len(fake.performed) == 1


def test_screens_follow_the_actions_and_a_plain_fake_opens_no_url():
    fake = FakeExecutor([screenshot("white", (200, 100)), screenshot("navy", (200, 100))], size=(200, 100))
    first = fake.perceive()
    act(fake, action="wait", time=1)
    second, third = fake.perceive(), fake.perceive()
    assert first.screenshot_png != second.screenshot_png and second.screenshot_png == third.screenshot_png
    goto = fake.act(parse_tool_call(Call(name="goto_url", arguments={"url": "http://a.invalid/"}), browser_tools=("goto_url",)))
    assert goto.error == "the fake executor has no page to open 'http://a.invalid/' in"
    assert isinstance(fake.actions[0], Wait) and not isinstance(fake.actions[0], LeftClick)


# -- the real loop on the fake ------------------------------------------------------------------------------------


def fake_task(tmp_path: Path, script: str, *, checks: str = "[]", limits: str = "{max_steps: 10}") -> Path:
    path = tmp_path / "fake.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: fake-task
        goal: Sign in as {{username}} and finish.
        inputs:
          username: ada
          password: {{value: s3cret-Pw-77, secret: true}}
        target: {{start_url: "http://fake.invalid/login"}}
        checks: {checks}
        limits: {limits}
        script:
        """)
        + textwrap.indent(textwrap.dedent(script), "  "),
        encoding="utf-8",
    )
    return path


def test_the_loop_runs_a_script_end_to_end_on_the_fake(tmp_path):
    path = fake_task(
        tmp_path,
        """\
        - {action: left_click, coordinate: [500, 500]}
        - {action: type, text: "{password}"}
        - {action: goto_url, url: "http://fake.invalid/done"}
        - {action: terminate, status: success}
        """,
        checks='[{type: url_matches, pattern: "/done$"}]',
    )
    task = load_task(path)
    # The caller's executor gets the task's secrets, as the environment gives them to a real one.
    fake = FakePage([screenshot("white"), screenshot("gray")], url="http://fake.invalid/login", secrets=task.secret_values())
    with fake:
        result = run_task(task, policy="script", runs_dir=tmp_path / "runs", executor=fake)
        assert fake.started and not fake.closed  # the caller's executor: the caller closes it
    assert fake.closed
    assert result.status is RunStatus.succeeded, result.end_reason
    assert result.end_reason == "the agent ended the task (success)" and result.steps == 4
    assert [(c.type, c.passed, c.detail) for c in result.checks] == [("url_matches", True, "URL is http://fake.invalid/done")]
    assert fake.typed == ["s3cret-Pw-77"] and fake.points == [(640, 400)]
    steps = read_steps(result.run_dir)
    assert [s.action.action if s.action else None for s in steps] == ["left_click", "type", "goto_url", "terminate"]
    assert steps[1].action is not None and steps[1].action.text == "<secret>password</secret>"
    assert steps[3].url == "http://fake.invalid/done"
    assert all(Image.open(result.run_dir / s.screenshot).size == (1280, 800) for s in steps)
    assert not any(
        "s3cret-Pw-77" in p.read_text(errors="replace")
        for p in result.run_dir.rglob("*")
        if p.is_file() and p.suffix in (".json", ".jsonl")
    )


def test_the_loop_stops_after_consecutive_errors_and_records_them(tmp_path):
    path = fake_task(
        tmp_path,
        """\
        - {action: left_click, coordinate: [100, 100]}
        - {action: terminate, status: success}
        """,
        limits="{max_steps: 10, max_consecutive_errors: 3}",
    )
    fake = FakeExecutor(errors=lambda number, action: f"no button here ({number})")
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs", executor=fake)
    assert result.status is RunStatus.failed
    assert result.end_reason == "3 consecutive errors (limit 3); last: no button here (2)"
    steps = read_steps(result.run_dir)
    assert [(s.outcome, s.error_kind, s.error) for s in steps] == [
        ("error", "executor", f"no button here ({i})") for i in range(3)
    ]
    assert len(fake.actions) == 3 and fake.performed == []  # the script repeats a failed step


def test_the_loop_stops_at_the_step_limit(tmp_path):
    path = fake_task(tmp_path, "- {action: wait, time: 1}\n" * 5, limits="{max_steps: 3}")
    fake = FakeExecutor()
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs", executor=fake)
    assert result.end_reason == "step limit reached (3 steps)" and result.steps == 3
    assert [a.action for a in fake.performed] == ["wait"] * 3 and fake.observations == 3
    assert json.loads((result.run_dir / "run.json").read_text())["status"] == "failed"


def test_a_desktop_style_executor_fails_page_checks_with_a_reason(tmp_path):
    path = fake_task(tmp_path, "- {action: terminate, status: success}\n", checks="[{type: text_present, text: Welcome}]")
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs", executor=FakeExecutor())
    assert [(c.passed, c.detail) for c in result.checks] == [
        (False, "a text_present check needs a browser page; this run has none")
    ]
    assert result.status is RunStatus.failed


# -- a bad policy stops before anything starts --------------------------------------------------------------------


@pytest.fixture
def nothing_may_start(monkeypatch):
    """Starting the bundled site, Chromium or any environment fails the test (and records that it was tried)."""
    started: list[str] = []

    def refuse(what: str):
        def start(*args: object, **kwargs: object):
            started.append(what)
            raise AssertionError(f"{what} was started")

        return start

    import agent.environment
    import agent.loop
    from sites.shop import ShopServer

    monkeypatch.setattr(agent.loop, "open_environment", refuse("the environment"))
    monkeypatch.setattr(agent.environment, "open_environment", refuse("the environment"))
    monkeypatch.setattr(BrowserExecutor, "start", refuse("Chromium"))
    monkeypatch.setattr(ShopServer, "__enter__", refuse("the shop"))
    return started


@pytest.mark.parametrize(
    ("policy", "update", "message"),
    [
        ("telepathy", {}, "unknown policy 'telepathy'; available: script, qwen3vl, openai"),
        ("openai", {"model": "m"}, "--policy openai needs --base-url"),
        ("openai", {"model": "m", "base_url": "ftp://x"}, "base URL must start with http:// or https://, not 'ftp://x'"),
        ("qwen3vl", {}, "--policy qwen3vl needs --model"),
    ],
)
def test_a_bad_policy_fails_before_any_environment_starts(tmp_path, nothing_may_start, policy, update, message):
    task = load_task(TASKS / "publish_product.yaml")
    with pytest.raises(PolicyUnavailable, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        run_task(task, policy=policy, runs_dir=tmp_path / "runs", policy_overrides=update)
    assert nothing_may_start == [] and not (tmp_path / "runs").exists()


def test_script_policy_without_a_script_fails_before_any_environment_starts(tmp_path, nothing_may_start):
    task = load_task(TASKS / "publish_product.yaml").model_copy(update={"script": None})
    with pytest.raises(PolicyUnavailable, match="has no 'script:' section"):
        run_task(task, policy="script", runs_dir=tmp_path / "runs")
    assert nothing_may_start == []


def test_glassbox_run_with_an_unknown_policy_exits_2_and_starts_nothing(tmp_path, nothing_may_start):
    from typer.testing import CliRunner

    from cli.app import app

    result = CliRunner().invoke(
        app, ["run", str(TASKS / "publish_product.yaml"), "--policy", "telepathy", "--runs-dir", str(tmp_path / "runs")]
    )
    assert result.exit_code == 2, result.output
    assert "unknown policy 'telepathy'" in result.output
    assert nothing_may_start == [] and not (tmp_path / "runs").exists()


def test_the_desktop_has_no_element_tree_for_script_targets():
    from agent.policies import make_policy

    task = load_task(TASKS / "desktop_form.yaml")
    policy = make_policy("script", task, FakeExecutor())
    with pytest.raises(ActionError, match="a desktop has no element tree"):
        policy._locate(None)  # type: ignore[arg-type]
