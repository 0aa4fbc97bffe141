"""``glassbox train sft|dpo --from-labels``: fine-tune a local Qwen3-VL on the labels of a runs folder.

Exit codes: 0 trained (the model or adapter is in --out), 2 usage errors (no labels, a missing model, an output
folder that is not empty, bad flags).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cli.output import console, err_console, is_tty, usage_error, write_json


class TrainMode(str, Enum):
    sft = "sft"
    dpo = "dpo"


def train_command(
    mode: Annotated[TrainMode, typer.Argument(help="sft: learn the labelled answers; dpo: prefer them to the model's.")],
    model: Annotated[str, typer.Option(help="The base model: a local Qwen3-VL folder (or hub id in the local cache).")],
    out: Annotated[Path, typer.Option(help="New folder for the fine-tuned model or LoRA adapter, its log and summary.")],
    from_labels: Annotated[
        bool, typer.Option("--from-labels", help="Train on the labels of --runs-dir (exported as `glassbox export feedback`).")
    ] = False,
    runs_dir: Annotated[Path, typer.Option(help="The runs folder whose labels are the data.")] = Path("runs"),
    lora: Annotated[bool, typer.Option("--lora", help="Train LoRA adapters on the language model (default: full).")] = False,
    steps: Annotated[int, typer.Option(min=1, max=1_000_000, help="Optimiser steps (one sample each).")] = 200,
    lr: Annotated[Optional[float], typer.Option(min=0, help="Peak learning rate (default 2e-4 with --lora, 1e-5 full).")] = None,
    lora_rank: Annotated[int, typer.Option(min=1, max=1024, help="LoRA rank (alpha is twice the rank).")] = 16,
    attention_guidance: Annotated[
        float,
        typer.Option(min=0, help="W: add W x (1 - attention mass of the action tokens inside the labelled box)."),
    ] = 0.0,
    beta: Annotated[float, typer.Option(min=0, help="DPO: how far from the reference the model may move.")] = 0.1,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed for the sample order and the adapters.")] = 0,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda when present).")] = None,
    prompt_grad: Annotated[
        bool,
        typer.Option(
            "--prompt-grad", help="Backpropagate into the prompt's keys and values too (exact gradient, ~2-3x a step's cost)."
        ),
    ] = False,
    think: Annotated[
        Optional[bool],
        typer.Option(
            "--think/--no-think",
            help="Targets with the reasoning (<think>) or only the tool call (default: as `export feedback` decides).",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the train summary as one JSON document.")] = False,
) -> None:
    """Fine-tune a local Qwen3-VL on labelled steps, with the prompt, processor and chat template of inference.

    Writes OUT/train_log.jsonl (step, loss, lr, seconds), OUT/train_summary.json, and the model: with --lora an
    adapter that `--model OUT` loads everywhere (it names its base model), otherwise a whole model folder.
    """
    if not from_labels:
        raise usage_error("say where the data comes from: --from-labels (the labels of --runs-dir)")
    if lr is not None and lr <= 0:
        raise usage_error("--lr must be above 0")
    if beta <= 0:
        raise usage_error("--beta must be above 0")
    try:
        from replays.training.loop import StepLog, TrainConfig, train
    except ImportError as exc:  # torch / transformers / peft missing
        raise usage_error(f"training needs the train extra ({exc}); install it with `pip install -e '.[train]'`") from None

    config = TrainConfig(
        mode=mode.value,
        runs_dir=runs_dir,
        model=model,
        out=out,
        lora=lora,
        steps=steps,
        lr=lr,
        lora_rank=lora_rank,
        attention_guidance=attention_guidance,
        beta=beta,
        seed=seed,
        device=device,
        prompt_grad=prompt_grad,
        think_targets=think,
    )
    progress = Progress(
        TextColumn(f"[bold]{mode.value}{' LoRA' if lora else ''}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not is_tty(err_console) or json_out,
    )
    with progress:
        bar = progress.add_task("train", total=steps, loss="-")

        def on_step(entry: StepLog) -> None:
            progress.update(bar, completed=entry.step, loss=f"{entry.loss:.4f}")

        summary = train(config, on_step=on_step)
    if json_out:
        write_json(console, summary)
        return
    what = "LoRA adapter" if lora else "model"
    console.print(f"trained {summary.samples} sample(s) for {summary.steps} steps in {summary.seconds:.1f} s on {summary.device}")
    console.print(
        f"  final loss {summary.final_loss:.4f}, {summary.samples_per_s:.2f} samples/s, "
        f"peak memory {summary.peak_memory_mb:.0f} MiB ({summary.peak_memory_kind})"
    )
    console.print(f"  {summary.precision}; {summary.trained_parameters:,} parameters trained")
    if summary.box_mass_before is not None and summary.box_mass_after is not None:
        before, after = summary.box_mass_before, summary.box_mass_after
        console.print(f"  attention mass inside the labelled boxes: {before:.4f} before, {after:.4f} after")
    console.print(f"{what} written to [bold]{escape(str(out))}[/]: use it with --model {escape(str(out))}")
