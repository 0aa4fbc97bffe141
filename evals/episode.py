"""One attempt at one episode: the job handed to a worker, what comes back, and the in-process run.

The job and the result are pydantic models so that they cross process (and Ray) boundaries as JSON. A result
is either ``done`` (run_task returned: the task succeeded or failed, recorded in its run folder) or ``harness``
(something broke around the task: the browser, the site, the task's setup, the worker process, a timeout);
only the second kind is retried.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

# The records of the eval folder live in tracer (the viewer reads them too); re-exported here.
from tracer.evals import Episode, Status
from tracer.evals import EpisodeResult as EpisodeResult
from tracer.evals import EpisodeStarted as EpisodeStarted


class EpisodeJob(BaseModel):
    """Everything a worker needs to run one attempt, on this machine or another."""

    eval_id: str
    episode: Episode
    attempt: int  # 1-based
    run_id: str  # the run folder's name, chosen by the eval so that it can be found after a kill
    runs_dir: Path  # absolute; on a Ray cluster a directory every node shares
    policy: dict[str, Any] = Field(default_factory=dict)  # PolicySettings overrides, ``name`` among them
    max_steps: int | None = None
    allow_programs: bool = False
    timeout_s: float
    # The W3C traceparent of the eval's ``invoke_workflow`` span: the run is exported as an OpenTelemetry trace
    # under it. None: no export.
    otel_parent: str | None = None
    # With otel_parent: the OTEL_* variables of the process that started the eval. The episode's worker process
    # runs with these and none of its own, so episodes on a Ray cluster export where the eval's command said (a
    # Ray worker has the environment its node was started with). Kept out of reprs: the headers may hold a key.
    otel_env: dict[str, str] = Field(default_factory=dict, repr=False)


class AttemptResult(BaseModel):
    """What one attempt came to."""

    kind: Literal["done", "harness"]
    run_id: str | None = None  # None: no run folder was written (the harness failed before the run started)
    status: Status | None = None  # done: the run's status
    end_reason: str = ""
    steps: int = 0
    parse_errors: int = 0
    mismatches: int = 0  # steps whose point did not show what the reasoning named (agent.consistency)
    seconds: float = 0.0
    error: str | None = None  # harness: what broke
    retry: bool = True  # harness: whether another attempt could go otherwise (not for a task file's own fault)
    timed_out: bool = False
    # (confidence, the step went wrong) of every step a model gave a confidence for; wrong = outcome error
    step_confidence: list[tuple[float, bool]] = Field(default_factory=list)


def run_attempt(job: EpisodeJob) -> AttemptResult:
    """Run the job in this process: a normal run (agent.loop.run_task) tagged with the eval and episode ids."""
    from agent.loop import run_task
    from agent.task import load_task
    from tracer.ocr_files import mismatched_steps
    from tracer.store import read_run, read_steps

    started = time.monotonic()
    traces = None
    try:
        task = load_task(job.episode.task_file, allow_programs=True if job.allow_programs else None)
        if job.max_steps is not None:
            task.limits.max_steps = job.max_steps
        if job.episode.seed is not None:
            task.seed = job.episode.seed  # {seed} in the task: the same file seeds every episode
        overrides = {k: v for k, v in job.policy.items() if k != "name"}
        hooks = None
        if job.otel_parent:
            from agent.events import Hooks
            from agent.otel import attach_otel
            from tracer.otel_sdk import OtelSession
            from tracer.secrets import Scrubber

            hooks, traces = Hooks(), OtelSession.start()
            attach_otel(hooks, traces, scrubber=Scrubber.from_secrets(task.secret_values()), parent=job.otel_parent)
        result = run_task(
            task,
            policy=job.policy.get("name"),
            runs_dir=job.runs_dir,
            layout_seed=job.episode.layout_seed,
            policy_overrides=overrides,
            run_id=job.run_id,
            eval_id=job.eval_id,
            episode_id=job.episode.id,
            hooks=hooks,
        )
    except Exception as exc:  # anything out of run_task is the harness's, not the agent's
        written = (job.runs_dir / job.run_id / "run.json").is_file()
        return AttemptResult(
            kind="harness",
            run_id=job.run_id if written else None,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            seconds=time.monotonic() - started,
        )
    finally:
        if traces is not None:
            traces.close()  # at most 1.5 s, collector up or down
    seconds = time.monotonic() - started
    if result.harness_failure:  # the task's setup failed (the page never got ready): retried like a crash
        return AttemptResult(
            kind="harness",
            run_id=result.run_id,
            error=result.end_reason[:2000],
            retry=not result.harness_failure_lasting,  # a script that does not parse fails the same way again
            seconds=seconds,
        )
    parse_errors = mismatches = 0
    confidence: list[tuple[float, bool]] = []
    try:
        parse_errors = read_run(result.run_dir).summary.parse_errors
        steps = read_steps(result.run_dir)
        confidence = [(s.confidence, s.outcome == "error") for s in steps if s.confidence is not None]
        mismatches = len(mismatched_steps(result.run_dir, steps))
    except (OSError, ValueError):
        pass  # the figures stay empty; the run's status is what counts
    return AttemptResult(
        kind="done",
        run_id=result.run_id,
        status=result.status.value,
        end_reason=result.end_reason,
        steps=result.steps,
        parse_errors=parse_errors,
        mismatches=mismatches,
        seconds=seconds,
        step_confidence=confidence,
    )
