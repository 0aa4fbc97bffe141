"""``glassbox decide``: ask a model what it would do at a recorded step, or at every labelled step.

    glassbox decide RUN --step 4 --model out/adapter
    glassbox decide RUN --step 4 --policy openai --base-url http://127.0.0.1:8000/v1 --model qwen3-vl
    glassbox decide --labelled --runs-dir runs --model out/adapter [--json]

Exit codes: 0 the decisions were made (however many landed), 2 usage errors (bad flags, no such run or step, a
screenshot gone, a model that cannot be built).
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from cli.output import confidence_markup, console, runs_dir_is_folder, shown, usage_error, write_json
from cli.run_ref import resolve_run

if TYPE_CHECKING:
    from agent.qwen_policy import QwenPolicy
    from replays.decide import DecideOptions, Decision, LabelledReport, Landing, Skipped


class ModelPolicy(str, Enum):
    qwen3vl = "qwen3vl"
    openai = "openai"


def decide_command(
    run: Annotated[
        Optional[str],
        typer.Argument(metavar="RUN", help="The run (folder, id or unique prefix); with --labelled: only its labels."),
    ] = None,
    step: Annotated[Optional[int], typer.Option("--step", min=0, help="The recorded step to decide.")] = None,
    labelled: Annotated[
        bool, typer.Option("--labelled", help="Decide every labelled step and count the clicks inside the labelled element.")
    ] = False,
    runs_dir: Annotated[Path, typer.Option(help="The runs directory.", callback=runs_dir_is_folder)] = Path("runs"),
    policy: Annotated[
        Optional[ModelPolicy], typer.Option(help="qwen3vl (local) or openai (served); default: openai with --base-url.")
    ] = None,
    model: Annotated[Optional[str], typer.Option(help="A local model folder (or adapter), or the served model's name.")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="The OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")] = None,
    api_key_env: Annotated[str, typer.Option(help="The environment variable holding the server's API key.")] = "OPENAI_API_KEY",
    temperature: Annotated[float, typer.Option(min=0, max=2, help="Sampling temperature (0: greedy, repeatable).")] = 0.0,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, max=131072, help="Token limit (default: the run's).")] = None,
    no_attention: Annotated[bool, typer.Option("--no-attention", help="Do not capture attention maps (local models).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of lines.")] = False,
) -> None:
    """Ask a model what it would do at a recorded step (the recorded prompt and screenshot), print it beside the
    original and record it in the run as a counterfactual branch of its graph."""
    from replays.decide import DecideOptions

    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise usage_error(f"--base-url must be an http:// or https:// URL, not {base_url!r}")
    if policy is ModelPolicy.openai and not base_url:
        raise usage_error("--policy openai needs --base-url (the server, e.g. http://127.0.0.1:8000/v1) and --model")
    if policy is ModelPolicy.qwen3vl and base_url:
        raise usage_error("--base-url is for --policy openai; a local model (qwen3vl) takes only --model")
    options = DecideOptions(
        policy=policy.value if policy else None,
        model=model,
        base_url=base_url,
        api_key_env=api_key_env,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        attention=not no_attention,
    )
    if labelled:
        if step is not None:
            raise usage_error("--labelled decides every labelled step: drop --step (or drop --labelled)")
        _labelled(run, runs_dir, options, json_out)
        return
    if run is None or step is None:
        raise usage_error("give a run and a step (glassbox decide RUN --step N), or --labelled")
    _one(run, step, runs_dir, options, json_out)


def _one(ref: str, step: int, runs_dir: Path, options: DecideOptions, json_out: bool) -> None:
    from replays.decide import decide_step, step_prompt

    found = resolve_run(ref, runs_dir)
    step_prompt(found.run_dir, step)  # a missing step or an unreadable screenshot: said before a model loads
    policy = _policy(found.run_dir, options)
    try:
        decision = decide_step(found.run_dir, step, policy)
    finally:
        policy.close()
    if json_out:
        write_json(console, decision)
        return
    _print_decision(decision, found.run_dir)


def _policy(run_dir: Path, options: DecideOptions) -> QwenPolicy:
    from replays.decide import policy_for_run

    try:
        return policy_for_run(run_dir, options)
    except ImportError as exc:
        raise usage_error(f"a local model needs torch and transformers: {exc}") from None


def _print_decision(decision: Decision, run_dir: Path) -> None:
    from replays.decide import summary

    record, original = decision.record, decision.original
    who = f"{record.policy}" + (f" ({record.model})" if record.model else "")
    console.print(
        f"[bold]{shown(decision.run_id)}[/] · step {record.step} · asked {shown(who)} · prompt {record.prompt_source}",
        soft_wrap=True,
    )
    rows = [
        ("recorded", original.action, original.coordinate, original.pixel, original.confidence, original.reasoning),
        ("decided", record.action, record.coordinate, record.pixel, record.confidence, summary(record.reasoning)),
    ]
    for name, action, grid, pixel, conf, why in rows:
        where = f"grid ({grid[0]:.0f}, {grid[1]:.0f}) · px ({pixel[0]}, {pixel[1]})" if grid and pixel else ""
        if grid and not pixel:
            where = f"grid ({grid[0]:.0f}, {grid[1]:.0f})"
        console.print(
            f"  {name:<9}{confidence_markup(conf)} {shown(action or '—'):<14} {escape(where)}",
            soft_wrap=True,
        )
        if why:
            console.print(f"           [dim]{shown(why)}[/]", soft_wrap=True)
    if record.error:
        console.print(f"  [red]the decision has no usable action:[/] {shown(record.error)}", soft_wrap=True)
    elif record.action is not None:
        same = "the same action as recorded" if record.action == original.action else "another action than recorded"
        apart = ""
        if record.pixel is not None and original.pixel is not None:
            apart = f", {math.dist(record.pixel, original.pixel):.0f} px from the recorded point"
        console.print(f"  decided {same}{apart}")
    if record.attention_file:
        console.print(f"  attention maps: {escape(str(run_dir / record.attention_file))}", soft_wrap=True)
    elif "attention" in record.unavailable:
        console.print(f"  [dim]attention not computed: {shown(record.unavailable['attention'])}[/]", soft_wrap=True)
    if decision.recorded_in:
        console.print(f"recorded in {escape(str(run_dir / decision.recorded_in))}", soft_wrap=True)


def _labelled(ref: str | None, runs_dir: Path, options: DecideOptions, json_out: bool) -> None:
    from replays.decide import decide_labelled

    run_id = None
    if ref is not None:
        found = resolve_run(ref, runs_dir)
        run_id, runs_dir = found.run_id, found.runs_dir
    if not runs_dir.is_dir():
        raise usage_error(f"no runs directory {runs_dir}")
    try:
        report = decide_labelled(runs_dir, options, run_id=run_id, on_landing=None if json_out else _print_landing)
    except ImportError as exc:
        raise usage_error(f"a local model needs torch and transformers: {exc}") from None
    if json_out:
        write_json(console, report)
        return
    _print_summary(report)


def _print_landing(item: Landing | Skipped) -> None:
    from replays.decide import Landing

    if not isinstance(item, Landing):
        console.print(f"  [yellow]skipped[/] {shown(item.run_id)} step {item.step}: {shown(item.reason)}", soft_wrap=True)
        return
    mark = "[green]landed[/]" if item.landed else "[red]missed[/]"
    point = item.decided_point
    decided = f"({point[0]:.0f}, {point[1]:.0f})" if point else (item.decided_action or "nothing")
    console.print(
        f"  {mark} {shown(item.run_id)} step {item.step} ({item.verdict}) · decided {shown(decided)} · "
        f"label ({item.label_point[0]:.0f}, {item.label_point[1]:.0f}) · element {item.element.source} · "
        f"{confidence_markup(item.confidence, pad=0)}",
        soft_wrap=True,
    )


def _print_summary(report: LabelledReport) -> None:
    if not report.total:
        console.print(
            f"no labelled step with a point to decide in {escape(report.runs_dir)}"
            + (f" ({len(report.skipped)} skipped)" if report.skipped else "")
        )
        return
    for tally in report.runs:
        console.print(f"  {shown(tally.run_id)}: landed {tally.landed} of {tally.decided}", soft_wrap=True)
    share = report.landed / report.total
    skipped = f" · {len(report.skipped)} skipped" if report.skipped else ""
    console.print(f"[bold]landed {report.landed} of {report.total}[/] ({share:.0%}) inside the labelled elements{skipped}")
