"""What run.json records of the task: its file as a whole path (a replay works from any folder)."""

from __future__ import annotations

from pathlib import Path

from agent import load_task, run_task
from tests.agent.test_events import THREE_STEPS, task_file
from tools.fake import FakeExecutor
from tracer import read_run


def test_a_run_records_its_task_file_whole_so_it_replays_from_any_folder(tmp_path, monkeypatch):
    """`glassbox run t.yaml` recorded "t.yaml": a replay started from another folder could not find it."""
    monkeypatch.chdir(tmp_path)
    relative = Path(task_file(tmp_path, THREE_STEPS).name)
    task = load_task(relative)
    result = run_task(task, policy="script", runs_dir=tmp_path / "runs", executor=FakeExecutor(secrets=task.secret_values()))
    recorded = read_run(result.run_dir).task_file
    assert recorded is not None and Path(recorded).is_absolute() and Path(recorded) == (tmp_path / relative)
