"""A url_matches pattern is filled in like the check's description: ``{input}`` and ``{seed}`` become their values,
matched as written (a dot in a value is a dot, not any character)."""

from __future__ import annotations

import textwrap

import pytest

from agent.checks import run_checks
from agent.task import load_task
from tools.fake import FakePage


def task_with(tmp_path, pattern: str):
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: pattern-task
        goal: Open product {{sku}}.
        inputs:
          sku: lamp.42
        target: {{start_url: "http://fake.invalid/"}}
        checks:
          - type: url_matches
            pattern: "{pattern}"
        script:
          - {{action: terminate, status: success}}
        """),
        encoding="utf-8",
    )
    task = load_task(path)
    task.seed = 7
    return task


def test_a_url_pattern_is_filled_in_and_its_values_match_as_written(tmp_path):
    task = task_with(tmp_path, "product={sku}&s={seed}$")
    [passed] = run_checks(task, FakePage(url="http://fake.invalid/p?product=lamp.42&s=7"), None)
    assert passed.passed, passed.detail
    assert passed.description.endswith("product=lamp.42&s=7$")
    [dot_is_a_dot] = run_checks(task, FakePage(url="http://fake.invalid/p?product=lampX42&s=7"), None)
    assert not dot_is_a_dot.passed


def test_an_http_json_path_is_on_the_start_pages_site(chromium, tmp_path):
    """A path check (/api/...) passed validation for a start_url task, then failed at run time: "relative but the
    task has no site base URL"."""
    from agent.loop import run_task
    from tests.conftest import require_chromium
    from tests.servers import LocalServer, QuietHandler

    require_chromium()

    class Site(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/api/state.json":
                self.reply(200, b'{"items": [{"name": "lamp", "ok": true}]}', "application/json")
            else:
                self.reply(200, b"<!doctype html><title>start</title><p>hello</p>", "text/html")

    with LocalServer(Site) as server:
        path = tmp_path / "t.yaml"
        path.write_text(
            textwrap.dedent(f"""\
            name: api-check
            goal: Look at the page.
            target: {{start_url: "{server.url}/"}}
            checks:
              - {{type: http_json, url: /api/state.json, path: items, match: {{name: lamp}}}}
            script:
              - {{action: terminate, status: success}}
            """),
            encoding="utf-8",
        )
        result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs")
    [check] = result.checks
    assert check.passed, check.detail


def test_a_start_url_is_filled_in_and_a_secret_cannot_go_in_it(tmp_path):
    """`start_url: ...?seed={seed}&user={user}` opened the literal braces."""
    from agent.task import TaskError

    path = tmp_path / "t.yaml"
    text = textwrap.dedent("""\
        name: start-url
        goal: Open episode {seed}.
        inputs: {user: "ada lovelace", pw: {value: s3cret-9, secret: true}}
        target: {start_url: "http://127.0.0.1:9/ep?seed={seed}&user={user}"}
        script:
          - {action: terminate, status: success}
        """)
    path.write_text(text, encoding="utf-8")
    task = load_task(path)
    task.seed = 4
    assert task.start_page() == "http://127.0.0.1:9/ep?seed=4&user=ada%20lovelace"
    path.write_text(text.replace("&user={user}", "&pw={pw}"), encoding="utf-8")
    with pytest.raises(TaskError, match=r"target.start_url: \{pw\} is a secret"):
        load_task(path)


def test_doubled_braces_write_a_brace(tmp_path):
    """`{city}` in a js check's destructuring was taken for an input ("refers to {city}, which is not an input"), and
    there was no way to type "Dear {name}". Doubled braces write one brace, as in Python's format strings."""
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: braces
        goal: Write "Dear {{name}}" to {who}.
        inputs: {who: Ada}
        target: {start_url: "http://fake.invalid/"}
        checks:
          - {type: js, expression: "(({{city}}) => city === 'Berlin')(window.form)"}
        script:
          - {action: type, text: "Dear {{name}}, from {who}"}
          - {action: terminate, status: success}
        """),
        encoding="utf-8",
    )
    task = load_task(path)
    assert task.goal_text() == 'Write "Dear {name}" to Ada.'
    assert task.render(task.script[0].arguments()["text"]) == "Dear {name}, from Ada"
    [check] = run_checks(task, FakePage(), None)  # the fake page answers no script: its error quotes the one sent
    assert '"(({city}) => city ===' in check.detail, check.detail
    assert check.description == "(({city}) => city === 'Berlin')(window.form) is true"


def test_an_unknown_name_says_how_to_write_braces(tmp_path):
    from agent.task import TaskError

    path = tmp_path / "t.yaml"
    path.write_text(
        'name: b\ngoal: Check {city}\ntarget: {start_url: "http://127.0.0.1:9/"}\n'
        "script:\n  - {action: terminate, status: success}\n",
        encoding="utf-8",
    )
    with pytest.raises(TaskError) as info:
        load_task(path)
    said = str(info.value)
    assert "refers to {city}, which is not an input (inputs: seed); write {{city}} for the text {city} itself" in said
