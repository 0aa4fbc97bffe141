"""One process at a time runs an eval: a second `glassbox eval --eval-id SAME` while the first runs is refused
(it ran every episode a second time beside the first), naming the process that holds it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evals.runner import LOCK_FILE, EvalUsageError, run_eval
from evals.suite import load_suite
from tests.conftest import TASKS

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, str(os.getpid()).encode(), 0)
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_copy_of_a_running_eval_is_refused(tmp_path) -> None:
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(f"name: locked\ntasks: [{TASKS / 'publish_product.yaml'}]\nseeds: [1]\n", encoding="utf-8")
    suite = load_suite(suite_file)
    folder = tmp_path / "runs" / "evals" / "same-id"
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder / LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(EvalUsageError, match=rf"eval same-id is running already \(process {holder.pid}\)"):
            run_eval(suite, runs_dir=tmp_path / "runs", eval_id="same-id")
    finally:
        holder.kill()
        holder.wait()
    assert not (folder / "plan.json").exists()  # nothing was planned or run by the refused copy
