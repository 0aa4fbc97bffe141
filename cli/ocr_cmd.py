"""``glassbox runs ocr RUN [--all]``: read the screens of a recorded run that OCR did not read while it ran.

A script plays faster than OCR reads on a small CPU, and a run's end waits for it only ``ocr.catch_up_s``; the
steps left are "not done" in ``ocr/index.json``. A run recorded with OCR off has none read. This reads them now,
as the run's worker would have (the task's OCR settings, incremental reads, the consistency verdict per acting
step), writes their ``ocr/step-NNNN.json`` files and brings the index up to date. ``--all`` reads every step again.

OCR text is masked with the task's secrets before it is written, so a task that declares secrets needs them
again: its task file and the environment variables it reads them from, as for ``glassbox run``. Exit codes: 0
done, 2 usage errors (no such run, a run still running, OCR not installed, secrets that cannot be had).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from cli.output import console, shown, usage_error

if TYPE_CHECKING:
    from agent.task import Task
    from tracer.schema import RunRecord


def read_run_screens(run_dir: Path, *, every: bool = False) -> None:
    from agent.ocr_worker import OcrWorker
    from tools.ocr import ocr_available
    from tracer.run_files import process_alive
    from tracer.schema import RunStatus, StepRecord
    from tracer.store import read_run, read_steps

    run = read_run(run_dir)
    if run.status == RunStatus.running and process_alive(run.pid, run.host):
        raise usage_error(f"run {run.run_id} is still running: its own OCR worker reads it")
    task = _task_with_secrets(run)
    problem = ocr_available(task.ocr.engine)
    if problem is not None:
        raise usage_error(f"OCR cannot run here: {problem}")
    steps = [s for s in read_steps(run_dir) if isinstance(s, StepRecord)]
    if not steps:
        raise usage_error(f"run {run.run_id} has no readable step")
    started = time.perf_counter()
    index, read = OcrWorker(task).read_recorded(run_dir, steps, every=every)
    seconds = time.perf_counter() - started
    done = sum(1 for s in index.steps.values() if s.status == "done")
    failed = [i for i, s in index.steps.items() if s.status == "error"]
    console.print(
        f"read {len(read)} step(s) of {escape(run.run_id)} in {seconds:.1f} s; OCR done for {done} of {len(index.steps)} steps",
        soft_wrap=True,
    )
    for i in failed[:5]:
        console.print(f"  [yellow]step {i}[/]: {shown(index.steps[i].reason or 'failed')}", soft_wrap=True)
    if index.mismatches:
        listed = ", ".join(str(i) for i in index.mismatches)
        console.print(f"[bold red]mismatch[/]: the point did not show what the reasoning named at step {listed}")


def _task_with_secrets(run: RunRecord) -> Task:
    """The run's task as recorded (secret values are never recorded), with its secrets read again from its task
    file when it declares any: the OCR text must be masked with them."""

    from agent.task import RecordedTaskError, Task, TaskError, load_task

    try:
        recorded = Task.recorded(run.task, run_id=run.run_id)
    except RecordedTaskError as exc:
        raise usage_error(str(exc)) from None
    secrets = sorted(name for name, spec in recorded.inputs.items() if spec.secret)
    if not secrets:
        return recorded
    named = ", ".join(secrets)
    if not run.task_file or not Path(run.task_file).is_file():
        raise usage_error(
            f"run {run.run_id}'s task declares secrets ({named}) and its task file is gone "
            f"({run.task_file or 'not recorded'}): OCR text could not be masked with them"
        )
    try:
        task = load_task(run.task_file, allow_programs=True)  # loading starts nothing
        task.secret_values()
    except TaskError as exc:
        raise usage_error(f"the secrets of run {run.run_id}'s task ({named}) are needed to mask OCR text: {exc}") from None
    return task.model_copy(update={"ocr": recorded.ocr})  # the run's own OCR settings (--ocr may have changed them)
