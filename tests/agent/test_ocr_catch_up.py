"""The OCR worker's catch-up: what is still queued when the run ends is read on all cores (unless other work keeps
them busy), and nothing is lost."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agent import load_task, ocr_worker
from agent.events import RunEnded, RunStarted, StepRecorded
from agent.ocr_worker import OcrWorker
from tests.conftest import TASKS, copy_bundled_run
from tools.ocr import OcrLine, OcrResult
from tracer import RunStatus, read_run, read_steps
from tracer.ocr_files import read_ocr_index, read_ocr_step


class Recording:
    """A stand-in engine that says which of its copies read each image (the real models are not under test)."""

    name = "recording"

    def __init__(self, label: str, reads: list[str], gate: threading.Event | None = None) -> None:
        self.label, self.reads, self.gate = label, reads, gate
        self.faster: Recording | None = None
        self.reading = threading.Event()

    def read(self, image: Any) -> OcrResult:
        self.reading.set()
        if self.gate is not None:
            assert self.gate.wait(600), "the test never let the first read finish"
        self.reads.append(self.label)
        return OcrResult(engine=self.name, size=(1280, 800), lines=[OcrLine(text=self.label, box=(0, 0, 9, 9), score=1)])

    def all_cores(self) -> "Recording":
        if self.faster is None:
            self.faster = Recording("all cores", self.reads)
        return self.faster


@pytest.mark.parametrize("busy", [False, True], ids=["idle machine", "busy machine"])
def test_steps_still_queued_at_the_end_are_read_on_all_cores_when_the_machine_is_idle(
    bundled_run, tmp_path, monkeypatch, busy: bool
) -> None:
    monkeypatch.setattr(ocr_worker, "machine_busy", lambda **_: busy)  # this shared machine's load varies
    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    steps = read_steps(result.run_dir)[:4]
    run = read_run(result.run_dir)
    task = load_task(TASKS / "publish_product.yaml")
    task.ocr.catch_up_s = 600
    reads: list[str] = []
    first_read_may_finish = threading.Event()
    engine = Recording("one thread", reads, gate=first_read_may_finish)
    worker = OcrWorker(task, engine=engine)

    worker.started(RunStarted(run=run, run_dir=result.run_dir))
    for step in steps:  # the first is read (held until the run ends), the others wait in the queue
        worker.recorded(StepRecorded(run_id=run.run_id, step=step))
    assert engine.reading.wait(600)  # the first read is under way when the run ends
    end = RunEnded(run=run, run_dir=result.run_dir, status=RunStatus.succeeded, end_reason="done")
    ending = threading.Thread(target=worker.ended, args=(end,))
    ending.start()
    # The end is known, and whether all cores are free decided (their engine loads beside the read under way):
    # let the first read finish. The reads after it use the all-cores engine once it is ready.
    assert worker._run_over.wait(600) and worker.catch_up_decided.wait(600)
    first_read_may_finish.set()
    ending.join(600)
    assert not ending.is_alive()

    rest = "one thread" if busy else "all cores"
    assert reads == ["one thread", rest, rest, rest]
    index = read_ocr_index(result.run_dir)
    assert index is not None and index.not_done == 0 and {s.status for s in index.steps.values()} == {"done"}
    assert index.catch_up_on == rest
    texts = [read_ocr_step(result.run_dir, s.index) for s in steps]
    assert [f.lines[0].text if f is not None else None for f in texts] == reads


@pytest.mark.parametrize(("idle", "busy"), [(2.0, False), (1.6, False), (1.4, True), (0.3, True), (None, None)])
def test_the_catch_up_looks_at_how_idle_the_cores_are_now_not_at_the_load_average(monkeypatch, idle, busy) -> None:
    # The 1-minute load average still counts the runs just over (an eval's, a benchmark's): the cores' idle time
    # over a moment says whether all of them are free now.
    monkeypatch.setattr(ocr_worker.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(ocr_worker, "free_cores", lambda window_s, ours=None: idle)
    monkeypatch.setattr(ocr_worker.os, "getloadavg", lambda: (5.0, 5.0, 5.0))  # only asked where idle time is unknown
    assert ocr_worker.machine_busy() is (True if busy is None else busy)


def test_free_cores_count_what_the_ocr_thread_itself_used_as_free() -> None:
    # 2 cores over 0.2 s: half the ticks idle, and our reader computed 0.18 s of them: 1.9 cores free, not 1.
    assert ocr_worker.free_share(20, 40, 0.18, 0.2, 2) == pytest.approx(1.9)
    assert ocr_worker.free_share(40, 40, 0.0, 0.2, 2) == pytest.approx(2.0)
    assert ocr_worker.free_share(0, 0, 0.1, 0.2, 2) is None  # no ticks counted: unknown
    cores = ocr_worker.os.cpu_count() or 1
    measured = ocr_worker.free_cores(0.05, ours=threading.get_ident())
    if measured is None:
        pytest.skip("this system does not say how long its cores idled (/proc/stat); the load average is used")
    assert 0.0 <= measured <= cores + 1.0  # the idle share of the cores, plus this (sleeping) thread's few ms


@pytest.mark.parametrize("busy", [False, True], ids=["idle machine", "busy machine"])
def test_glassbox_runs_ocr_reads_a_recorded_run_on_all_cores_when_the_machine_is_idle(
    bundled_run, tmp_path, monkeypatch, busy: bool
) -> None:
    monkeypatch.setattr(ocr_worker, "machine_busy", lambda **_: busy)
    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    steps = read_steps(result.run_dir)[:3]
    reads: list[str] = []
    worker = OcrWorker(load_task(TASKS / "publish_product.yaml"), engine=Recording("one thread", reads))
    index, read = worker.read_recorded(result.run_dir, steps)
    rest = "one thread" if busy else "all cores"
    assert read == [0, 1, 2] and reads == [rest] * 3 and index.not_done == 0
