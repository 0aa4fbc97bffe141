"""The ``glassbox`` command line: a thin layer over the Python API (parse flags, print, exit codes).

Exit codes: 0 the task succeeded, 1 it failed (or was interrupted, or the environment broke: a
:class:`tools.errors.HarnessError`), 2 usage errors (bad flags, and every :class:`tools.errors.UsageError`: a bad
task file, policy name, run reference ...). :class:`_GlassboxGroup` maps the errors; commands do not list them.
"""

from __future__ import annotations

import socket
import sys
import threading
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape
from typer.core import TyperGroup

from agent.policies import POLICIES
from agent.task import load_task
from cli.decide_cmd import decide_command
from cli.eval_cmd import eval_command
from cli.label_cmd import label_command, labels_command, unlabel_command
from cli.otel_cmd import OtelFlag, export_for_run, export_otel_cmd
from cli.output import (
    clean,
    console,
    err_console,
    missing_steps,
    runs_dir_is_folder,
    say_damaged,
    say_missing_steps,
    shown,
    writable_runs_dir,
)
from cli.output import usage_error as _usage_error
from cli.run_ref import RunRef, resolve_run
from cli.train_cmd import train_command
from tools.actions import Answer, Key, Terminate, Type
from tools.errors import HarnessError, UsageError
from tracer.logs import Console as LogConsole
from tracer.logs import format_event, set_console
from tracer.schema import RunStatus, StepRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.approval import Choice, PendingStep
    from agent.events import Hooks, RunEnded, RunStarted
    from agent.loop import RunResult
    from tracer.schema import CheckResult


class _GlassboxGroup(TyperGroup):
    """The top command: turns Glassbox's errors into a message and an exit code (:mod:`tools.errors`).

    A :class:`UsageError` (a bad task file, policy name, run reference ...) exits 2, a :class:`HarnessError`
    (the environment could not start or broke) exits 1, each printing its message instead of a traceback.
    Commands catch an error themselves only to say more than its message."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (typer vendors click: its class is private)
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise _usage_error(str(exc)) from None
        except HarnessError as exc:
            err_console.print(f"[bold red]error:[/] {escape(clean(str(exc), lines=True))}", soft_wrap=True)
            raise typer.Exit(code=1) from None


app = typer.Typer(
    cls=_GlassboxGroup,
    name="glassbox",
    help="A GUI agent whose every decision can be seen, replayed and corrected.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
site_app = typer.Typer(help="Serve a bundled target site on its own.", no_args_is_help=True)
app.add_typer(site_app, name="site")
runs_app = typer.Typer(help="List, show and remove recorded runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
export_app = typer.Typer(help="Export labels and runs.", no_args_is_help=True)
app.add_typer(export_app, name="export")
dev_app = typer.Typer(help="Developer tools.", no_args_is_help=True)
app.add_typer(dev_app, name="dev")
app.command("eval")(eval_command)  # glassbox eval SUITE: cli/eval_cmd.py
app.command("decide")(decide_command)  # glassbox decide RUN --step N / --labelled: cli/decide_cmd.py
app.command("label")(label_command)  # glassbox label RUN --step N correct|wrong: cli/label_cmd.py
app.command("labels")(labels_command)
app.command("unlabel")(unlabel_command)
export_app.command("otel")(export_otel_cmd)  # glassbox export otel RUN...: cli/otel_cmd.py
app.command("train")(train_command)  # glassbox train sft|dpo --from-labels: cli/train_cmd.py

RunsDir = Annotated[Path, typer.Option(help="The runs directory.", callback=runs_dir_is_folder)]
RUN_HELP = "The run: its folder as `glassbox run` prints it (runs/<id>), its id, or a unique prefix of the id."
RunArg = Annotated[str, typer.Argument(metavar="RUN", help=RUN_HELP, show_default=False)]


class GraphFormat(str, Enum):
    json = "json"
    graphml = "graphml"
    mermaid = "mermaid"


# Log events (tracer.logs) on the terminal: info from the libraries (a backend's "warming up: compiling the decode
# step"), every warning and error; debug only with -v. The loop's and the environment's info and warnings (run
# started, step error, starting the task's program) say what this printer already prints (the header, the step
# lines, "this task starts a program"), so below error they show only with -v. All of it is in log.jsonl anyway.
_LOG_STYLE = {"debug": "dim", "info": "cyan", "warning": "yellow", "error": "bold red", "critical": "bold red"}
_LOG_QUIET = frozenset({"glassbox.loop", "glassbox.environment"})


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug log events on the terminal too.")] = False,
) -> None:
    set_console(
        LogConsole(show=_show_log_event, level="debug" if verbose else "info", quiet=frozenset() if verbose else _LOG_QUIET)
    )


def _show_log_event(event: dict[str, object]) -> None:
    level = str(event.get("level", "info"))
    label = "glassbox" if level == "info" else level
    err_console.print(
        # one line, and no control character: the fields hold page text (a URL, an error) a terminal would act on
        f"[{_LOG_STYLE.get(level, 'bold')}]{label}:[/] {shown(format_event(event, traceback=False))}",
        soft_wrap=True,
    )


class DecodingMode(str, Enum):
    auto = "auto"
    fast = "fast"
    plain = "plain"


FilesRoot = Annotated[
    Optional[Path], typer.Option("--files-root", help="A folder the task may upload files from, besides its own folder.")
]
AllowPrograms = Annotated[
    bool,
    typer.Option(
        "--allow-programs",
        help="Let a task from outside the bundled tasks/ folder start programs (a desktop app, command checks).",
    ),
]


@app.command()
def run(
    task_file: Annotated[Path, typer.Argument(metavar="TASK.yaml", help="Task file to run.")],
    policy: Annotated[Optional[str], typer.Option(help=f"Who decides: {', '.join(POLICIES)} (default: the task's).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders are written.", callback=runs_dir_is_folder)] = Path("runs"),
    layout_seed: Annotated[
        Optional[int], typer.Option(min=0, max=2**31 - 1, help="Layout seed of the bundled site (overrides the task's).")
    ] = None,
    headed: Annotated[bool, typer.Option("--headed", help="Show the browser window.")] = False,
    site_url: Annotated[
        Optional[str], typer.Option(help="Use an already running site (e.g. `glassbox site shop`) instead of starting one.")
    ] = None,
    model: Annotated[Optional[str], typer.Option(help="qwen3vl: local folder or hub id; openai: the served model name.")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="openai: the server, e.g. http://127.0.0.1:8000/v1.")] = None,
    temperature: Annotated[
        Optional[float], typer.Option(min=0, help="Sampling temperature (default: Qwen3-VL's for Thinking/Instruct).")
    ] = None,
    top_p: Annotated[Optional[float], typer.Option(min=0, max=1, help="Nucleus sampling.")] = None,
    top_k: Annotated[Optional[int], typer.Option(min=0, help="Top-k sampling.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, help="Generation limit per step.")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, max=2**32 - 1, help="Seed for reproducible sampling.")] = None,
    decoding: Annotated[
        Optional[DecodingMode],
        typer.Option(
            help="qwen3vl: fast (static KV cache, compiled decode step, prompt prefix reuse) or plain (transformers generate); "
            "auto: fast on CUDA, plain on CPU."
        ),
    ] = None,
    compile: Annotated[
        Optional[bool],
        typer.Option(
            "--compile/--no-compile",
            help="qwen3vl fast path: compile the decode step (default: on CUDA only; compiling "
            "takes up to a minute, once per process).",
        ),
    ] = None,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Step limit (overrides the task's).")] = None,
    max_errors: Annotated[Optional[int], typer.Option(min=1, help="Consecutive error limit (overrides the task's).")] = None,
    view: Annotated[bool, typer.Option("--view", help="Start the live viewer beside the run and print its URL.")] = False,
    view_port: Annotated[int, typer.Option(min=0, max=65535, help="Viewer port with --view (0: the OS picks).")] = 0,
    ask_below: Annotated[
        Optional[float],
        typer.Option(
            help="Hold a step whose confidence is below CONF (0..1) for a person: in a running viewer, else on this "
            "terminal (sets policy.min_confidence and on_low_confidence: ask).",
            metavar="CONF",
        ),
    ] = None,
    ocr: Annotated[
        Optional[bool],
        typer.Option(
            "--ocr/--no-ocr",
            help="Read each step's screenshot (OCR, off the step's path; the ocr extra). Default: the task's "
            "ocr.enabled (auto: on for a model policy when installed).",
        ),
    ] = None,
    ask_on_mismatch: Annotated[
        bool,
        typer.Option(
            "--ask-on-mismatch",
            help="Hold a step for a person when the text at its point does not match what the reasoning named "
            "(sets policy.on_mismatch: ask; turns OCR on).",
        ),
    ] = False,
    files_root: FilesRoot = None,
    allow_programs: AllowPrograms = False,
    otel: OtelFlag = False,
) -> None:
    """Run a task: perceive, think, act, record, then check whether it was done."""
    from agent.loop import run_task

    writable_runs_dir(runs_dir)

    task = load_task(task_file, files_root=files_root, allow_programs=True if allow_programs else None)
    for _, command in task.programs():  # say what will run before anything runs
        err_console.print(f"[yellow]this task starts a program:[/] {escape(command)}", soft_wrap=True)
    _check_urls(site_url=site_url, base_url=base_url)
    if site_url is not None and layout_seed is not None:
        raise _usage_error("--layout-seed applies to a site Glassbox starts; with --site-url the running site decides")
    from agent.task import SiteTarget

    if not isinstance(task.target, SiteTarget) and (site_url is not None or layout_seed is not None):
        flag = "--site-url" if site_url is not None else "--layout-seed"
        opens = "a desktop app" if task.target is None else "its own start_url"
        raise _usage_error(f"{flag} is for a task on the bundled site; {task_file} opens {opens}")
    if ask_below is not None and not 0 <= ask_below <= 1:
        raise _usage_error(f"--ask-below must be a confidence between 0 and 1, not {ask_below:g}")
    if ask_on_mismatch and ocr is False:
        raise _usage_error("--ask-on-mismatch reads the screen with OCR, so it cannot go with --no-ocr")
    if ocr is not None or ask_on_mismatch:
        task.ocr.enabled = True if ask_on_mismatch else bool(ocr)
    if max_steps is not None:
        task.limits.max_steps = max_steps
    if max_errors is not None:
        task.limits.max_consecutive_errors = max_errors
    overrides: dict[str, object] = {
        "model": model,
        "base_url": base_url,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "decoding": decoding.value if decoding else None,
        "compile": compile,
    }
    if ask_below is not None:
        overrides.update(min_confidence=ask_below, on_low_confidence="ask")
    if ask_on_mismatch:
        overrides.update(on_mismatch="ask")

    viewer = None
    if view:
        from replays.viewer import ViewerServer

        try:
            viewer = ViewerServer(runs_dir, port=view_port).start()
        except (RuntimeError, OSError) as exc:
            raise _usage_error(f"cannot start the viewer on port {view_port}: {exc}") from None

    from agent.events import RunEnded, RunStarted

    def started(event: RunStarted) -> None:
        record = event.run
        target = record.target_url or "a desktop app on a private display"
        console.print(f"[bold]{shown(record.task_name)}[/] · policy [cyan]{record.policy}[/] · target {target}")
        console.print(f"recording to [bold]{escape(str(event.run_dir))}[/]", soft_wrap=True)
        if viewer is not None:
            console.print(f"live viewer: [bold]{viewer.url}/runs/{record.run_id}[/]")

    hooks = _step_printer()
    hooks.on(RunStarted, started)
    hooks.on(RunEnded, _print_run_end)
    traces = export_for_run(otel, hooks, task, viewer_url=viewer.url if viewer is not None else None)
    try:
        result = run_task(
            task,
            policy=policy,
            runs_dir=runs_dir,
            layout_seed=layout_seed,
            headed=headed or None,
            site_url=site_url,
            policy_overrides=overrides,
            hooks=hooks,
            terminal_ask=_ask_on_terminal if sys.stdin.isatty() and sys.stdout.isatty() else None,
        )
    finally:
        if traces is not None:
            traces.close()  # at most 1.5 s, collector up or down
    _print_ocr_summary(result.run_dir)
    if viewer is not None:
        if sys.stdin.isatty() and sys.stdout.isatty():
            console.print(f"viewer still serving at [bold]{viewer.url}/runs/{result.run_id}[/] · Ctrl-C to quit")
            _wait_for_ctrl_c()
        viewer.stop()
    raise typer.Exit(code=0 if result.status is RunStatus.succeeded else 1)


_TERMINAL_CHOICES = {"y": "approve", "yes": "approve", "n": "skip", "no": "skip", "skip": "skip", "stop": "stop"}


def _ask_on_terminal(pending: PendingStep, cancelled: threading.Event) -> Choice | None:
    """Ask on this terminal whether a held step may act (no viewer is running); None when answered elsewhere or
    timed out first. Reads stdin only when a line is there, so it stops asking as soon as ``cancelled`` is set."""
    import os
    import select

    action = pending.action.get("action", "?")
    point = f" at ({pending.point[0]:.0f}, {pending.point[1]:.0f})" if pending.point else ""
    console.print(f"\n[bold yellow]step {pending.step} waits for you[/]: {shown(pending.why_text)}")
    console.print(f"  proposed: [bold]{shown(str(action))}{point}[/]", soft_wrap=True)
    if pending.reasoning:
        console.print(f"  reasoning: {shown(pending.reasoning[:300])}", soft_wrap=True)
    console.print(
        f"  [bold]y[/] approve · [bold]n[/]/[bold]skip[/] skip · [bold]stop[/] stop the run "
        f"(no answer in {pending.timeout_s:g} s: {pending.on_timeout}) > ",
        end="",
    )
    fd = sys.stdin.fileno()
    pending_bytes = b""  # read from the descriptor itself: a buffered readline would hide lines from select
    while not cancelled.is_set():
        if b"\n" not in pending_bytes:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready or cancelled.is_set():
                continue
            chunk = os.read(fd, 1024)
            if not chunk:
                return None
            pending_bytes += chunk
            continue
        line, _, pending_bytes = pending_bytes.partition(b"\n")
        choice = _TERMINAL_CHOICES.get(line.decode(errors="replace").strip().lower())
        if choice is not None:
            return choice  # type: ignore[return-value]
        console.print("answer y, n, skip or stop > ", end="")
    return None


def _wait_for_ctrl_c() -> None:
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


@app.command()
def view(
    runs_dir: RunsDir = Path("runs"),
    host: Annotated[str, typer.Option(help="Interface to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: the OS picks).")] = 8600,
) -> None:
    """Serve the run viewer: runs, steps, live progress, labelling."""
    from replays.viewer import ViewerServer

    existed = runs_dir.is_dir()
    try:
        server = ViewerServer(runs_dir, host=host, port=port).start()
    except (RuntimeError, OSError) as exc:
        raise _usage_error(f"cannot serve the viewer on {host}:{port}: {exc}") from None
    if not existed:  # the viewer watches the folder, so it makes it; a mistyped name would otherwise show no runs silently
        err_console.print(f"note: {escape(str(runs_dir))} did not exist; made it, empty: runs recorded there will show up")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/] the viewer listens on {host}: anyone who can reach it can see your runs")
    console.print(f"viewer for {runs_dir} on [bold]{server.url}[/] · Ctrl-C stops")
    sys.stdout.flush()
    _wait_for_ctrl_c()
    server.stop()


def _step_printer() -> Hooks:
    """A hook registry with the step printer subscribed: one line per recorded step, as it is recorded."""
    from agent.events import Hooks, StepRecorded

    hooks = Hooks()
    hooks.on(StepRecorded, lambda event: _print_step(event.step))
    return hooks


def _print_ocr_summary(run_dir: Path) -> None:
    """What OCR read (written once it caught up after the run's end), and the steps whose click did not match."""
    from tracer.ocr_files import read_ocr_index

    index = read_ocr_index(run_dir)
    if index is None:
        return
    done = sum(1 for s in index.steps.values() if s.status == "done")
    late = (
        f"caught up {index.caught_up_after_end_s:.1f} s after the end"
        if index.caught_up_after_end_s is not None
        else f"[yellow]{index.not_done} not done[/] after waiting {index.waited_s:.1f} s"
    )
    console.print(f"OCR: {done} of {len(index.steps)} steps read, {late}")
    if index.not_done:
        console.print(f"  read the rest with: glassbox runs ocr {escape(run_dir.name)}", soft_wrap=True)
    if index.mismatches:
        listed = ", ".join(str(i) for i in index.mismatches)
        console.print(f"[bold red]mismatch[/]: the point did not show what the reasoning named at step {listed}")


def _ending(end_reason: str, checks: list[CheckResult]) -> str:
    """The end reason, and when checks failed, how many: "the agent ended the task (success)" alone, beside
    "failed", reads as a contradiction."""
    failed = sum(1 for c in checks if not c.passed)
    said = shown(end_reason)
    return f"{said}; {failed} of {len(checks)} check(s) failed" if failed else said


def _print_run_end(event: RunEnded) -> None:
    """The run's summary when it ends: its checks, status and end reason, and where it is recorded."""
    run = event.run
    for check in run.checks:
        mark = "[green]✓[/]" if check.passed else "[red]✗[/]"
        console.print(f"  {mark} {shown(check.description)} [dim]({shown(check.detail[:160])})[/]")
    colour = {RunStatus.succeeded: "green", RunStatus.failed: "red"}.get(event.status, "yellow")
    console.print(f"[bold {colour}]{event.status.value}[/] after {run.steps} steps: {_ending(event.end_reason, run.checks)}")
    _print_least_confident(event.run_dir)
    console.print(f"run recorded in [bold]{escape(str(event.run_dir))}[/]", soft_wrap=True)


def _print_least_confident(run_dir: Path) -> None:
    from cli.output import least_confident_markup
    from tracer.store import read_steps

    try:
        steps = read_steps(run_dir)
    except (ValueError, OSError):  # the summary goes on without it; the run's own files say what is wrong
        return
    console.print(least_confident_markup(steps), soft_wrap=True)


def _print_step(step: StepRecord) -> None:
    held = step.gate.model_action if step.outcome == "skipped" and step.gate is not None else None
    action = step.action or held  # a skipped step shows the action a gate held back
    name = action.action if action is not None else "—"
    detail = ""
    if step.coordinate is not None:
        detail = f"({step.coordinate.model[0]:.0f}, {step.coordinate.model[1]:.0f})→{step.coordinate.css}"
    elif isinstance(action, (Type, Answer)):
        detail = repr(action.text)[:40]
    elif isinstance(action, Key):
        detail = "+".join(action.keys)
    elif isinstance(action, Terminate):
        detail = action.status
    if step.outcome == "ok":
        status = "[green]ok[/]"
    elif step.outcome == "skipped":  # a gate held it back: who, and why
        who = step.gate.who if step.gate else "a gate"
        reason = step.gate.reason if step.gate and step.gate.reason else ""
        status = f"[yellow]skipped[/] by {shown(who)}" + (f": {shown(reason)}" if reason else "")
    else:
        status = f"[red]error[/] {shown(step.error or '')}"
    if step.gate is not None and step.gate.decision == "replace":
        status += f" [yellow](replaced by {shown(step.gate.who)})[/]"
    if step.consistency is not None and step.consistency.verdict == "mismatch":
        status += f" [bold red]mismatch[/] {shown(step.consistency.reason[:120])}"
    for dialog in step.dialogs[:3]:  # never on a screenshot: said here
        status += f" [yellow]{dialog.kind} {escape(repr(dialog.message[:60]))} {dialog.answer}[/]"
    if len(step.dialogs) + step.dialogs_more > 3:
        status += f" [yellow](+{len(step.dialogs) + step.dialogs_more - 3} more dialogs)[/]"
    if step.tab_change:
        status += f" [cyan]{shown(step.tab_change[:100])}[/]"
    if step.downloads:
        status += f" [cyan]downloaded {shown(', '.join(step.downloads[:3]))}[/]"
    if step.blocked_tabs:
        count = len(step.blocked_tabs) + step.blocked_tabs_more
        status += f" [yellow]blocked {count} tab(s) the page opened by itself[/]"
    took = step.timings.perceive_ms + step.timings.think_ms + step.timings.act_ms + step.timings.record_ms
    reasoning = shown((step.reasoning or "").splitlines()[0][:70]) if step.reasoning else ""
    from cli.output import confidence_markup, is_tty

    conf = confidence_markup(step.confidence)
    line = f"  [dim]{step.index:>3}[/] {escape(str(name)):<12} {shown(detail):<28} {conf} {status}"
    line += f" [dim]{took:.0f} ms · {reasoning}[/]"

    if is_tty(console):
        console.print(line, no_wrap=True, overflow="ellipsis")
    else:  # piped: the whole line, so grep sees the outcome and the error
        console.print(line, soft_wrap=True)


@site_app.command("shop")
def site_shop(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: let the OS choose).")] = 8765,
    layout_seed: Annotated[int, typer.Option(min=0, help="Layout seed (0 is the default look).")] = 0,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    data_dir: Annotated[Optional[Path], typer.Option(help="Keep the database here (default: fresh, temporary).")] = None,
) -> None:
    """Serve the demo shop admin until Ctrl-C. Sign in as admin / Xq7-tulip-4821."""
    import time

    from sites.shop import ShopServer

    try:
        server = ShopServer(layout_seed=layout_seed, host=host, port=port, data_dir=data_dir).start()
    except (RuntimeError, OSError) as exc:
        raise _usage_error(f"cannot serve the shop on {host}:{port}: {exc}") from None
    console.print(
        f"shop (layout seed {layout_seed}) on [bold]{server.base_url}[/] · sign in as admin / Xq7-tulip-4821 · Ctrl-C stops"
    )
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _resolve(ref: str, runs_dir: Path, *, writes: typer.Context | None = None, check_record: bool = True) -> RunRef:
    """The run ``ref`` names (folder path, id or unique prefix), or exit 2 saying what was looked for.

    A folder path outside --runs-dir is fine: its parent is then the runs directory. Commands that write
    there (rm, replay, resume: they pass their context as ``writes``) refuse it only when --runs-dir was
    given and names another directory.
    """
    found = resolve_run(ref, runs_dir)
    if writes is not None and found.by == "path" and _given(writes, "runs_dir") and not _same_dir(found.runs_dir, runs_dir):
        raise _usage_error(
            f"the run folder {found.run_dir} is not in --runs-dir {runs_dir}; drop --runs-dir or pass --runs-dir {found.runs_dir}"
        )
    if check_record:  # a run folder is untrusted input: a damaged run.json is a message, not a traceback
        from tracer.store import read_run

        try:
            read_run(found.run_dir)
        except (ValueError, OSError) as exc:
            raise _usage_error(f"run {found.run_id} cannot be read: {exc}") from None
    return found


def _run_dir(runs_dir: Path, ref: str) -> Path:
    return _resolve(ref, runs_dir).run_dir


def _given(ctx: typer.Context, param: str) -> bool:
    """Whether the user passed this option (rather than getting its default)."""
    source = ctx.get_parameter_source(param)
    return source is not None and source.name != "DEFAULT"


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return False


@runs_app.command("list")
def runs_list(
    runs_dir: RunsDir = Path("runs"),
    task: Annotated[Optional[str], typer.Option(help="Only runs of this task name.")] = None,
    status: Annotated[Optional[RunStatus], typer.Option(help="Only runs with this status.")] = None,
    policy: Annotated[Optional[str], typer.Option(help="Only runs of this policy.")] = None,
    since: Annotated[Optional[datetime], typer.Option(help="Started at or after (e.g. 2026-11-23 or 2026-11-23T08:00).")] = None,
    until: Annotated[Optional[datetime], typer.Option(help="Started before.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs.")] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document: {runs_dir, runs: [...]}.")] = False,
) -> None:
    """List runs, newest first (from the SQLite index, synced with the folders).

    On a terminal a table; piped, one whole plain line per run (so `runs list | grep failed` works).
    """
    from cli.output import Column, RunListing, missing_runs_dir, print_table, write_json
    from tracer.index import RunIndex

    if missing_runs_dir(runs_dir, "runs", RunListing(runs_dir=str(runs_dir), runs=[]), json_out=json_out):
        return
    index = RunIndex(runs_dir)
    try:
        index.sync()
        rows = index.runs(
            task=task,
            status=status.value if status else None,
            policy=policy,
            since=_aware(since),
            until=_aware(until),
            limit=limit,
        )
    finally:
        index.close()
    if json_out:
        write_json(console, RunListing(runs_dir=str(runs_dir), runs=rows, unreadable=index.unreadable))
        return
    for run_id, why in index.unreadable[:20]:  # not listed below: say so rather than let them vanish
        err_console.print(f"[yellow]not listed, its folder cannot be read:[/] {shown(run_id)}: {shown(why[:300])}")
    if len(index.unreadable) > 20:
        err_console.print(f"[yellow]and {len(index.unreadable) - 20} more run folders that cannot be read[/]")
    if not rows:
        console.print(f"no runs in {escape(str(runs_dir))}" + (" match" if any((task, status, policy, since, until)) else ""))
        return
    colours = {"succeeded": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
    columns = [
        Column(header="run"),
        Column(header="task", wraps=True),
        Column(header="policy", wraps=True),
        Column(header="status", style_by_value=colours),
        Column(header="steps"),
        Column(header="errors"),
        Column(header="time"),
        Column(header="started"),
    ]
    cells = [
        (
            row.run_id,
            row.task_name,
            row.policy + (f" ({row.model})" if row.model else ""),
            row.status.value,
            str(row.steps),
            str(row.errors),
            f"{row.duration_s:.1f}s" if row.duration_s is not None else "—",
            f"{row.started_at.astimezone():%Y-%m-%d %H:%M}",
        )
        for row in rows
    ]
    print_table(console, columns, cells)
    if len(rows) == limit:  # there may be more: say how to see them rather than stop silently
        err_console.print(f"[dim]showing the first {limit} runs; --limit N shows more[/]")


@runs_app.command("show")
def runs_show(
    run_id: RunArg,
    runs_dir: RunsDir = Path("runs"),
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document: {run_dir, run, steps}.")] = False,
) -> None:
    """Show one run: its record, checks and steps."""
    from cli.output import RunShow, write_json
    from tracer.store import UnreadableStep, read_run, read_step_entries, split_entries

    run_dir = _run_dir(runs_dir, run_id)
    run, entries = read_run(run_dir), read_step_entries(run_dir)
    steps, damaged = split_entries(entries)
    if json_out:
        write_json(console, RunShow(run_dir=str(run_dir), run=run, steps=steps, unreadable=damaged))
        return
    model = f" ({run.model})" if run.model else ""
    console.print(f"[bold]{escape(run.run_id)}[/]  {shown(run.task_name)} · {shown(run.policy + model)}")
    console.print(f"status [bold]{run.status.value}[/]: {shown(run.end_reason or '')}")
    console.print(
        f"started {run.started_at:%Y-%m-%d %H:%M:%S} · {run.duration_s or 0:.1f} s · {run.steps} steps, {run.errors} errors"
    )
    console.print(f"folder {shown(str(run_dir))}", soft_wrap=True)
    for check in run.checks:
        console.print(f"  {'[green]✓[/]' if check.passed else '[red]✗[/]'} {shown(check.description)}")
    if damaged:  # said up front: a count of steps that does not add up is otherwise a puzzle
        console.print(f"[bold red]{len(damaged)} line(s) of steps.jsonl cannot be read[/] (shown in place below)")
    cut = missing_steps(run, len(entries))
    if cut is not None:
        console.print(f"[bold red]{shown(cut)}[/]")
    for entry in entries:
        if isinstance(entry, UnreadableStep):
            why = shown(entry.unreadable)
            line = f"  [dim]{entry.index:>3}[/] [bold red]unreadable[/] line {entry.line + 1} of steps.jsonl: {why}"
            console.print(line, soft_wrap=True)
        else:
            _print_step(entry)


@runs_app.command("ocr")
def runs_ocr(
    run_id: RunArg,
    runs_dir: RunsDir = Path("runs"),
    every: Annotated[bool, typer.Option("--all", help="Read every step again, not only the ones OCR did not read.")] = False,
) -> None:
    """Read the screens of a recorded run that OCR did not read while it ran (or every step, with --all)."""
    from cli.ocr_cmd import read_run_screens

    read_run_screens(_run_dir(runs_dir, run_id), every=every)


@runs_app.command("rm")
def runs_rm(
    ctx: typer.Context,
    run_ids: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN", help="Runs to delete: their folders (runs/<id>), ids or unique prefixes.", show_default=False
        ),
    ],
    runs_dir: RunsDir = Path("runs"),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Delete a run recorded as running too (one on another machine, or stuck).")
    ] = False,
) -> None:
    """Delete runs (folder and index rows)."""
    from tracer.store import RunStore

    found = (_resolve(r, runs_dir, writes=ctx, check_record=False) for r in run_ids)  # a damaged run can go too
    refs = list({ref.run_dir.resolve(): ref for ref in found}.values())
    for folder in {ref.runs_dir for ref in refs}:
        writable_runs_dir(folder)
    if not force:  # every run checked before any is deleted
        for ref in refs:
            running = _still_running(ref.run_dir)
            if running is not None:
                raise _usage_error(f"run {ref.run_id} {running}; stop it first, or pass --force to delete it anyway")
    if not yes:
        if not sys.stdin.isatty():
            raise _usage_error("refusing to delete without confirmation; pass --yes")
        typer.confirm(f"Delete {len(refs)} run(s)?", abort=True)
    for ref in refs:
        RunStore(ref.runs_dir).remove(ref.run_id)
        console.print(f"removed {escape(str(ref.run_dir))}", soft_wrap=True)


def _still_running(run_dir: Path) -> str | None:
    """How a run's record says it is still being written (deleting it would break it, and the run would write a
    half folder back), or None. A damaged record says nothing: such a run can go."""
    from tracer.run_files import process_alive
    from tracer.schema import RunStatus
    from tracer.store import read_run

    try:
        record = read_run(run_dir)
    except (OSError, ValueError):
        return None
    if record.status is not RunStatus.running or not process_alive(record.pid, record.host):
        return None
    if record.host != socket.gethostname():
        return f"is recorded as running on {shown(record.host or 'another machine')} (process {record.pid})"
    return f"is still running (process {record.pid} on this machine)"


@app.command()
def graph(
    run_id: RunArg,
    runs_dir: RunsDir = Path("runs"),
    format: Annotated[GraphFormat, typer.Option("--format", "-f", help="Output format.")] = GraphFormat.json,
    out: Annotated[Optional[Path], typer.Option(help="Write here instead of standard output.")] = None,
) -> None:
    """Export a run's decision graph (observation -> reasoning -> action -> outcome -> next observation)."""
    from tracer.decisions import read_decisions
    from tracer.graph import attach_counterfactuals, export, run_graph
    from tracer.store import read_run, read_step_entries, split_entries

    run_dir = _run_dir(runs_dir, run_id)
    decided = read_decisions(run_dir)  # counterfactual branches (glassbox decide)
    steps, damaged = split_entries(read_step_entries(run_dir))
    say_damaged(run_dir, damaged, "in the graph as 'damaged' nodes")
    graph = run_graph(read_run(run_dir), steps, damaged=damaged)
    text = export(attach_counterfactuals(graph, decided), format.value)
    if out is not None:
        from replays.share_output import check_out_path

        check_out_path(out, example=f"graph.{format.value}")
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {escape(str(out))}", soft_wrap=True)


class FallbackMode(str, Enum):
    none = "none"
    policy = "policy"


def _policy_options(model: str | None, base_url: str | None) -> dict[str, object]:
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise _usage_error(f"--base-url must be an http:// or https:// URL, not {base_url!r}")
    return {"model": model, "base_url": base_url}


def _report(result: RunResult) -> None:
    from collections import Counter

    from tracer.store import read_run, read_steps

    steps = read_steps(result.run_dir)
    decisions = Counter(s.replay.decision for s in steps if s.replay)
    summary = read_run(result.run_dir).summary
    for check in result.checks:
        mark = "[green]✓[/]" if check.passed else "[red]✗[/]"
        console.print(f"  {mark} {shown(check.description)}")
    colour = {RunStatus.succeeded: "green", RunStatus.failed: "red"}.get(result.status, "yellow")
    ending = _ending(result.end_reason, result.checks)
    console.print(f"[bold {colour}]{result.status.value}[/] after {result.steps} steps: {ending}")
    console.print(
        f"replayed {decisions.get('replayed', 0)}, fallback {decisions.get('fallback', 0)}, "
        f"corrected {decisions.get('corrected', 0)}, policy steps "
        f"{sum(1 for s in steps if s.replay is None)}; model calls: {summary.model_calls}"
    )
    corrected = [s.replay.source_step for s in steps if s.replay and s.replay.decision == "corrected"]
    if corrected:
        console.print(f"the correction labelled on recorded step {corrected[0]} was played there")
    diverged = [s.replay for s in steps if s.replay and s.replay.decision in ("diverged", "fallback")]
    if diverged:
        first = diverged[0]
        console.print(f"first divergence at recorded step {first.source_step}: {shown(first.reason or '')}")
        if first.side_by_side:
            console.print(f"  side by side: {escape(str(result.run_dir / first.side_by_side))}", soft_wrap=True)
    console.print(f"run recorded in [bold]{escape(str(result.run_dir))}[/]", soft_wrap=True)


def _check_urls(*, site_url: str | None, base_url: str | None) -> None:
    """--site-url and --base-url name web servers: anything else is a usage error before a browser starts."""
    for flag, url in (("--site-url", site_url), ("--base-url", base_url)):
        if url is not None and not url.startswith(("http://", "https://")):
            raise _usage_error(f"{flag} must be an http:// or https:// URL, not {url!r}")


def _rerun(
    ctx: typer.Context,
    start: Callable[..., RunResult],
    run_id: str,
    runs_dir: Path,
    *,
    otel: bool,
    model: str | None,
    base_url: str | None,
    headed: bool,
    files_root: Path | None,
    allow_programs: bool,
    **options: Any,
) -> None:
    """Replay or resume (``start``) a recorded run with the step printer and, with --otel, live traces; print the
    outcome and exit 0 when the new run succeeded, else 1. ``options`` go to ``start`` as they are."""
    _check_urls(site_url=options.get("site_url"), base_url=base_url)
    source = _resolve(run_id, runs_dir, writes=ctx)  # the new run is recorded beside its source
    writable_runs_dir(source.runs_dir)
    say_missing_steps(source.run_dir)  # replayed as far as it goes, but said: the recording stops short
    hooks = _step_printer()
    traces = export_for_run(otel, hooks, source_run=source.run_dir)
    try:
        result = start(
            source.runs_dir,
            source.run_id,
            policy_overrides=_policy_options(model, base_url),
            headed=headed or None,
            hooks=hooks,
            files_root=files_root,
            allow_programs=True if allow_programs else None,
            **options,
        )
    finally:
        if traces is not None:
            traces.close()
    _report(result)
    raise typer.Exit(code=0 if result.status is RunStatus.succeeded else 1)


@app.command()
def replay(
    ctx: typer.Context,
    run_id: RunArg,
    runs_dir: RunsDir = Path("runs"),
    fallback: Annotated[
        FallbackMode, typer.Option(help="none: stop where the screen changed; policy: ask --policy there.")
    ] = FallbackMode.none,
    policy: Annotated[Optional[str], typer.Option(help=f"Fallback policy: {', '.join(POLICIES)} (default: the run's).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model of the fallback policy.")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="Server of an openai fallback policy.")] = None,
    layout_seed: Annotated[Optional[int], typer.Option(min=0, help="Replay against another layout of the bundled site.")] = None,
    site_url: Annotated[Optional[str], typer.Option(help="Replay against an already running site.")] = None,
    headed: Annotated[bool, typer.Option("--headed", help="Show the browser window.")] = False,
    files_root: FilesRoot = None,
    allow_programs: AllowPrograms = False,
    otel: OtelFlag = False,
) -> None:
    """Re-run a recorded run without the model, checking the screen before each step."""
    from replays.replay import replay as do_replay

    _rerun(
        ctx,
        do_replay,
        run_id,
        runs_dir,
        otel=otel,
        model=model,
        base_url=base_url,
        headed=headed,
        files_root=files_root,
        allow_programs=allow_programs,
        fallback=fallback.value,
        policy=policy,
        layout_seed=layout_seed,
        site_url=site_url,
    )


@app.command()
def resume(
    ctx: typer.Context,
    run_id: RunArg,
    from_step: Annotated[
        int,
        typer.Option(
            "--from-step",
            min=0,
            help="Replay the steps before this one, then hand over; a later step labelled wrong with a correction is "
            "replayed up to and played as corrected first.",
        ),
    ],
    runs_dir: RunsDir = Path("runs"),
    policy: Annotated[Optional[str], typer.Option(help=f"Who continues: {', '.join(POLICIES)} (default: the run's).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model of the policy.")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="Server of an openai policy.")] = None,
    layout_seed: Annotated[Optional[int], typer.Option(min=0, help="Another layout of the bundled site.")] = None,
    site_url: Annotated[Optional[str], typer.Option(help="Resume against an already running site.")] = None,
    headed: Annotated[bool, typer.Option("--headed", help="Show the browser window.")] = False,
    files_root: FilesRoot = None,
    allow_programs: AllowPrograms = False,
    otel: OtelFlag = False,
) -> None:
    """Replay a run up to a step, apply a person's correction there if labelled, and let the policy go on."""
    from replays.replay import resume as do_resume

    _rerun(
        ctx,
        do_resume,
        run_id,
        runs_dir,
        otel=otel,
        model=model,
        base_url=base_url,
        headed=headed,
        files_root=files_root,
        allow_programs=allow_programs,
        from_step=from_step,
        policy=policy,
        layout_seed=layout_seed,
        site_url=site_url,
    )


@app.command()
def diff(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="First run (folder, id or unique prefix).", show_default=False)],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="Second run (folder, id or unique prefix).", show_default=False)],
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Where two runs of the same task first differ: the action, or the screen before it."""
    from replays.diff import diff_runs

    dirs = _run_dir(runs_dir, run_a), _run_dir(runs_dir, run_b)
    for run_dir in dirs:
        say_missing_steps(run_dir)
    result = diff_runs(*dirs)
    if result.screens_unchecked:
        steps = ", ".join(map(str, result.screens_unchecked))
        console.print(f"screens not compared at step(s) {steps}, only the actions: {shown(result.unchecked_reason or '')}")
    if result.step is None:
        if result.outcomes is None:
            console.print(f"no difference over {result.compared} steps")
            return
        console.print(f"the same {result.compared} steps, but the outcomes differ: {shown(result.outcomes)}")
        raise typer.Exit(code=1)
    console.print(f"first difference at step {result.step}: {shown(result.reason)}")
    for side, text in (("A", result.a), ("B", result.b)):
        console.print(f"  {side}: {shown(text)}")
    raise typer.Exit(code=1)


class ExplainMethod(str, Enum):
    attention = "attention"
    gradcam = "gradcam"


class LayerGroup(str, Enum):
    shallow = "shallow"
    middle = "middle"
    deep = "deep"
    all = "all"


@app.command()
def explain(
    run_id: RunArg,
    step: Annotated[int, typer.Option("--step", min=0, help="The step to explain.")],
    runs_dir: RunsDir = Path("runs"),
    text: Annotated[
        Optional[list[str]], typer.Option("--text", help="Words or phrases of the output to explain (repeatable).")
    ] = None,
    method: Annotated[
        ExplainMethod, typer.Option(help="attention (exact, per layer group) or gradcam (vision merger).")
    ] = ExplainMethod.attention,
    layers: Annotated[LayerGroup, typer.Option(help="Layer group of the attention maps.")] = LayerGroup.all,
    model: Annotated[Optional[str], typer.Option(help="A local copy of the model (default: the run's model).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the overlays (default: RUN/explain).")] = None,
) -> None:
    """Re-run a step's prompt through the model and draw where it looked for the action, the reasoning or WORDs."""
    from agent.explain import explain_step

    run_dir = _run_dir(runs_dir, run_id)
    try:  # ExplainError and ModelUnavailable are usage errors: exit 2 with their message
        result = explain_step(
            run_dir, step, model=model, words=text or None, method=method.value, layers=layers.value, out_dir=out
        )
    except ImportError as exc:
        raise _usage_error(f"explain needs torch and transformers: {exc}") from None
    console.print(f"step {result.step} · {result.method} · tokens per target: {result.targets}")
    for key, fig in result.maps.items():
        extra = f" · {fig.peak_to_click_px:.0f} px from the click" if fig.peak_to_click_px is not None else ""
        console.print(
            f"  {key:<22} peak {fig.peak_px} · concentration {fig.concentration:.2f} · entropy {fig.entropy:.2f}{extra}"
        )
        console.print(f"    [dim]{result.overlays[key]}[/]", soft_wrap=True)


@dev_app.command("tiny-model")
def dev_tiny_model(
    out: Annotated[Path, typer.Argument(help="Folder to write the model into.")],
    chat_template: Annotated[
        Optional[Path], typer.Option(help="A chat template file to use instead of the built-in one.")
    ] = None,
) -> None:
    """Build a tiny random-weight Qwen3-VL (about 1.3 M parameters) for tests. Its outputs are noise."""
    try:
        from agent.tiny_model import build_tiny_model
    except ImportError as exc:
        raise _usage_error(f"needs torch and transformers: {exc}") from None
    template = chat_template.read_text(encoding="utf-8") if chat_template else None
    build_tiny_model(out, chat_template=template)
    console.print(f"tiny Qwen3-VL (random weights, noise only) written to [bold]{out}[/]")


class FeedbackFormat(str, Enum):
    sft = "sft"
    dpo = "dpo"


@export_app.command("playwright")
def export_playwright_cmd(
    run_id: RunArg,
    out: Annotated[Path, typer.Option(help="Python file to write.")],
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Write a standalone Playwright script that performs the run's actions (secrets from environment variables)."""
    from replays.playwright_export import export_playwright
    from replays.share_output import check_out_path

    check_out_path(out, example="replay.py", folder_made=True)
    info = export_playwright(_run_dir(runs_dir, run_id), out)
    console.print(f"wrote {out} ({info.actions} actions)", soft_wrap=True)
    if info.secret_env:
        console.print("set before running: " + ", ".join(info.secret_env))
    console.print(f"run it: python {out} --base-url URL", soft_wrap=True)


class ShareImageFormat(str, Enum):
    webp = "webp"
    jpeg = "jpeg"


MaxSteps = Annotated[int, typer.Option(min=1, help="Export at most this many steps (the first ones) of a long run.")]


@export_app.command("html")
def export_html_cmd(
    run_id: RunArg,
    out: Annotated[Path, typer.Option(help="HTML file to write (one self-contained file).")],
    runs_dir: RunsDir = Path("runs"),
    max_width: Annotated[int, typer.Option(min=160, max=3840, help="Shrink screenshots to at most this many pixels wide.")] = 960,
    quality: Annotated[int, typer.Option(min=10, max=100, help="Image quality of the embedded screenshots.")] = 70,
    image_format: Annotated[ShareImageFormat, typer.Option(help="Format of the embedded screenshots.")] = ShareImageFormat.webp,
    max_steps: MaxSteps = 200,
) -> None:
    """Write the run as one HTML file to send to anyone: filmstrip, screenshots with the click marked, reasoning,
    actions, confidence and checks. It opens from disk and loads nothing from the network."""
    from replays.share_html import HtmlOptions, export_html
    from replays.share_output import check_out_path

    check_out_path(out)
    options = HtmlOptions(max_width=max_width, quality=quality, image_format=image_format.value, max_steps=max_steps)
    run_dir = _run_dir(runs_dir, run_id)
    info = export_html(run_dir, out, options=options)
    shown = f"{info.steps} steps" if info.steps == info.total_steps else f"{info.steps} of {info.total_steps} steps (--max-steps)"
    console.print(
        f"wrote {escape(str(info.out))} ({_size(info.bytes)}, {shown}, screenshots {image_format.value} "
        f"≤ {max_width} px wide, quality {quality})",
        soft_wrap=True,
    )
    _say_missing(info.missing)
    say_damaged(run_dir, info.unreadable, "left out of the page, which says so")


@export_app.command("gif")
def export_gif_cmd(
    run_id: RunArg,
    out: Annotated[Path, typer.Option(help="GIF file to write.")],
    runs_dir: RunsDir = Path("runs"),
    width: Annotated[int, typer.Option(min=160, max=1920, help="Frame width in pixels (screenshots are shrunk to it).")] = 800,
    frame_ms: Annotated[int, typer.Option(min=20, max=60_000, help="How long each step shows, in milliseconds.")] = 1000,
    max_steps: MaxSteps = 200,
) -> None:
    """Write the run as an animated GIF: one frame per step, the click ringed and numbered, the action below."""
    from replays.share_gif import GifOptions, export_gif
    from replays.share_output import check_out_path

    check_out_path(out)
    run_dir = _run_dir(runs_dir, run_id)
    info = export_gif(run_dir, out, options=GifOptions(width=width, frame_ms=frame_ms, max_steps=max_steps))
    shown = (
        f"{info.frames} frames"
        if info.frames == info.total_steps
        else f"{info.frames} frames of {info.total_steps} steps (--max-steps)"
    )
    console.print(
        f"wrote {escape(str(info.out))} ({_size(info.bytes)}, {shown}, {info.size[0]}x{info.size[1]}, {frame_ms} ms a frame)",
        soft_wrap=True,
    )
    _say_missing(info.missing)
    say_damaged(run_dir, info.unreadable, "left out of the GIF")


def _size(count: int) -> str:
    return f"{count / 1_000_000:.1f} MB" if count >= 1_000_000 else f"{count / 1000:.0f} KB"


def _say_missing(missing: dict[int, str]) -> None:
    if not missing:
        return
    steps = ", ".join(str(i) for i in sorted(missing))
    err_console.print(f"[yellow]warning:[/] {len(missing)} screenshot(s) not available (steps {steps}): a placeholder is shown")
    for index in sorted(missing)[:5]:
        err_console.print(f"  step {index}: {shown(missing[index])}")


class FeedbackFlavor(str, Enum):
    llamafactory = "llamafactory"
    swift = "swift"


@export_app.command("feedback")
def export_feedback_cmd(
    format: Annotated[FeedbackFormat, typer.Option("--format", "-f", help="sft: corrected answers; dpo: corrected vs model.")],
    out: Annotated[Path, typer.Option(help="JSONL file to write (images go to images/ beside it).")],
    flavor: Annotated[
        FeedbackFlavor,
        typer.Option(help="llamafactory: relative images + dataset_info.json beside the file; swift: absolute images."),
    ] = FeedbackFlavor.llamafactory,
    think: Annotated[
        Optional[bool],
        typer.Option("--think/--no-think", help="<think> in targets (default: when the labelled steps recorded reasoning)."),
    ] = None,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Export labels as fine-tuning data that LLaMA-Factory or ms-swift reads as it is (Qwen-VL chat format)."""
    from replays.export import export_feedback
    from replays.share_output import check_out_path

    check_out_path(out, example=f"{format.value}.jsonl", folder_made=True)
    if not runs_dir.is_dir():  # a typo would otherwise make the folder and export nothing from it
        raise _usage_error(f"no runs directory {runs_dir}")
    summary = export_feedback(runs_dir, out, format.value, flavor=flavor.value, thinking=think)
    if not summary.written:
        kind = "corrected " if format.value == "dpo" else ""
        err_console.print(
            f"nothing to export: no {kind}labelled step in {escape(str(runs_dir))} makes a {format.value} record; "
            f"{escape(str(out))} was not written",
            soft_wrap=True,
        )
        for reason, count in summary.skipped.items():
            err_console.print(f"  skipped {count}: {shown(reason)}")
        err_console.print("label steps in the viewer (glassbox view) or with glassbox label RUN --step N ...")
        raise typer.Exit(1)
    thinking = "with <think>" if summary.thinking else "without <think>"
    console.print(
        f"wrote {summary.records} {format.value} record(s) for {flavor.value} {thinking} to [bold]{escape(str(summary.out))}[/] "
        f"(images in {escape(str(summary.images_dir))})",
        soft_wrap=True,
    )
    for reason, count in summary.skipped.items():
        console.print(f"  skipped {count}: {shown(reason)}")
    if summary.dataset_info is not None:
        import json

        console.print(f"dataset_info.json entry ({escape(str(summary.dataset_info))}):", soft_wrap=True)
        console.file.write(json.dumps({summary.dataset_name: summary.dataset_entry}, indent=2) + "\n")
    console.print(escape(summary.usage), soft_wrap=True)


def _aware(value: datetime | None) -> datetime | None:
    return value.astimezone() if value is not None and value.tzinfo is None else value


def main() -> None:
    app()


if __name__ == "__main__":
    main()
