"""A finished run whose steps.jsonl stops short of what run.json counts (a copy cut off, a truncation) is said, not
shown as a shorter run without a word."""

from __future__ import annotations

from tests.conftest import glassbox_in_process
from tests.replays.label_runs import SECRET, SECRET_ENV, script_run


def test_a_cut_steps_file_is_said_by_show_and_diff(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    run_dir = script_run(tmp_path)
    steps = run_dir / "steps.jsonl"
    lines = steps.read_text().splitlines(keepends=True)
    assert len(lines) == 3
    steps.write_text(lines[0])
    runs = str(run_dir.parent)
    shown = glassbox_in_process("runs", "show", run_dir.name, "--runs-dir", runs)
    said = " ".join(shown.stdout.split())
    assert shown.returncode == 0
    assert "run.json counts 3 steps, but steps.jsonl holds 1: its end is missing" in said, said
    compared = glassbox_in_process("diff", run_dir.name, run_dir.name, "--runs-dir", runs)
    warned = " ".join(compared.stderr.split())
    assert f"warning: run {run_dir.name}: run.json counts 3 steps, but steps.jsonl holds 1" in warned, warned
    (tmp_path / "other").mkdir()
    whole = script_run(tmp_path / "other")
    fine = glassbox_in_process("runs", "show", whole.name, "--runs-dir", str(whole.parent))
    assert "its end is missing" not in fine.stdout
