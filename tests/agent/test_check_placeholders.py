"""A url_matches pattern is filled in like the check's description: ``{input}`` and ``{seed}`` become their values,
matched as written (a dot in a value is a dot, not any character)."""

from __future__ import annotations

import textwrap

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
