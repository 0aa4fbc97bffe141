"""Start a replay or a resume in a process of its own, through the Python API (:mod:`replays.replay`).

The viewer uses this for its Replay and Resume buttons::

    process = start(Launch(runs_dir=runs, run_id="20261123-0837-...", new_run_id=new_id), errors=path)
    process.exitcode   # None while it runs; 2: it could not start (``errors`` says why); 0/1: the run ended

The process is started with the "spawn" method: a fresh interpreter, so Playwright (and a model) never share
a process with the caller's event loop and threads, and nothing of the caller's state is copied into it.
Importing this module loads no browser or model code; the child imports :mod:`replays.replay` itself.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

USAGE_EXIT = 2  # as the CLI: the run cannot be started as asked (its task moved, a screenshot is gone, ...)


class Launch(BaseModel):
    """What to start: a replay of ``run_id`` (``from_step`` None) or a resume from ``from_step``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    runs_dir: Path
    run_id: str
    new_run_id: str
    from_step: int | None = Field(default=None, ge=0)
    fallback: Literal["none", "policy"] = "none"
    # What a person gave where the run recorded none (a served model's server and name): over the recorded ones.
    policy_overrides: dict[str, str] = Field(default_factory=dict)
    # A served model's API key typed into the viewer's form: it travels to the child through the process pipe,
    # is put into the child's environment under ``api_key_env`` (where the backend reads keys), and nowhere else.
    api_key: SecretStr | None = None
    api_key_env: str | None = None


def start(launch: Launch, *, errors: Path) -> BaseProcess:
    """Start ``launch`` in a new process and return it at once. What the process says on stderr, and why it
    could not start (exit code 2), goes to the file ``errors``; its stdout is discarded."""
    process = multiprocessing.get_context("spawn").Process(
        target=run_launch,
        args=(launch, str(errors)),
        name=f"glassbox-launch-{launch.new_run_id}",
        # Daemonic: a viewer that exits stops the runs it started (they are marked interrupted) rather than
        # waiting for them, which is what multiprocessing does at exit for a non-daemonic child.
        daemon=True,
    )
    process.start()
    return process


def run_launch(launch: Launch, errors: str) -> None:
    """The child process: run the replay or resume; exit 2 with the reason on stderr when it cannot start."""
    _redirect_output(Path(errors))
    from tracer.logs import plain_console, set_console

    set_console(plain_console(sys.stderr, "warning"))  # the wait page shows warnings from a run that failed to start
    from agent.policies import PolicyUnavailable
    from replays.replay import ReplayError, replay, resume
    from tools.chromium import ChromiumNotFound

    if launch.api_key is not None and launch.api_key_env:
        os.environ[launch.api_key_env] = launch.api_key.get_secret_value()
    overrides = dict(launch.policy_overrides) or None
    try:
        if launch.from_step is None:
            replay(
                launch.runs_dir,
                launch.run_id,
                fallback=launch.fallback,
                new_run_id=launch.new_run_id,
                policy_overrides=overrides,
            )
        else:
            resume(
                launch.runs_dir,
                launch.run_id,
                from_step=launch.from_step,
                new_run_id=launch.new_run_id,
                policy_overrides=overrides,
            )
    except (ReplayError, PolicyUnavailable, ChromiumNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(USAGE_EXIT)


def _redirect_output(errors: Path) -> None:
    """Point this process's stderr (and that of the browser it starts) at ``errors``, and stdout nowhere."""
    sys.stdout.flush()
    sys.stderr.flush()
    with open(errors, "ab") as err, open(os.devnull, "wb") as null:
        os.dup2(err.fileno(), 2)
        os.dup2(null.fileno(), 1)
