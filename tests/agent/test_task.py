"""Task files: the bundled ones load; broken ones fail with file, field, line and problem, exit code 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.task import TaskError, load_task, parse_task
from tests.conftest import TASKS

VALID = """\
name: t
goal: Publish {product_name} as {username} using {password}
inputs:
  username: admin
  password: {value: pw-123, secret: true}
  product_name: Lamp
target: {site: shop}
files:
  lamp: {path: fixtures/desk_lamp.png}
checks:
  - {type: text_present, text: "{product_name}"}
script:
  - {action: left_click, target: {label: Username}}
  - {action: type, text: "{password}"}
  - {action: upload_file, file: lamp, target: {label: Main image}}
  - {action: terminate, status: success}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "fixtures").mkdir(exist_ok=True)
    (tmp_path / "fixtures" / "desk_lamp.png").write_bytes((TASKS / "fixtures" / "desk_lamp.png").read_bytes())
    path = tmp_path / "task.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["publish_product.yaml", "publish_product_zh.yaml"])
def test_bundled_tasks_load(name):
    task = load_task(TASKS / name)
    assert task.script and task.checks
    assert "<secret>password</secret>" in task.goal_text()
    assert "Xq7-tulip-4821" not in task.goal_text()
    assert all(p.is_file() for p in task.file_paths().values())


def test_secrets_render_as_placeholders_and_stay_out_of_public_dict(tmp_path):
    task = load_task(write(tmp_path, VALID))
    assert task.goal_text() == "Publish Lamp as admin using <secret>password</secret>"
    assert task.secret_values() == {"password": "pw-123"}
    assert "pw-123" not in repr(task.public_dict())


def test_input_from_environment(tmp_path, monkeypatch):
    path = write(tmp_path, VALID.replace("{value: pw-123, secret: true}", "{env: GLASSBOX_SHOP_PW, secret: true}"))
    monkeypatch.setenv("GLASSBOX_SHOP_PW", "from-env")
    assert load_task(path).secret_values() == {"password": "from-env"}
    monkeypatch.delenv("GLASSBOX_SHOP_PW")
    with pytest.raises(TaskError, match="environment variable GLASSBOX_SHOP_PW is not set"):
        load_task(path).secret_values()


BROKEN = [
    # (what to change, expected message fragment, expected line)
    (("name: t\n", ""), "name: required field is missing", 1),
    (
        ("target: {site: shop}", "target: {site: shop, layout_seed: many}"),
        "target.layout_seed: Input should be a valid integer",
        7,
    ),
    (('  - {action: type, text: "{password}"}', "  - {action: fly, text: x}"), "script[1]: unknown action 'fly'", 14),
    (("file: lamp,", "file: /etc/passwd,"), "script[2].file: '/etc/passwd' is not a declared file", 15),
    (
        ("  - {action: terminate, status: success}", '  - {action: goto_url, url: "https://evil.example/x"}'),
        "script[3].url: 'https://evil.example/x' is outside allowed_origins",
        16,
    ),
    (("fixtures/desk_lamp.png", "fixtures/missing.png"), "files.lamp.path: no such file", 9),
    (("goal: Publish", "goal: Publish {nope}"), "goal: refers to {nope}, which is not an input", 2),
    (("checks:\n", "checkz:\n"), "checkz: unknown field", 10),
    (('{type: text_present, text: "{product_name}"}', "{type: sql, query: x}"), "checks[0]", 11),
    (
        ("{action: left_click, target: {label: Username}}", "{action: left_click, coordinate: [1, 2], target: {label: U}}"),
        "either 'target' or 'coordinate'",
        13,
    ),
    (("{action: left_click, target: {label: Username}}", "{action: left_click}"), "coordinate: Field required", 13),
]


@pytest.mark.parametrize("change, message, line", BROKEN, ids=[b[1][:40] for b in BROKEN])
def test_broken_task_files_name_field_line_and_problem(tmp_path, change, message, line):
    old, new = change
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(TaskError) as info:
        load_task(path)
    text = str(info.value)
    assert str(path) in text
    assert message in text
    assert f"line {line}:" in text


def test_yaml_syntax_error_has_a_line(tmp_path):
    path = write(tmp_path, VALID.replace("target: {site: shop}", "target: {site: shop"))
    with pytest.raises(TaskError, match=r"line \d+: not valid YAML"):
        load_task(path)


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(TaskError, match="must be a mapping"):
        parse_task("- just a list")
    with pytest.raises(TaskError, match="file not found"):
        load_task(tmp_path / "nope.yaml")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_broken_task_exits_2_with_the_message(tmp_path):
    path = write(tmp_path, VALID.replace('  - {action: type, text: "{password}"}', "  - {action: fly, text: x}"))
    result = run_cli("run", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert "script[1]: unknown action 'fly'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_cli_usage_errors_exit_2(tmp_path):
    assert run_cli("run", str(tmp_path / "missing.yaml")).returncode == 2
    assert run_cli("run", str(TASKS / "publish_product.yaml"), "--layout-seed", "-1").returncode == 2
    assert run_cli("run", str(TASKS / "publish_product.yaml"), "--bogus").returncode == 2
    result = run_cli("run", str(TASKS / "publish_product.yaml"), "--policy", "telepathy", "--runs-dir", str(tmp_path))
    assert result.returncode == 2 and "unknown policy 'telepathy'" in result.stderr


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ('{start_url: "htp:/broken url"}', "line 3: target.start_url: start_url must be an http:// or https:// URL"),
        ("{site: shopp}", "line 3: target.site: Input should be 'shop'"),
        ("{}", "line 3: target.start_url: required field is missing"),
        ("{site: shop, path: 5}", "line 3: target.path: Input should be a valid string"),
    ],
)
def test_a_bad_target_is_one_problem_of_the_kind_it_names(target, said):
    """A bad start_url also said "target.site: required field is missing" and "target.start_url: unknown field"."""
    with pytest.raises(TaskError) as info:
        parse_task(f"name: t\ngoal: g\ntarget: {target}\n")
    problems = [line.strip() for line in str(info.value).splitlines()[1:] if line.strip()] or [str(info.value)]
    assert len(problems) == 1 and said in problems[0], problems


def test_goto_url_to_a_local_page_says_why_it_is_refused(tmp_path: Path) -> None:
    """A page beside a file: start page was refused as "outside allowed_origins", which says nothing of why."""
    (tmp_path / "one.html").write_text("<title>one</title>", encoding="utf-8")
    (tmp_path / "two.html").write_text("<title>two</title>", encoding="utf-8")
    path = tmp_path / "t.yaml"
    path.write_text(
        'name: local\ngoal: Open the second page.\ntarget: {start_url: "file:one.html"}\n'
        'script:\n  - {action: goto_url, url: "two.html"}\n  - {action: terminate, status: success}\n',
        encoding="utf-8",
    )
    with pytest.raises(TaskError, match=r"script\[0\]\.url: 'two.html': goto_url never opens local pages .* setup \(goto\)"):
        load_task(path)
