"""--layout-seed and --site-url are for a task on the bundled site: given for a task that opens its own start URL
(or a desktop app) they were silently ignored, and the run was not the one asked for."""

from __future__ import annotations

import pytest

from tests.conftest import TASKS, glassbox_in_process


@pytest.mark.parametrize(
    ("task", "flag", "opens"),
    [
        ("animated_menu.yaml", ["--layout-seed", "3"], "its own start_url"),
        ("animated_menu.yaml", ["--site-url", "http://127.0.0.1:8765"], "its own start_url"),
        ("desktop_form.yaml", ["--layout-seed", "3"], "a desktop app"),
    ],
)
def test_a_site_flag_for_a_task_without_the_site_is_a_usage_error(tmp_path, task, flag, opens):
    done = glassbox_in_process("run", str(TASKS / task), *flag, "--runs-dir", str(tmp_path / "runs"))
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, said
    assert f"{flag[0]} is for a task on the bundled site; {TASKS / task} opens {opens}" in said
    assert not (tmp_path / "runs").exists()
