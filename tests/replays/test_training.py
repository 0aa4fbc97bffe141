"""`glassbox train` end to end on the tiny model (CPU): record, label three wrong steps, train LoRA, ask again.

What this shows: the pipeline works -- labels become training data through the one exporter, the model is
trained on the prompt inference sends, the adapter loads with ``--model OUT`` into the agent's own policy
class, and the fine-tuned model then answers the recorded screens at the corrected points. It shows this on a
random-weight model that memorises three answers. It does not show that a model learns to use a GUI.

The tiny model here has its tokenizer also trained on the task's prompt (4096 tokens: the prompt takes about
as many tokens as with Qwen's tokenizer, not ~3x more) and the task resizes screenshots to about 640x400
(``policy.max_pixels``), so one training step is one forward over ~1,700 tokens.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import TASKS, glassbox_in_process, require_chromium

pytestmark = [pytest.mark.model, pytest.mark.browser, pytest.mark.slow]

CORRECTIONS = [(150.0, 200.0), (700.0, 420.0), (480.0, 850.0)]  # the 0..1000 grid
TOLERANCE = 30  # grid units: each label's element box reaches this far around its correction
MAX_PIXELS = 262144
STEPS, LR, RANK = "240", "1e-2", "16"
GUIDANCE_STEPS = "30"  # the guidance comparison: two shorter runs, the same data, steps and seed


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """(runs dir, run id, tiny model): a three-step tiny-model run on the shop, every step labelled wrong."""
    pytest.importorskip("peft", reason="training needs peft (the train extra, installed by .ci/setup)")
    require_chromium()
    from agent.prompt import build_prompt
    from agent.task import load_task
    from agent.tiny_model import build_tiny_model
    from replays.labels import Correction, LabelIn, Labels

    root = tmp_path_factory.mktemp("train")
    data = yaml.safe_load((TASKS / "publish_product.yaml").read_text(encoding="utf-8"))
    data["policy"] = {"max_pixels": MAX_PIXELS, "temperature": 0, "max_new_tokens": 80}
    (root / "fixtures").mkdir()
    shutil.copyfile(TASKS / "fixtures" / "desk_lamp.png", root / "fixtures" / "desk_lamp.png")
    task_file = root / "task.yaml"
    task_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    corpus = [m.text() for m in build_prompt(load_task(task_file), [], b"").messages]
    model = build_tiny_model(root / "tiny", vocab_size=4096, corpus=corpus)
    runs = root / "runs"
    args = ["--policy", "qwen3vl", "--model", str(model), "--max-steps", "3", "--max-errors", "3"]
    proc = glassbox_in_process("run", str(task_file), *args, "--runs-dir", str(runs))
    assert proc.returncode == 1, proc.stderr  # the noise model does not finish the task
    [run_dir] = [p for p in runs.iterdir() if p.is_dir()]
    labels = Labels(runs)
    for index, point in enumerate(CORRECTIONS):
        box = (point[0] - TOLERANCE, point[1] - TOLERANCE, point[0] + TOLERANCE, point[1] + TOLERANCE)
        correction = Correction(action="left_click", coordinate=point, box=box)
        labels.add(run_dir.name, index, LabelIn(verdict="wrong", correction=correction))
    return runs, run_dir.name, model


def _train(runs: Path, model: Path, out: Path, *extra: str, steps: str = STEPS) -> dict[str, object]:
    args = ["train", "sft", "--from-labels", "--runs-dir", str(runs), "--model", str(model), "--out", str(out)]
    proc = glassbox_in_process(*args, "--lora", "--steps", steps, "--lr", LR, "--lora-rank", RANK, "--no-think", "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def trained(labelled: tuple[Path, str, Path]) -> tuple[Path, dict[str, object]]:
    runs, _, model = labelled
    out = runs.parent / "adapter"
    return out, _train(runs, model, out)


def _decide_labelled(runs: Path, model: Path) -> dict[str, object]:
    """`glassbox decide --labelled`: the model asked at each labelled step, with the step's recorded prompt and
    screenshot, through the agent's own policy class; whether each click lands inside the labelled box."""
    proc = glassbox_in_process("decide", "--labelled", "--runs-dir", str(runs), "--model", str(model), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_lora_adapter_lands_where_the_labels_said_and_the_base_model_did_not(
    labelled: tuple[Path, str, Path], trained: tuple[Path, dict[str, object]]
) -> None:
    runs, _, model = labelled
    out, summary = trained
    before = _decide_labelled(runs, model)
    after = _decide_labelled(runs, out)
    print(f"base model: {before['landed']} of {before['total']} landed; fine-tuned: {after['landed']} of {after['total']}")
    print(f"fine-tuned decisions: {[d['decided_point'] for d in after['decisions']]}; corrections: {CORRECTIONS}")  # type: ignore[index]
    print(f"trained {summary['steps']} steps in {summary['seconds']} s ({summary['cpu_seconds']} CPU s)")
    assert before["total"] == after["total"] == 3
    assert all(d["element"]["source"] == "correction_box" for d in after["decisions"])  # type: ignore[index, union-attr]
    assert before["landed"] == 0
    assert after["landed"] >= 2, after


def test_the_log_the_summary_and_the_adapter_say_what_was_trained(
    labelled: tuple[Path, str, Path], trained: tuple[Path, dict[str, object]]
) -> None:
    _, _, model = labelled
    out, summary = trained
    lines = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, int(STEPS) + 1))
    assert all(set(line) >= {"step", "loss", "lr", "seconds"} for line in lines)
    assert lines[-1]["loss"] < lines[0]["loss"]
    assert summary["samples"] == 3 and summary["steps"] == int(STEPS) and summary["lora"] is True
    assert summary["base_model"] == str(model.resolve()) and summary["final_loss"] == lines[-1]["loss"]
    assert len(str(summary["data_hash"])) == 64 and float(summary["peak_memory_mb"]) > 0  # type: ignore[arg-type]
    assert json.loads((out / "train_summary.json").read_text()) == summary
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(model.resolve())  # absolute: loads from any folder
    assert (out / "adapter_model.safetensors").is_file() and (out / "processor_config.json").is_file()


def test_attention_guidance_raises_the_attention_mass_inside_the_labelled_boxes(labelled: tuple[Path, str, Path]) -> None:
    runs, _, model = labelled
    plain = _train(runs, model, runs.parent / "plain", steps=GUIDANCE_STEPS)
    guided = _train(runs, model, runs.parent / "guided", "--attention-guidance", "5", steps=GUIDANCE_STEPS)
    print(
        f"attention mass of the action tokens inside the labelled boxes: before training {plain['box_mass_before']}; "
        f"after {GUIDANCE_STEPS} steps without guidance {plain['box_mass_after']}, with guidance {guided['box_mass_after']}"
    )
    assert guided["data_hash"] == plain["data_hash"] and guided["box_mass_before"] == plain["box_mass_before"]
    assert float(guided["box_mass_after"]) > float(plain["box_mass_after"])  # type: ignore[arg-type]
    log = [json.loads(line) for line in (runs.parent / "guided" / "train_log.jsonl").read_text().splitlines()]
    assert all("box_mass" in line for line in log)  # the guided log says the mass step by step


def test_the_adapter_loads_wherever_a_model_does(
    labelled: tuple[Path, str, Path], trained: tuple[Path, dict[str, object]]
) -> None:
    runs, run_id, _ = labelled
    out, _ = trained
    explained = glassbox_in_process("explain", run_id, "--step", "1", "--model", str(out), "--runs-dir", str(runs))
    assert explained.returncode == 0, explained.stderr
    record = json.loads((runs / run_id / "explain" / "step0001_attention.json").read_text())
    assert record["model"] == str(out) and record["maps"]


def test_dpo_and_a_full_fine_tune_train_from_the_same_labels(labelled: tuple[Path, str, Path]) -> None:
    runs, _, model = labelled
    out = runs.parent / "dpo-full"
    args = ["train", "dpo", "--from-labels", "--runs-dir", str(runs), "--model", str(model), "--out", str(out)]
    proc = glassbox_in_process(*args, "--steps", "2", "--lr", "1e-4", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["mode"] == "dpo" and summary["lora"] is False and summary["samples"] == 3
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 2
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()  # a whole model folder
    from agent.backends.local import LocalQwen3VL, unload_models

    unload_models()
    assert LocalQwen3VL(str(out)).net is not None
    unload_models()


def test_a_bf16_model_as_on_cuda_is_stepped_through_fp32_masters_and_saved_in_bf16(
    labelled: tuple[Path, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA the model trains in bf16 (loaded like inference); this CPU test loads it so to run that path."""
    import torch

    from replays.training import loop
    from replays.training.loop import TrainConfig, train

    runs, _, model = labelled
    load = loop.load_for_training

    def load_bf16(name: str, device: str) -> tuple[object, object]:
        net, processor = load(name, device)
        return net.to(torch.bfloat16), processor

    monkeypatch.setattr(loop, "load_for_training", load_bf16)
    out = runs.parent / "full-bf16"
    summary = train(TrainConfig(mode="sft", runs_dir=runs, model=str(model), out=out, steps=2, think_targets=False))
    print(f"precision: {summary.precision}; final loss {summary.final_loss}")
    assert summary.precision.startswith("bfloat16 weights, stepped through fp32 master copies")
    assert summary.final_loss == summary.final_loss  # not NaN
    config = json.loads((out / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"  # saved as loaded, not doubled to fp32

    adapter = runs.parent / "lora-bf16"
    lora = train(TrainConfig(mode="sft", runs_dir=runs, model=str(model), out=adapter, steps=2, lora=True, think_targets=False))
    assert lora.precision == "float32 weights"  # PEFT keeps the adapters in fp32 over a bf16 model: stepped in place
    assert 0 < lora.trained_parameters < summary.trained_parameters  # the adapters, against the whole language model
