"""``glassbox runs ocr RUN``: the screens of a recorded run that OCR did not read while it ran are read afterwards,
with the run's OCR settings and its task's secrets. Real OCR (rapidocr) on a real recorded run of the shop task."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from tests.conftest import copy_bundled_run, glassbox_in_process
from tools.ocr import ocr_available
from tracer.ocr_files import OCR_DIR, read_ocr_index, read_ocr_step


@pytest.fixture
def short_run(bundled_run, tmp_path) -> Path:
    """A copy of the bundled run, recorded without OCR, cut to its first 5 steps (to read them quickly)."""
    if ocr_available() is not None:
        pytest.skip(f"needs the ocr extra: {ocr_available()}")
    run_dir = copy_bundled_run(bundled_run, tmp_path / "runs").run_dir
    assert not (run_dir / OCR_DIR).exists()
    steps = run_dir / "steps.jsonl"
    steps.write_text("".join(steps.read_text(encoding="utf-8").splitlines(keepends=True)[:5]), encoding="utf-8")
    return run_dir


def edit_run(run_dir: Path, **changes: object) -> None:
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    record.update(changes)
    (run_dir / "run.json").write_text(json.dumps(record), encoding="utf-8")


def test_a_run_recorded_without_ocr_is_read_afterwards_and_only_what_is_missing_again(short_run: Path) -> None:
    done = glassbox_in_process("runs", "ocr", str(short_run))
    assert done.returncode == 0, done.stderr
    assert "read 5 step(s)" in done.stdout and "OCR done for 5 of 5 steps" in done.stdout
    index = read_ocr_index(short_run)
    assert index is not None and index.read_after_run == [0, 1, 2, 3, 4] and index.not_done == 0
    first = json.loads((short_run / OCR_DIR / "step-0000.json").read_text(encoding="utf-8"))
    assert "Sign in" in [line["text"] for line in first["lines"]]
    # a step the run did not get to: only it is read again
    (short_run / OCR_DIR / "index.json").write_text(
        index.model_copy(
            update={"steps": {**index.steps, 3: index.steps[3].model_copy(update={"status": "not_done"})}}
        ).model_dump_json(),
        encoding="utf-8",
    )
    again = glassbox_in_process("runs", "ocr", str(short_run))
    assert again.returncode == 0 and "read 1 step(s)" in again.stdout, again.stdout + again.stderr
    reread = json.loads((short_run / OCR_DIR / "step-0003.json").read_text(encoding="utf-8"))
    assert reread["read"]["mode"] in ("partial", "reused"), reread["read"]  # against step 2's recorded lines
    # a step whose file was damaged (by hand, a full disk) is read again, though the index says done
    (short_run / OCR_DIR / "step-0001.json").write_text('{"step": 1, "lines": [', encoding="utf-8")
    (short_run / OCR_DIR / "step-0002.json").unlink()
    repaired = glassbox_in_process("runs", "ocr", str(short_run))
    assert repaired.returncode == 0 and "read 2 step(s)" in repaired.stdout, repaired.stdout + repaired.stderr
    assert read_ocr_step(short_run, 1) is not None and read_ocr_step(short_run, 2) is not None
    everything = glassbox_in_process("runs", "ocr", str(short_run), "--all")
    assert "read 5 step(s)" in everything.stdout


def test_secrets_that_cannot_be_had_and_a_running_run_are_refused(short_run: Path, tmp_path: Path) -> None:
    task = json.loads((short_run / "run.json").read_text(encoding="utf-8"))["task"]
    task["inputs"]["password"] = {"env": "GLASSBOX_TEST_OCR_PASSWORD", "secret": True}
    edit_run(short_run, task=task, task_file=str(tmp_path / "gone.yaml"))
    gone = glassbox_in_process("runs", "ocr", str(short_run))
    assert gone.returncode == 2 and "declares secrets (password) and its task file is gone" in gone.stderr, gone.stderr
    task_file = tmp_path / "t.yaml"
    task_file.write_text(
        (Path(__file__).parents[2] / "tasks" / "publish_product.yaml")
        .read_text(encoding="utf-8")
        .replace("password: {value: Xq7-tulip-4821, secret: true}", "password: {env: GLASSBOX_TEST_OCR_PASSWORD}"),
        encoding="utf-8",
    )
    edit_run(short_run, task_file=str(task_file))
    os.environ.pop("GLASSBOX_TEST_OCR_PASSWORD", None)
    unset = glassbox_in_process("runs", "ocr", str(short_run))
    assert unset.returncode == 2 and "GLASSBOX_TEST_OCR_PASSWORD" in unset.stderr, unset.stderr
    assert not (short_run / OCR_DIR).exists()  # nothing read without its secrets
    edit_run(short_run, status="running", pid=os.getpid(), host=socket.gethostname())
    running = glassbox_in_process("runs", "ocr", str(short_run))
    assert running.returncode == 2 and "is still running" in running.stderr
