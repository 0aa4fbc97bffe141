"""Ctrl-C closes a run as interrupted, whatever it was doing: also when the interrupt surfaces as another error (Ctrl-C
reaches the whole process group, so Chromium and Playwright's driver may fail first, or a library may wrap the
KeyboardInterrupt), and also during the success checks, after the last step (run.json was left "running")."""

from __future__ import annotations

import os
import signal
import time

import pytest

import agent.loop as loop_module
from tests.agent.test_events import run
from tools.errors import HarnessError
from tools.fake import FakeExecutor
from tracer import RunStatus, read_run


class _InterruptedMidPerceive(FakeExecutor):
    """On the second screen, Ctrl-C arrives, and what the device library raises is its own error."""

    def perceive(self):  # type: ignore[no-untyped-def]
        if self.observations == 1:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # the handler raises KeyboardInterrupt here
            except KeyboardInterrupt as exc:
                raise RuntimeError("Target page, context or browser has been closed") from exc
        return super().perceive()


def test_an_interrupt_that_surfaces_as_another_error_is_recorded_as_interrupted(tmp_path):
    result, _ = run(tmp_path, fake=_InterruptedMidPerceive())
    assert result.status is RunStatus.interrupted and result.end_reason == "interrupted by the user"
    record = read_run(result.run_dir)
    assert record.status is RunStatus.interrupted and record.ended_at is not None


def test_the_same_error_without_an_interrupt_is_still_a_harness_error(tmp_path):
    class _Crashing(FakeExecutor):
        def perceive(self):  # type: ignore[no-untyped-def]
            if self.observations == 1:
                raise RuntimeError("Target page, context or browser has been closed")
            return super().perceive()

    with pytest.raises(HarnessError, match="browser has been closed"):
        run(tmp_path, fake=_Crashing())
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert read_run(run_dir).status is RunStatus.failed


def test_ctrl_c_during_the_checks_closes_the_run(tmp_path, monkeypatch):
    def interrupted_checks(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
        raise AssertionError("the interrupt did not arrive")

    monkeypatch.setattr(loop_module, "run_checks", interrupted_checks)
    result, _ = run(tmp_path)
    record = read_run(result.run_dir)
    assert (result.status, record.status) == (RunStatus.interrupted, RunStatus.interrupted)
    assert record.ended_at is not None and record.end_reason == "interrupted by the user"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after the run


def test_ctrl_c_while_the_end_is_written_comes_after_the_record_is_whole(tmp_path, monkeypatch):
    """The end of a run (run.json's status, the index, the last events) is written whole: Ctrl-C there left run.json
    "running" with no end. The interrupt is raised once it is written."""
    from tracer.store import RunWriter

    finish = RunWriter.finish

    def interrupted_finish(self, **kwargs):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of writing the end
        time.sleep(0.2)
        return finish(self, **kwargs)

    monkeypatch.setattr(RunWriter, "finish", interrupted_finish)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path)
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")]
    record = read_run(run_dir)
    assert record.status is RunStatus.succeeded and record.ended_at is not None  # the run was done: said so
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
