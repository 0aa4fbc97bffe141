"""OCR of every step, off the loop's critical path: a worker thread fed by the run's events that catches up.

It subscribes to the loop's events like any other watcher (:mod:`agent.events`)::

    RunStarted      the engine starts loading on the worker thread (seconds, once per process)
    StepRecorded    the step's screenshot (already on disk) is queued; the worker reads it (incrementally: only
                    what changed since the screenshot it read before, tools.ocr_incremental), finds the text at
                    the executed point and the layout regions, judges the reasoning against the text there, and
                    writes ``ocr/step-NNNN.json`` (tracer.ocr_files) with how it was read, secrets masked
    RunEnded        the steps still queued are read on all cores when the machine is otherwise idle (the loop
                    no longer needs them; an engine without ``all_cores`` keeps its own); waits up to
                    ``ocr.catch_up_s`` for the queue to empty,
                    then writes ``ocr/index.json``: steps still queued are "not done" (the exit is never held
                    longer than that)

A thread, not a process: the OCR runtime (OpenVINO or onnxruntime) releases the GIL while it computes (most of a
read), so the loop's thread keeps running; the thread runs at a lower CPU priority (nice 10 on Linux), so on a
small busy CPU the loop and the browser come first; the engine is built once per process and shared with a gate
that reads a step before it acts (``on_mismatch``), which hands its result over instead of reading the image
twice. Measured on the 2-core machine (load 5-6, alternating runs of the bundled script task beside a reader busy
throughout): step time 1.00x with the reader on a nice-10 thread, 1.21x in a nice-10 child process, 1.10x in a
SCHED_IDLE one; so a thread it stays.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Literal

from agent.consistency import check_action
from agent.events import Hooks, RunEnded, RunStarted, StepRecorded
from agent.task import Task
from tools.ocr import OcrEngine, OcrResult, get_engine, ocr_available
from tools.ocr_incremental import IncrementalReader, ReadInfo, read_around
from tools.ocr_views import layout, point_text
from tracer.logs import get_logger
from tracer.ocr_files import (
    OcrIndex,
    OcrStepFile,
    OcrStepStatus,
    read_ocr_index,
    read_ocr_step,
    scrub_lines,
    write_ocr_index,
    write_ocr_step,
)
from tracer.run_files import read_step_file
from tracer.schema import StepRecord
from tracer.secrets import Scrubber

log = get_logger("glassbox.ocr")

ACTING_VERBS = {"left_click": "clicked", "double_click": "double-clicked", "triple_click": "triple-clicked"}


def ocr_wanted(task: Task, policy_name: str) -> bool:
    """Whether a run of ``task`` by ``policy_name`` reads its screens (``ocr.enabled``; auto: a model decides
    and the ``ocr`` extra is installed). Raises :class:`tools.ocr.OcrUnavailable` when asked for and impossible."""
    enabled = task.ocr.enabled
    problem = ocr_available(task.ocr.engine)
    if enabled == "auto":  # on_mismatch stop/ask needs the text at the point, whoever decides
        return problem is None and (policy_name in ("qwen3vl", "openai") or task.policy.on_mismatch != "continue")
    if enabled and problem is not None:
        from tools.ocr import OcrUnavailable

        raise OcrUnavailable(f"ocr.enabled is true but OCR cannot run: {problem}")
    return bool(enabled)


class OcrWorker:
    """Reads the screenshots of one run on a thread of its own (see the module docstring)."""

    def __init__(self, task: Task, *, engine: OcrEngine | None = None) -> None:
        self.settings = task.ocr
        self.scrubber = Scrubber.from_secrets(task.secret_values())
        self.goal_values = task.goal_values()
        self._engine = engine
        self._queue: queue.Queue[StepRecord | None] = queue.Queue()
        self._lock = threading.Lock()  # guards the statuses and the closed flag against the thread
        self._statuses: dict[int, OcrStepStatus] = {}
        self._verdicts: dict[int, str] = {}  # the step's own verdict, for steps OCR does not judge
        self._early: dict[int, OcrResult] = {}  # read by a gate before the step acted
        self._reader: IncrementalReader | None = None  # the worker thread's own: each read diffs the one before
        self._reads: dict[int, str] = {}  # step -> full / partial / reused
        self._closed = False
        self._idle = threading.Event()
        self._idle.set()
        self.run_dir: Path | None = None
        self._run_over = threading.Event()  # set at the run's end: what is left may use every core
        # At the end a thread of its own decides whether all cores are free and, if so, loads the engine's
        # all-cores copy, while this worker reads on; the reads after that use it (see _prepare_catch_up).
        self._faster: OcrEngine | None = None
        self.catch_up_decided = threading.Event()
        self._catch_up_on: Literal["all cores", "one thread"] | None = None  # what the reads after the end used
        self.ended_at: float | None = None
        self.caught_up_at: float | None = None
        # Not a daemon: a process must not exit while the OCR runtime computes on this thread (onnxruntime aborts it).
        # After the run ends, queued steps are dropped at once, so only the read in progress is waited for.
        self._thread = threading.Thread(target=self._work, name="glassbox-ocr")

    # -- events -------------------------------------------------------------------------------------------------

    def attach(self, hooks: Hooks) -> "OcrWorker":
        hooks.on(RunStarted, self.started)
        hooks.on(StepRecorded, self.recorded)
        hooks.on(RunEnded, self.ended)
        return self

    def start(self) -> "OcrWorker":
        """Start the thread now, before the run does: it loads and warms the engine (seconds in a new process)
        while the site and the browser start, instead of after."""
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()
        return self

    def abandon(self) -> None:
        """The run never started or never ended (its environment failed to open): let the thread go."""
        if self.ended_at is None and self._thread.ident is not None:
            self._queue.put(None)

    def started(self, event: RunStarted) -> None:
        self.run_dir = event.run_dir
        self.start()

    def recorded(self, event: StepRecorded) -> None:
        step = event.step
        if step.consistency is not None:
            self._verdicts[step.index] = step.consistency.verdict
        if self.settings.steps == "acting" and step.action is None:
            with self._lock:
                self._statuses[step.index] = OcrStepStatus(status="skipped", reason="ocr.steps is acting; this step did not act")
            return
        with self._lock:  # cleared and queued together, so the thread cannot see an empty queue in between
            self._statuses[step.index] = OcrStepStatus(status="not_done", reason="still queued when the run ended")
            self._idle.clear()
            self._queue.put(step)

    def ended(self, event: RunEnded) -> None:
        self.ended_at = time.monotonic()
        self._run_over.set()
        self._queue.put(None)
        preparing = None
        if self._thread.ident is not None and not self._idle.is_set():  # steps are left to read
            # Not a daemon either: the runtime must not be compiling on it when the process exits.
            preparing = threading.Thread(target=self._prepare_catch_up, name="glassbox-ocr-all-cores")
            preparing.start()
        else:
            self.catch_up_decided.set()
        caught_up = self._idle.wait(self.settings.catch_up_s)
        waited = time.monotonic() - self.ended_at
        if preparing is not None:
            preparing.join()  # at most a second or so: the models compile once per process
        with self._lock:
            self._closed = True  # a read still running is dropped, not written after the index
            index = self._index().model_copy(
                update={
                    "caught_up_after_end_s": round(max(0.0, self.caught_up_at - self.ended_at), 3)
                    if caught_up and self.caught_up_at is not None
                    else (0.0 if caught_up else None),
                    "waited_s": round(waited, 3),
                    "catch_up_on": self._catch_up_on,
                }
            )
        write_ocr_index(event.run_dir, index)
        if index.not_done:
            log.warning("ocr did not catch up", not_done=index.not_done, waited_s=index.waited_s)

    def _index(self) -> OcrIndex:
        """The index of what is known now: each step's status, the mismatches, the reads by kind."""
        statuses = dict(sorted(self._statuses.items()))
        reads = {i: m for i, m in self._reads.items() if statuses.get(i) and statuses[i].status == "done"}
        mismatches = sorted(
            i
            for i in set(statuses) | set(self._verdicts)
            if (statuses[i].verdict if i in statuses and statuses[i].verdict else self._verdicts.get(i)) == "mismatch"
        )
        runtime = getattr(self._engine, "runtime", None)  # the engine in use, if one was made (never made here)
        return OcrIndex(
            engine=self.settings.engine,
            runtime=runtime if isinstance(runtime, str) else None,
            steps_setting=self.settings.steps,
            steps=statuses,
            mismatches=mismatches,
            not_done=sum(1 for s in statuses.values() if s.status == "not_done"),
            reads={mode: sum(1 for m in reads.values() if m == mode) for mode in ("full", "partial", "reused")},
        )

    # -- after the run --------------------------------------------------------------------------------------------

    def read_recorded(self, run_dir: Path, steps: list[StepRecord], *, every: bool = False) -> tuple[OcrIndex, list[int]]:
        """Read a recorded run's steps that OCR did not (not done, failed, never queued), or with ``every`` all of
        them, on this thread, as the worker would have; then write its index: the run-time figures (how long
        after the end OCR caught up) are kept, each step's status is now's. (The index, the steps read.)"""
        self.run_dir = run_dir
        self._run_over.set()
        self._prepare_catch_up()  # nothing else runs: all cores, when the machine is otherwise idle
        before = read_ocr_index(run_dir)
        known = before.steps if before is not None else {}
        with self._lock:
            for step in steps:
                if step.consistency is not None:
                    self._verdicts[step.index] = step.consistency.verdict
                status = known.get(step.index)
                if status is not None and status.status == "done" and read_ocr_step(run_dir, step.index) is None:
                    continue  # the index says done, but its file is gone or damaged: read it again
                if status is not None and status.status in ("done", "skipped") and not every:
                    self._statuses[step.index] = status
            self._closed = False
        todo = [s for s in steps if s.index not in self._statuses]
        for step in todo:
            if self.settings.steps == "acting" and step.action is None and not every:
                self._statuses[step.index] = OcrStepStatus(status="skipped", reason="ocr.steps is acting; this step did not act")
                continue
            self._statuses[step.index] = OcrStepStatus(status="not_done", reason="not read yet")
            self._diff_against(step.index - 1)
            self._read(step)
        read = [s.index for s in todo if self._statuses[s.index].status != "skipped"]
        with self._lock:
            index = self._index()
        update: dict[str, object] = {"read_after_run": sorted(set(read) | set(before.read_after_run if before else []))}
        if before is not None:  # what the run itself measured stays as it was
            update |= before.model_dump(include={"caught_up_after_end_s", "waited_s", "catch_up_on"})
            if not every:  # the steps read then, and the ones read now
                update["reads"] = {m: before.reads.get(m, 0) + index.reads.get(m, 0) for m in ("full", "partial", "reused")}
        index = index.model_copy(update=update)
        write_ocr_index(run_dir, index)
        return index, read

    # -- a gate's early read --------------------------------------------------------------------------------------

    def engine(self) -> OcrEngine:
        if self._engine is None:
            self._engine = get_engine(self.settings.engine)
        return self._engine

    def read_early(self, index: int, png: bytes, point: tuple[int, int] | None = None) -> OcrResult:
        """Read step ``index``'s screenshot now (a gate needs it before the step acts). With ``point``, only the
        lines around it (a crop: a fraction of a full read's time; the worker reads the step later, as any
        other); without, or when no crop held the lines there whole, the whole screenshot, which the worker
        then reuses."""
        if point is not None:
            result, info = read_around(self.engine(), png, point)
            if info.mode == "partial":
                return result
        else:
            result = self.engine().read(png)
        with self._lock:
            self._early[index] = result
        return result

    # -- the thread ---------------------------------------------------------------------------------------------

    def _work(self) -> None:
        _lower_priority()
        try:
            warm_up = getattr(self.engine(), "warm_up", None)  # while the site and the browser start
            if warm_up is not None:
                warm_up()
        except Exception as exc:  # recorded per step below
            log.error("ocr engine failed to load", error=f"{type(exc).__name__}: {exc}")
        while True:
            try:
                step = self._queue.get(timeout=0.5)
            except queue.Empty:
                if not threading.main_thread().is_alive():  # the run never ended (a crash): do not hold the exit
                    return
                continue
            if step is None:
                self._finish()
                return
            self._read(step)
            if self._queue.empty():
                self._mark_idle()

    def _diff_against(self, index: int) -> None:
        """Let the next read diff against step ``index``'s screenshot and the lines recorded for it (read while the
        run ran), instead of reading its first screen in full."""
        reader = self._incremental()
        status = self._statuses.get(index)
        if index < 0 or reader.last_step == index or status is None or status.status != "done" or self.run_dir is None:
            return
        try:
            recorded = read_ocr_step(self.run_dir, index)
            if recorded is None:
                return
            png = read_step_file(self.run_dir, recorded.screenshot, index)
            result = OcrResult(engine=recorded.engine, size=recorded.size, lines=recorded.lines, ms=recorded.ms)
            reader.remember(png, result, step=index, full=recorded.read is None or recorded.read.mode == "full")
        except (OSError, ValueError) as exc:  # a damaged file: the next read is a full one
            log.warning("ocr: cannot diff against a recorded step", step=index, error=f"{type(exc).__name__}: {exc}")

    def _mark_idle(self) -> None:
        with self._lock:
            if self._queue.empty():
                self.caught_up_at = time.monotonic()
                self._idle.set()

    def _finish(self) -> None:
        self.caught_up_at = time.monotonic()
        self._idle.set()

    def _read(self, step: StepRecord) -> None:
        run_dir = self.run_dir
        assert run_dir is not None
        try:
            with self._lock:
                if self._closed:
                    return
                early = self._early.pop(step.index, None)
            png = read_step_file(run_dir, step.screenshot, step.index)
            reader = self._incremental()
            if self._run_over.is_set():
                with self._lock:
                    if self._faster is not None:
                        reader.engine = self._faster
                    self._catch_up_on = "all cores" if reader.engine is self._faster else "one thread"
            if early is not None:  # a full read made by the gate: the next read diffs against it
                reader.remember(png, early, step=step.index)
                info = ReadInfo(mode="full", reason="read by the consistency gate before the step acted", ms=early.ms)
                result = early
            else:
                result, info = reader.read(png, step=step.index)
            # masked before anything is built from the lines (a region's label joins them; a split secret would
            # only be whole again there)
            result = result.model_copy(update={"lines": scrub_lines(result.lines, self.scrubber)})
            record = self._judge(step, result).model_copy(update={"read": info})
            with self._lock:
                if self._closed:
                    return
                relative = write_ocr_step(run_dir, record, self.scrubber)
                verdict = record.consistency.verdict if record.consistency is not None else None
                self._statuses[step.index] = OcrStepStatus(status="done", file=relative, verdict=verdict)
                self._reads[step.index] = info.mode
        except Exception as exc:  # one bad image never stops the others (nor the run)
            reason = self.scrubber.scrub_text(f"{type(exc).__name__}: {exc}")
            log.error("ocr failed", step=step.index, error=reason)
            with self._lock:
                if not self._closed:
                    self._statuses[step.index] = OcrStepStatus(status="error", reason=reason)

    def _prepare_catch_up(self) -> None:
        """After the run's end the loop and the browser no longer need the cores: unless other work keeps them
        busy, load the engine's all-cores copy (its models compile on one core: 0.8 s, while the worker reads on
        the other) for the reads left (on the idle 2-core machine a full read took 0.6x as long as on one). Kept
        per engine, so a second run in the same process reuses it."""
        try:
            faster = getattr(self.engine(), "all_cores", None)
            if faster is None or machine_busy(ours=self._thread.ident):
                return
            engine = faster()
            warm_up = getattr(engine, "warm_up", None)
            if warm_up is not None:
                warm_up()
            with self._lock:
                self._faster = engine
        except Exception as exc:  # noqa: BLE001  # the one-thread engine reads on
            log.error("ocr: the all-cores engine failed to load", error=f"{type(exc).__name__}: {exc}")
        finally:
            self.catch_up_decided.set()

    def _incremental(self) -> IncrementalReader:
        if self._reader is None:
            self._reader = IncrementalReader(
                self.engine(), enabled=self.settings.incremental, full_every=self.settings.full_every
            )
        return self._reader

    def _judge(self, step: StepRecord, result: OcrResult) -> OcrStepFile:
        regions = layout(result)
        point = None
        consistency = None
        if step.evidence is not None:
            verb = ACTING_VERBS.get(getattr(step.action, "action", ""), "acted on")
            point = point_text(result, step.evidence.point, regions, verb=verb)
            replaced = step.gate is not None and step.gate.decision == "replace"  # a person's point, not the model's
            if not replaced:  # the step's reasoning as recorded (secrets are placeholders there already)
                consistency = check_action(
                    step.action, step.reasoning, goal_values=self.goal_values, element=step.element, point=point
                )
        return OcrStepFile(
            step=step.index,
            screenshot=step.screenshot,
            engine=result.engine,
            size=result.size,
            ms=result.ms,
            lines=result.lines,
            layout=regions,
            point=point,
            consistency=consistency,
        )


OCR_NICE = 10


BUSY_WINDOW_S = 0.2  # how long the cores are watched before choosing how to catch up


def machine_busy(window_s: float = BUSY_WINDOW_S, *, ours: int | None = None) -> bool:
    """Whether other work keeps a core busy now, so that all cores would not help. Watched for ``window_s`` where
    the system says how long its cores idled (Linux), the CPU time of thread ``ours`` (the OCR worker, reading
    meanwhile) counted as free; else the 1-minute load average at least the core count.

    Not the load average where the idle time is known: it lags by a minute, so after a few runs back to back (an
    eval, a benchmark) it still counts runs that are over and kept one catch-up in three on one thread, 8.0 s
    against 5.4 on all cores. Measured on the idle 2-core machine (OpenVINO): a full read 0.81 s on all cores
    against 1.36 on one; with a core kept busy by another process, 1.44 against 1.37."""
    cores = os.cpu_count() or 1
    free = free_cores(window_s, ours=ours)
    if free is not None:
        return free < cores - 0.5
    try:
        return os.getloadavg()[0] >= cores
    except (AttributeError, OSError):  # no load average here: assume busy, keep one thread
        return True


def free_cores(window_s: float, *, ours: int | None = None) -> float | None:
    """How many cores idled on average over the next ``window_s`` (from /proc/stat), plus what thread ``ours``
    used meanwhile; None where the system does not say."""

    def times() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return fields[3] + fields[4], sum(fields)

    def thread_cpu() -> float:
        if ours is None:
            return 0.0
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(ours))
        except (AttributeError, OSError):  # gone, or no per-thread clock here
            return 0.0

    try:
        idle_before, total_before = times()
        ours_before, started = thread_cpu(), time.monotonic()
        time.sleep(window_s)
        idle_after, total_after = times()
        ours_used, elapsed_s = thread_cpu() - ours_before, time.monotonic() - started
    except (OSError, ValueError, IndexError):
        return None
    return free_share(idle_after - idle_before, total_after - total_before, ours_used, elapsed_s, os.cpu_count() or 1)


def free_share(idle_ticks: int, total_ticks: int, ours_s: float, elapsed_s: float, cores: int) -> float | None:
    """Cores free over a window: the share of all cores' ticks spent idle, plus the cores our thread kept busy."""
    if total_ticks <= 0 or elapsed_s <= 0:
        return None
    return cores * idle_ticks / total_ticks + max(0.0, ours_s) / elapsed_s


def _lower_priority() -> None:
    """Give this thread a lower CPU priority than the loop and the browser: on Linux a thread is a task with a
    nice value of its own, and both runtimes on one thread compute on the calling thread (checked with ps -L;
    threads they start for all cores inherit its nice value). Elsewhere (or when not allowed) the thread keeps
    its priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), OCR_NICE)
    except (AttributeError, OSError):
        pass


def attach_ocr(hooks: Hooks, task: Task, policy_name: str) -> OcrWorker | None:
    """Subscribe an OCR worker for this run when the task (or the CLI) asks for OCR; None when it is off."""
    if not ocr_wanted(task, policy_name):
        return None
    return OcrWorker(task).attach(hooks)
