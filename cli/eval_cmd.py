"""``glassbox eval SUITE``: run a suite's episodes (tasks x seeds x repeats) and print what they came to.

Exit codes: 0 the eval ran (whatever the episodes' outcomes), 2 usage errors (a broken suite or task file, bad
flags, an eval id that names another suite, Ray missing), 130 interrupted (Ctrl-C; resume with --eval-id).
"""

from __future__ import annotations

import signal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import BaseModel
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.otel_cmd import OtelFlag
from cli.output import (
    Column,
    console,
    err_console,
    is_tty,
    print_table,
    runs_dir_is_folder,
    usage_error,
    writable_runs_dir,
    write_json,
)


class EngineName(str, Enum):
    local = "local"
    ray = "ray"


class EvalReport(BaseModel):
    """``glassbox eval --json``: the eval, where it lives, and its summary (as kept in the runs index)."""

    eval_id: str
    folder: str
    engine: str
    workers: int
    skipped: int  # episodes already finished before this call (a resumed eval)
    summary: dict[str, object]
    episodes: list[dict[str, object]]


def eval_command(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="A suite YAML, or a folder of task files.")],
    workers: Annotated[
        Optional[int], typer.Option(min=1, max=256, help="Episodes at once (default: the suite's; Ray: the cluster's CPUs).")
    ] = None,
    engine: Annotated[EngineName, typer.Option(help="local: worker processes here; ray: Ray tasks.")] = EngineName.local,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (e.g. auto or ray://head:10001).")] = None,
    runs_dir: Annotated[
        Path, typer.Option(help="Where run folders (and evals/<id>/) are written.", callback=runs_dir_is_folder)
    ] = Path("runs"),
    eval_id: Annotated[
        Optional[str], typer.Option(help="Resume this eval (finished episodes are skipped), or name a new one.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document: the eval's summary and episodes.")] = False,
    allow_programs: Annotated[
        bool, typer.Option("--allow-programs", help="Let the suite's tasks start programs (desktop apps, command checks).")
    ] = False,
    policy: Annotated[Optional[str], typer.Option(help="Override the suite's policy (script, qwen3vl, openai).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Override the policy's model.")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="Override the served model's URL (openai).")] = None,
    tasks: Annotated[
        Optional[str],
        typer.Option(help="miniwob: task names, comma-separated (default: those with a bundled demonstration)."),
    ] = None,
    seeds: Annotated[Optional[str], typer.Option(help="miniwob: seeds, e.g. 0-4,9 (default 0-4).")] = None,
    otel: OtelFlag = False,
) -> None:
    """Evaluate over many tasks: every episode is a normal run tagged with the eval's id.

    SUITE `miniwob` is the built-in MiniWoB++ suite (needs the miniwob package): one task file per task, run on each seed.
    """
    from evals.runner import EvalUsageError, run_eval
    from evals.suite import SuiteError, load_suite

    if address is not None and engine is not EngineName.ray:
        raise usage_error("--address is for --engine ray")
    writable_runs_dir(runs_dir)
    builtin = str(suite_path) == "miniwob" and not suite_path.exists()
    if not builtin and (tasks is not None or seeds is not None):
        raise usage_error("--tasks and --seeds are for the built-in suite: glassbox eval miniwob --tasks ... --seeds ...")
    try:
        if builtin:
            suite_path = _build_miniwob(runs_dir, tasks, seeds)
        suite = load_suite(suite_path, allow_programs=allow_programs)
    except (SuiteError, ValueError) as exc:
        raise usage_error(str(exc)) from None
    overrides = {k: v for k, v in {"name": policy, "model": model, "base_url": base_url}.items() if v is not None}
    if overrides:
        suite = suite.model_copy(update={"policy": {**suite.policy, **overrides}})
    from agent.policies import PolicyUnavailable, check_policy, with_policy_overrides
    from agent.task import load_task

    first = load_task(suite.task_files[0], allow_programs=True if allow_programs else None)
    try:  # a policy that cannot run (no model, no server named) fails here, not in every episode
        check_policy(suite.policy_name(first), with_policy_overrides(first, suite.policy))
    except PolicyUnavailable as exc:
        raise usage_error(str(exc)) from None

    tty = is_tty(err_console) and not json_out
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tally]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=not tty,
    )
    bar: list[object] = []
    counts = {"succeeded": 0, "failed": 0, "interrupted": 0, "harness_error": 0}

    started_id: list[str] = []

    def started(eid: str, folder: Path, planned: int, skipped: int) -> None:
        started_id.append(eid)
        err_console.print(f"eval [bold]{escape(eid)}[/] · {planned} episode(s) · {escape(str(folder))}", soft_wrap=True)
        if skipped:
            err_console.print(f"resuming: {skipped} episode(s) already finished are skipped")

    def progressed(finished: int, planned: int, result: object) -> None:
        from evals.episode import EpisodeResult

        if isinstance(result, EpisodeResult):
            counts[result.status] = counts.get(result.status, 0) + 1
            if not tty:
                err_console.print(
                    f"{finished}/{planned} {escape(result.episode_id)}: {result.status} "
                    f"({result.steps} steps, {result.seconds:.1f} s{_attempts(result.harness_attempts)})",
                    soft_wrap=True,
                )
        tally = " ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if v)
        if not bar:
            bar.append(progress.add_task(suite.name, total=planned, completed=finished, tally=tally))
        else:
            progress.update(bar[0], completed=finished, tally=tally)  # type: ignore[arg-type]

    term = _term_as_interrupt()  # `kill` stops the eval as Ctrl-C does: workers stopped, the resume command said
    try:
        with progress:
            outcome = run_eval(
                suite,
                runs_dir=runs_dir,
                eval_id=eval_id,
                workers=workers,
                engine=engine.value,
                address=address,
                on_progress=progressed,
                on_start=started,
                otel=otel,
            )
    except EvalUsageError as exc:
        raise usage_error(str(exc)) from None
    except KeyboardInterrupt:
        if started_id:
            import shlex

            again = shlex.join(["glassbox", "eval", str(suite_path), "--runs-dir", str(runs_dir), "--eval-id", started_id[0]])
            err_console.print(
                f"[yellow]interrupted:[/] the episodes that had finished are kept; resume with {escape(again)}",
                soft_wrap=True,
            )
        raise typer.Exit(code=130) from None
    finally:
        if term is not None:
            signal.signal(signal.SIGTERM, term)
    if json_out:
        write_json(
            console,
            EvalReport(
                eval_id=outcome.eval_id,
                folder=str(outcome.folder),
                engine=outcome.engine,
                workers=outcome.workers,
                skipped=outcome.skipped,
                summary=outcome.summary.model_dump(mode="json"),
                episodes=[r.model_dump(mode="json") for r in outcome.results],
            ),
        )
        raise typer.Exit(code=0)
    _print_summary(outcome)
    raise typer.Exit(code=0)


def _attempts(n: int) -> str:
    return f", {n} attempts" if n > 1 else ""


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _print_summary(outcome: object) -> None:
    from evals.runner import EvalOutcome

    assert isinstance(outcome, EvalOutcome)
    s = outcome.summary
    ok = s.success
    interval = "n/a" if ok.low is None or ok.high is None else f"{_pct(ok.low)} – {_pct(ok.high)}"
    console.print(
        f"[bold]eval {escape(outcome.eval_id)}[/] · {s.episodes}/{s.planned} episodes · engine {outcome.engine} "
        f"× {outcome.workers}",
        soft_wrap=True,
    )
    rows = [
        ["success rate", f"{_pct(ok.rate)} ({ok.successes}/{ok.n}); 95 % interval {interval}"],
        ["harness errors", f"{s.harness_errors} (after retries; {s.retried_episodes} episode(s) needed a retry)"],
        ["steps per episode", f"mean {_num(s.steps.mean)} · median {_num(s.steps.median)}"],
        ["seconds per episode", f"mean {_num(s.seconds.mean)} · median {_num(s.seconds.median)}"],
        ["parse errors", f"{s.parse_errors} ({_pct(s.parse_error_rate)} of steps)"],
        ["mismatches", f"{s.mismatches} step(s) in {s.mismatch_episodes} episode(s): the click did not show what was named"],
        ["end reasons", "; ".join(f"{k}: {v}" for k, v in s.end_reasons.items()) or "n/a"],
    ]
    cal = s.calibration
    if cal.steps and cal.auroc is not None:
        rows.append(
            ["confidence → wrong step", f"AUROC {cal.auroc:.3f} over {cal.steps} steps ({cal.wrong} wrong; {cal.source})"]
        )
    else:
        reason = "no step has a confidence" if not cal.steps else "no wrong step, or no right one"
        rows.append(["confidence → wrong step", f"n/a ({reason})"])
    print_table(console, [Column(header="figure"), Column(header="value", wraps=True)], rows)
    console.print()
    print_table(
        console,
        [Column(header="task", wraps=True), Column(header="episodes"), Column(header="success"), Column(header="95 % interval")],
        [
            [
                t.task_name,
                str(t.episodes),
                f"{_pct(t.success.rate)} ({t.success.successes}/{t.success.n})",
                "n/a" if t.success.low is None or t.success.high is None else f"{_pct(t.success.low)} – {_pct(t.success.high)}",
            ]
            for t in s.per_task
        ],
    )
    if cal.steps:
        console.print()
        print_table(
            console,
            [Column(header="confidence"), Column(header="steps"), Column(header="mean conf."), Column(header="wrong")],
            [
                [f"{b.low:.1f}–{b.high:.1f}", str(b.steps), _num(b.mean_confidence, 2), _pct(b.wrong_rate)]
                for b in cal.bins
                if b.steps
            ],
        )
    console.print(f"results: [bold]{escape(str(outcome.folder))}[/] (episodes.jsonl, results.csv, summary.json)", soft_wrap=True)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _term_as_interrupt() -> Any:
    """SIGTERM raises KeyboardInterrupt from now on (when it had Python's default); the handler to put back, or None."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def _build_miniwob(runs_dir: Path, tasks: str | None, seeds: str | None) -> Path:
    """The built-in MiniWoB++ suite's task files, written once per choice of tasks and seeds (so a resumed eval
    finds the same files) under ``runs_dir/evals/miniwob-tasks/``."""
    import hashlib

    from evals.miniwob import build_suite
    from evals.suite import parse_seeds

    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    chosen = parse_seeds(seeds, "--seeds") if seeds else list(range(5))
    key = hashlib.sha256(f"{names}|{chosen}".encode()).hexdigest()[:12]
    return build_suite(runs_dir / "evals" / "miniwob-tasks" / key, tasks=names, seeds=chosen)
