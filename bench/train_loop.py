"""The fine-tuning loop (``glassbox train``): samples per second and peak memory, and what attention guidance does.

Default (CPU, the tiny model): records a three-step tiny-model run on the bundled shop (real Chromium;
screenshots resized to about 640x400 by the task's ``policy.max_pixels``), labels each step wrong with a
correction, then trains LoRA SFT on it twice, the same data, steps and seed: without and with
``--attention-guidance``. Printed: samples/s, peak memory, final loss, and the attention mass of the action
tokens inside the labelled boxes before and after each run (higher with guidance is the point of it).

``--shape 2b`` (a GPU, later): the same run and loop on a random-weight model with Qwen3-VL-2B's shape (built
like bench/gpu_step.py builds it, with the tiny model's tokenizer), bf16 on CUDA: samples/s and peak GPU memory.

``--full``: also a full fine-tune (no LoRA; on CUDA bf16 weights stepped through fp32 masters), its peak memory
against the parameters it trained. A GPU machine with no Chromium: ``--prepare DIR`` records the labelled run and
builds the tiny model here, ``--from DIR`` trains on them there.

    .venv/bin/python bench/train_loop.py                      # CPU, tiny model
    .venv/bin/python bench/train_loop.py --shape 2b --steps 30  # on a GPU machine
    .venv/bin/python bench/train_loop.py --prepare gpu/train  # here; then, there:
    python3 bench/train_loop.py --from gpu/train --shape 2b --full
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.prompt import build_prompt  # noqa: E402
from agent.task import load_task  # noqa: E402
from agent.tiny_model import build_tiny_model  # noqa: E402
from replays.labels import Correction, LabelIn, Labels  # noqa: E402
from replays.training.loop import TrainConfig, TrainSummary, train  # noqa: E402

CORRECTIONS = [(150.0, 200.0), (700.0, 420.0), (480.0, 850.0)]
MAX_PIXELS = 262144  # screenshots resized to about 640x400 (256 image tokens), as the task's policy.max_pixels


def task_copy(root: Path, max_pixels: int | None) -> Path:
    """tasks/publish_product.yaml, with ``policy.max_pixels`` when given (its file fixture copied beside it)."""
    data = yaml.safe_load((ROOT / "tasks" / "publish_product.yaml").read_text(encoding="utf-8"))
    if max_pixels is not None:
        data["policy"] = {"max_pixels": max_pixels}
    (root / "fixtures").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "tasks" / "fixtures" / "desk_lamp.png", root / "fixtures" / "desk_lamp.png")
    (root / "task.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return root / "task.yaml"


def tiny_model(root: Path, task_file: Path) -> Path:
    """The tiny model, its tokenizer also trained on the task's prompt (about as many tokens as Qwen's)."""
    corpus = [m.text() for m in build_prompt(load_task(task_file), [], b"").messages]
    return build_tiny_model(root / "tiny", vocab_size=4096, corpus=corpus)


def record_labelled_run(root: Path, task_file: Path, model: Path) -> Path:
    """Three steps of the tiny model on the shop (real Chromium), each labelled wrong with a correction."""
    runs = root / "runs"
    command = [sys.executable, "-m", "cli", "run", str(task_file), "--policy", "qwen3vl", "--model", str(model)]
    command += ["--max-steps", "3", "--max-new-tokens", "16", "--runs-dir", str(runs)]
    subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    [run_dir] = [p for p in runs.iterdir() if p.is_dir()]
    labels = Labels(runs)
    for index, point in enumerate(CORRECTIONS):
        labels.add(run_dir.name, index, LabelIn(verdict="wrong", correction=Correction(action="left_click", coordinate=point)))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["tiny", "2b"], default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="default: 60 tiny, 30 2b")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--guidance", type=float, default=5.0, help="W of the guided run")
    parser.add_argument("--full", action="store_true", help="also a full fine-tune: peak memory per trained parameter")
    parser.add_argument("--prepare", type=Path, default=None, help="record the labelled run and tiny model into DIR; stop")
    parser.add_argument("--from", dest="source", type=Path, default=None, help="train on what --prepare DIR recorded")
    args = parser.parse_args()
    steps = args.steps or (60 if args.shape == "tiny" else 30)
    with tempfile.TemporaryDirectory(prefix="glassbox-train-bench-") as tmp:
        root = Path(tmp)
        if args.source is not None:
            runs, model = args.source / "runs", args.source / "tiny"
        else:
            prepared = args.prepare or root
            task_file = task_copy(prepared, MAX_PIXELS if args.shape == "tiny" else None)
            model = tiny_model(prepared, task_file)
            runs = record_labelled_run(prepared, task_file, model)
            if args.prepare is not None:
                print(f"prepared in {args.prepare}: {runs} (3 labelled steps), the tiny model {model}")
                return
        if args.shape == "2b":
            model = build_2b(root, model)
        print(f"shape {args.shape}: 3 labelled steps, LoRA rank {args.rank}, {steps} steps, lr {args.lr}")
        results = {}
        for name, weight in (("plain", 0.0), ("guided", args.guidance)):
            config = TrainConfig(
                mode="sft",
                runs_dir=runs,
                model=str(model),
                out=root / f"out-{name}",
                lora=True,
                steps=steps,
                lr=args.lr,
                lora_rank=args.rank,
                attention_guidance=weight,
            )
            summary = train(config)
            results[name] = summary
            report(name, weight, summary)
        plain, guided = results["plain"].box_mass_after, results["guided"].box_mass_after
        print(f"attention mass inside the labelled boxes after training: {plain:.4f} without guidance, {guided:.4f} with")
        if args.full:
            # The default full fine-tune lr; fewer steps: the point is memory and that the weights move.
            summary = train(TrainConfig(mode="sft", runs_dir=runs, model=str(model), out=root / "out-full", steps=min(steps, 10)))
            report("full", 0.0, summary)
            trained = summary.trained_parameters
            print(
                f"  full fine-tune: {trained / 1e9:.3f} B trained parameters, precision {summary.precision}; "
                f"peak {summary.peak_memory_mb * 2**20 / trained:.1f} bytes per trained parameter"
            )


def report(name: str, weight: float, summary: TrainSummary) -> None:
    print(
        f"{name:>6} (W={weight:g}): {summary.samples_per_s:.2f} samples/s on {summary.device}, "
        f"peak memory {summary.peak_memory_mb:.0f} MiB ({summary.peak_memory_kind}), "
        f"CPU {summary.cpu_seconds:.1f} s, final loss {summary.final_loss:.4f}, "
        f"box mass {summary.box_mass_before:.4f} -> {summary.box_mass_after:.4f}"
    )


def build_2b(root: Path, tiny: Path) -> Path:
    """A random-weight Qwen3-VL-2B-shaped model saved with the tiny model's processor (bench/gpu_step.py's build)."""
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_step import build_model

    from agent.backends.local import _load_processor

    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = build_model("2b", tiny, device, torch.bfloat16 if device == "cuda" else torch.float32)
    out = root / "shape-2b"
    net.save_pretrained(out)
    _load_processor(str(tiny)).save_pretrained(out)
    return out


if __name__ == "__main__":
    main()
