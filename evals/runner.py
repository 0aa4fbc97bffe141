"""Run a suite's episodes: in parallel worker processes on this machine, or as Ray tasks on a cluster.

    outcome = run_eval(load_suite(Path("suite.yaml")), runs_dir=Path("runs"), workers=2)
    outcome = run_eval(suite, runs_dir=Path("/shared/runs"), engine="ray", address="auto")
    outcome = run_eval(suite, runs_dir=Path("runs"), eval_id=outcome.eval_id)    # resume: finished episodes skipped

Each attempt runs in a worker process (:mod:`evals.worker`; reused between attempts, replaced after a timeout or a
crash) with its own browser and site; the local engine waits on those workers from a thread pool, the Ray engine
from inside Ray tasks (one CPU each, and one GPU each when a local model decides). The eval goes on past
failures; an attempt the harness could not finish (an exception out of run_task, a worker that died, a timeout)
is tried again up to ``limits.retries`` times, an episode whose run came to an outcome never is. Only this
process writes the eval folder (:mod:`evals.results`).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import secrets
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import structlog

from evals.episode import AttemptResult, EpisodeJob, EpisodeResult, EpisodeStarted
from evals.results import (
    EvalPlan,
    append_event,
    build_summary,
    eval_dir,
    now,
    read_events,
    read_plan,
    write_csv,
    write_plan,
    write_summary,
)
from evals.stats import EvalSummary
from evals.suite import Episode, Suite
from evals.worker import close_idle, run_attempt_in_child, stop_all
from tools.errors import UsageError
from tracer.index import RunIndex
from tracer.store import new_run_id

log = structlog.get_logger("glassbox.eval")

Engine = Literal["local", "ray"]
ProgressCallback = Callable[[int, int, "EpisodeResult | None"], None]  # (finished, planned, the result just in)


LOCK_FILE = ".running"  # in the eval's folder: flock'ed (and the pid written) while a process runs the eval


class EvalUsageError(UsageError, ValueError):
    """The eval cannot start as asked (an eval id that names another suite, Ray missing, no GPU for a local model)."""


@dataclass
class EvalOutcome:
    eval_id: str
    folder: Path
    results: list[EpisodeResult]
    summary: EvalSummary
    skipped: int  # episodes already finished before this call (a resume)
    engine: str
    workers: int


@dataclass
class _Pending:
    episode: Episode
    attempt: int = 1
    harness_errors: list[str] = field(default_factory=list)
    earlier_runs: list[str] = field(default_factory=list)


def new_eval_id(suite_name: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in suite_name.lower()).strip("-")[:40] or "eval"
    return f"eval-{now():%Y%m%d-%H%M%S}-{slug}-{secrets.token_hex(3)}"


def run_eval(
    suite: Suite,
    *,
    runs_dir: Path,
    eval_id: str | None = None,
    workers: int | None = None,
    engine: Engine = "local",
    address: str | None = None,
    on_progress: ProgressCallback | None = None,
    on_start: Callable[[str, Path, int, int], None] | None = None,  # (eval id, folder, planned, already finished)
    otel: bool = False,
) -> EvalOutcome:
    runs_dir = runs_dir.resolve()
    eval_id = eval_id or new_eval_id(suite.name)
    try:
        folder = eval_dir(runs_dir, eval_id)
    except ValueError as exc:
        raise EvalUsageError(str(exc)) from None
    digest = suite.plan_digest()
    try:
        plan = read_plan(folder)
    except (OSError, ValueError) as exc:
        raise EvalUsageError(f"{folder}: the eval's plan.json cannot be read: {exc}") from None
    if plan is not None and plan.digest != digest:
        raise EvalUsageError(
            f"eval {eval_id} ran another suite ({plan.suite_name}, {plan.suite_source}) or the suite changed since; "
            "resume it with the same suite, or start a new eval"
        )
    if workers is None and ("workers" in suite.limits.model_fields_set or engine == "local"):
        workers = suite.limits.workers
    pool = _make_pool(engine, suite, workers, address)  # Ray without a width: as many as the cluster has CPUs
    ran = False
    try:
        with _running_alone(folder, eval_id):  # a second copy would run every episode again beside the first
            ran = True
            return _run_eval(suite, runs_dir, eval_id, folder, pool, engine, on_progress, on_start, otel)  # closes it
    finally:
        if not ran:
            pool.close()  # refused before anything ran: no workers left behind


@contextmanager
def _running_alone(folder: Path, eval_id: str) -> Iterator[None]:
    """Hold the eval's lock while it runs (released when the process ends, however it ends); EvalUsageError when
    another process holds it."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            written = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            holder = written if written.isdigit() else "another process"  # the file is the holder's pid, or damaged
            raise EvalUsageError(
                f"eval {eval_id} is running already (process {holder}); let it finish, or stop it, then run this again "
                "to resume it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _run_eval(
    suite: Suite,
    runs_dir: Path,
    eval_id: str,
    folder: Path,
    pool: "_LocalPool | _RayPool",
    engine: Engine,
    on_progress: ProgressCallback | None,
    on_start: Callable[[str, Path, int, int], None] | None,
    otel: bool,
) -> EvalOutcome:
    episodes = suite.episodes()
    digest = suite.plan_digest()
    plan = read_plan(folder)  # read again under the lock: a copy that just finished may have written it
    workflow = _Workflow.start(otel, suite.name, eval_id)  # OpenTelemetry: the episodes' runs sit under one span
    try:
        if plan is None:
            write_plan(
                folder,
                EvalPlan(
                    eval_id=eval_id,
                    suite_name=suite.name,
                    suite_source=str(suite.source),
                    digest=digest,
                    created_at=now(),
                    policy=suite.policy,
                    limits=suite.limits.model_dump(),
                    episodes=episodes,
                ),
            )
        finished, started = read_events(folder)
        skipped = sum(1 for e in episodes if e.id in finished)
        abandoned: dict[str, list[str]] = {}  # runs of attempts a kill cut short
        for s in started:
            if s.episode_id not in finished:
                abandoned.setdefault(s.episode_id, []).append(s.run_id)
        queue = deque(_Pending(e, earlier_runs=list(abandoned.get(e.id, []))) for e in episodes if e.id not in finished)
        width = pool.width
        if on_start is not None:
            on_start(eval_id, folder, len(episodes), skipped)
        index = RunIndex(runs_dir)
        results = [finished[e.id] for e in episodes if e.id in finished]
        if on_progress is not None:
            on_progress(len(results), len(episodes), None)
        log.debug("eval started", eval_id=eval_id, episodes=len(episodes), to_run=len(queue), engine=engine, workers=width)
        in_flight: dict[cf.Future[AttemptResult], tuple[_Pending, EpisodeJob]] = {}
        last_index = 0.0
        while queue or in_flight:
            while queue and len(in_flight) < width:
                item = queue.popleft()
                job = _job(suite, eval_id, runs_dir, item).model_copy(
                    update={"otel_parent": workflow.parent, "otel_env": workflow.env}
                )
                append_event(
                    folder, EpisodeStarted(episode_id=item.episode.id, attempt=item.attempt, run_id=job.run_id, at=now())
                )
                in_flight[pool.submit(job)] = (item, job)
            done, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
            for future in done:
                item, job = in_flight.pop(future)
                try:
                    attempt = future.result()
                except Exception as exc:  # the engine itself failed this attempt (a Ray worker died, ...)
                    attempt = AttemptResult(kind="harness", error=f"{type(exc).__name__}: {exc}"[:2000])
                if attempt.kind == "harness" and attempt.retry and item.attempt <= suite.limits.retries:
                    log.warning("episode attempt failed; retrying", episode=item.episode.id, error=attempt.error)
                    item.harness_errors.append(attempt.error or "harness failure")
                    if attempt.run_id:
                        item.earlier_runs.append(attempt.run_id)
                    item.attempt += 1
                    queue.appendleft(item)
                    continue
                result = _result(item, attempt)
                append_event(folder, result)
                results.append(result)
                if on_progress is not None:
                    on_progress(len(results), len(episodes), result)
                if time.monotonic() - last_index > 2.0:  # the live summary for the viewer, not after every episode
                    _publish(index, runs_dir, folder, eval_id, suite, results, len(episodes))
                    last_index = time.monotonic()
    finally:
        pool.close()
        workflow.close()
    order = {e.id: i for i, e in enumerate(episodes)}
    results.sort(key=lambda r: order.get(r.episode_id, len(order)))
    summary = _publish(index, runs_dir, folder, eval_id, suite, results, len(episodes))
    index.close()
    log.debug("eval ended", eval_id=eval_id, episodes=len(results), success_rate=summary.success.rate)
    return EvalOutcome(
        eval_id=eval_id, folder=folder, results=results, summary=summary, skipped=skipped, engine=engine, workers=width
    )


def _publish(
    index: RunIndex, runs_dir: Path, folder: Path, eval_id: str, suite: Suite, results: list[EpisodeResult], planned: int
) -> EvalSummary:
    summary = build_summary(runs_dir, results, planned)
    write_csv(folder, results)
    write_summary(folder, eval_id, summary)
    index.upsert_eval(eval_id, suite.name, summary.model_dump(mode="json"))
    return summary


def _job(suite: Suite, eval_id: str, runs_dir: Path, item: _Pending) -> EpisodeJob:
    return EpisodeJob(
        eval_id=eval_id,
        episode=item.episode,
        attempt=item.attempt,
        run_id=new_run_id(item.episode.task_name),
        runs_dir=runs_dir,
        policy=suite.policy,
        max_steps=suite.limits.max_steps,
        allow_programs=suite.allow_programs,
        timeout_s=suite.limits.timeout_s,
    )


def _result(item: _Pending, attempt: AttemptResult) -> EpisodeResult:
    errors = item.harness_errors + ([attempt.error or "harness failure"] if attempt.kind == "harness" else [])
    return EpisodeResult(
        episode_id=item.episode.id,
        task_name=item.episode.task_name,
        task_file=str(item.episode.task_file),
        seed=item.episode.seed,
        repeat=item.episode.repeat,
        status=(attempt.status or "failed") if attempt.kind == "done" else "harness_error",
        run_id=attempt.run_id,
        end_reason=attempt.end_reason if attempt.kind == "done" else f"harness error: {attempt.error}",
        steps=attempt.steps,
        seconds=round(attempt.seconds, 3),
        parse_errors=attempt.parse_errors,
        mismatches=attempt.mismatches,
        harness_attempts=item.attempt,
        harness_errors=errors,
        earlier_runs=item.earlier_runs + ([attempt.run_id] if attempt.kind == "harness" and attempt.run_id else []),
        step_confidence=attempt.step_confidence,
        finished_at=now(),
    )


class _Workflow:
    """The eval's ``invoke_workflow`` span (with ``--otel`` or an OTLP endpoint set): its traceparent goes to every
    episode's worker, whose run is exported under it."""

    def __init__(self, session: Any = None, tree: Any = None, span: Any = None) -> None:
        self.session, self.tree, self.span = session, tree, span
        self.parent: str | None = tree.traceparent("workflow") if tree is not None else None
        self.env: dict[str, str] = {}
        if session is not None:
            from tracer.otel_sdk import otel_variables

            self.env = otel_variables()

    @classmethod
    def start(cls, flag: bool, name: str, eval_id: str) -> "_Workflow":
        from tracer.otel_sdk import export_requested

        if not export_requested(flag):
            return cls()
        from datetime import datetime, timezone

        from tracer.otel_sdk import OtelSession
        from tracer.otel_spans import workflow_span

        session = OtelSession.start()
        tree = session.trace()
        span = workflow_span(name, eval_id, datetime.now(timezone.utc))
        tree.emit(span.model_copy(deep=True))
        return cls(session, tree, span)

    def close(self) -> None:
        if self.session is None:
            return
        from datetime import datetime, timezone

        self.tree.emit(self.span.model_copy(update={"end": datetime.now(timezone.utc)}))
        self.session.close()


# -- engines ---------------------------------------------------------------------------------------------------
class _LocalPool:
    """Threads that each wait on one child process at a time."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._threads = cf.ThreadPoolExecutor(max_workers=width, thread_name_prefix="eval-worker")

    def submit(self, job: EpisodeJob) -> cf.Future[AttemptResult]:
        return self._threads.submit(run_attempt_in_child, job)

    def close(self) -> None:
        stop_all()  # nothing is running here on a normal end; after Ctrl-C, the episodes still running stop now
        self._threads.shutdown(wait=True, cancel_futures=True)
        close_idle()


def _ray_attempt(job_json: str) -> str:
    """A Ray task: one attempt in a child process of this Ray worker (so a timeout can stop its whole group)."""
    return run_attempt_in_child(EpisodeJob.model_validate_json(job_json)).model_dump_json()


class _RayPool:
    def __init__(self, suite: Suite, width: int | None, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise EvalUsageError("--engine ray needs Ray: pip install 'glassbox[eval]' (or pip install 'ray>=2.40')") from None
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            try:
                if address:
                    ray.init(address=address, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(num_cpus=width or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise EvalUsageError(f"cannot reach the Ray cluster at {address or 'a new local Ray'}: {exc}") from None
        resources = ray.cluster_resources()
        gpus = suite.limits.gpus_per_episode
        if gpus is None:
            gpus = 1.0 if suite.policy.get("name") == "qwen3vl" else 0.0
        if gpus > 0 and resources.get("GPU", 0) < gpus:
            self.close()
            raise EvalUsageError(
                f"each episode needs {gpus:g} GPU(s) (a local model), but the Ray cluster has {resources.get('GPU', 0):g}; "
                "serve the model (vLLM / SGLang) and use --policy openai, or set limits.gpus_per_episode"
            )
        self.width = width or max(1, int(resources.get("CPU", 1)))
        self._remote: Any = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(_ray_attempt)

    def submit(self, job: EpisodeJob) -> cf.Future[AttemptResult]:
        ray_future = self._remote.remote(job.model_dump_json()).future()
        result: cf.Future[AttemptResult] = cf.Future()

        def done(f: cf.Future[Any]) -> None:
            try:
                result.set_result(AttemptResult.model_validate_json(f.result()))
            except BaseException as exc:  # the Ray task failed (its worker died): a harness failure
                result.set_exception(exc)

        ray_future.add_done_callback(done)
        return result

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


def _make_pool(engine: Engine, suite: Suite, width: int | None, address: str | None) -> _LocalPool | _RayPool:
    if engine == "local":
        if address:
            raise EvalUsageError("--address is for --engine ray")
        return _LocalPool(width or 1)
    if engine == "ray":
        return _RayPool(suite, width, address)
    raise EvalUsageError(f"unknown engine {engine!r}; use local or ray")
