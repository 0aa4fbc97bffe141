"""An exported Playwright script is code a person runs: a crafted run.json (a run folder is untrusted) cannot put
code into it. The bundled run, recorded in real Chromium against the real shop."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from replays.playwright_export import ExportError, export_playwright
from tests.conftest import copy_bundled_run, require_chromium
from tests.servers import one_page
from tests.tools.page_events import run_one_click

MARKER = "PWNED_BY_RUN_JSON"


@pytest.fixture
def crafted(bundled_run, tmp_path):
    run_dir = copy_bundled_run(bundled_run, tmp_path / "runs").run_dir
    record = json.loads((run_dir / "run.json").read_text())

    def write(**changes: object):
        (run_dir / "run.json").write_text(json.dumps({**record, **changes}))
        return run_dir

    return record, write


def test_a_run_name_cannot_end_the_scripts_docstring(crafted, tmp_path) -> None:
    _record, write = crafted
    name = f'x"""\nimport os; os.system("echo {MARKER}")\n"""'
    out = tmp_path / "replay.py"
    export_playwright(write(task_name=name, run_id=f'id"""{MARKER}'), out)
    source = out.read_text()
    tree = ast.parse(source)  # still a program
    docstring = ast.get_docstring(tree) or ""
    assert name in docstring and f'id"""{MARKER}' in docstring  # the names, as text
    code = source.replace(source[: source.index('"""', 30) + 3], "")  # everything after the docstring
    assert MARKER not in code


def test_a_viewport_that_is_not_numbers_is_refused(crafted, tmp_path) -> None:
    record, write = crafted
    task = {**record["task"], "browser": {**record["task"].get("browser", {}), "viewport": [f"1280); print('{MARKER}'", 800]}}
    with pytest.raises(ExportError, match=r"the recorded task is not valid \(browser.viewport"):
        export_playwright(write(task=task), tmp_path / "replay.py")
    assert not (tmp_path / "replay.py").exists()


NO_FRAMES_PAGE = b"""<!doctype html><title>start</title>
<button style="width:1280px;height:700px" onclick="document.title = 'pressed'">Press</button>
<script>window.requestAnimationFrame = () => 0;</script>"""


def test_a_page_without_animation_frames_does_not_hang_the_exported_script(tmp_path) -> None:
    """The script's settle waited for two animation frames in the page's own world: a page that replaced
    requestAnimationFrame held it for ever (DevTools calls have no time limit there)."""
    require_chromium()
    with one_page(NO_FRAMES_PAGE) as server:
        run_id, (first, _) = run_one_click(tmp_path, f"{server.url}/", (500, 500))
        assert first.outcome == "ok" and first.title == "start"
        script = tmp_path / "replay.py"
        export_playwright(tmp_path / "runs" / run_id, script)
        replayed = subprocess.run(
            [sys.executable, str(script), "--base-url", server.url], capture_output=True, text=True, timeout=90
        )
    assert replayed.returncode == 0, replayed.stderr
