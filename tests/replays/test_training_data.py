"""`glassbox train` without a model: the answer text, the labelled box, the image cells, adapter folders, usage errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.backends.attention_loss import box_cells
from agent.backends.local import ModelUnavailable, _check_available, adapter_base
from replays.labels import label_step
from replays.training.data import DEFAULT_BOX_HALF, _box, target_point
from replays.training.loop import _lr_at, _schedule, answer_text
from tests.conftest import glassbox_in_process
from tests.replays.label_runs import SECRET, SECRET_ENV, script_run

CALL = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [412, 300]}}\n</tool_call>'


def test_a_thinking_model_answers_after_the_think_block_its_prompt_opened() -> None:
    # The generation prompt ends with "<think>\n": an answer without reasoning closes the block at once.
    assert answer_text(CALL, thinking=True) == "</think>\n\n" + CALL
    kept = "<think>\nThe Publish button is at the bottom.\n</think>\n\n" + CALL
    assert answer_text(kept, thinking=True) == "The Publish button is at the bottom.\n</think>\n\n" + CALL
    assert answer_text(kept, thinking=False) == CALL  # an Instruct model is trained without reasoning


def test_target_point_reads_the_answer_with_the_one_parser() -> None:
    assert target_point(CALL) == (412.0, 300.0)
    assert target_point("<think>\nhm\n</think>\n\n" + CALL) == (412.0, 300.0)
    typed = CALL.replace('"left_click", "coordinate": [412, 300]', '"type", "text": "x"')
    assert target_point(typed) is None
    assert target_point("no call at all") is None


def test_the_box_comes_from_the_record_then_the_correction_then_a_square_around_the_point() -> None:
    label = SimpleNamespace(correction=SimpleNamespace(box=(100, 200, 300, 260)))
    assert _box({"box": [500, 520, 400, 480]}, label, CALL) == (400, 480, 500, 520)  # the export's, corners ordered
    assert _box({}, label, CALL) == (100, 200, 300, 260)  # the correction's box (labelexport adds it)
    no_box = SimpleNamespace(correction=SimpleNamespace(coordinate=(412, 300)))
    h = DEFAULT_BOX_HALF
    assert _box({}, no_box, CALL) == (412 - h, 300 - h, 412 + h, 300 + h)
    edge = CALL.replace("[412, 300]", "[10, 995]")
    assert _box({}, None, edge) == (0, 995 - h, 10 + h, 1000)  # clipped to the grid
    assert _box({}, None, "no call") is None


def test_box_cells_are_the_grid_cells_whose_centre_is_inside() -> None:
    # A 4 x 10 grid: cell centres at x = 50, 150, ..., 950 and y = 125, 375, 625, 875.
    inside = box_cells((4, 10), (100, 100, 300, 400))
    chosen = [i for i, flag in enumerate(inside) if flag]
    assert chosen == [1, 2, 11, 12]  # rows 0-1, columns 1-2
    # Smaller than a cell: the cell holding the box's centre, so guidance always has a target.
    tiny = box_cells((4, 10), (420, 510, 440, 530))
    assert [i for i, flag in enumerate(tiny) if flag] == [2 * 10 + 4]


def test_the_schedule_visits_every_sample_once_per_epoch_and_the_lr_warms_then_decays() -> None:
    order = _schedule(3, 10, seed=0)
    assert len(order) == 10 and sorted(order[:3]) == [0, 1, 2] and sorted(order[3:6]) == [0, 1, 2]
    assert order == _schedule(3, 10, seed=0)
    rates = [_lr_at(step, 100, 1.0) for step in range(1, 101)]
    assert rates[4] == 1.0 and rates[0] == 0.2  # five warm-up steps
    assert rates[-1] == pytest.approx(0.1) and rates == sorted(rates[:5]) + sorted(rates[5:], reverse=True)


def test_an_adapter_folder_names_its_base_model(tmp_path: Path) -> None:
    assert adapter_base(str(tmp_path)) is None  # no adapter_config.json: a model folder, or nothing
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/models/base"}))
    assert adapter_base(str(tmp_path)) == "/models/base"
    with pytest.raises(ModelUnavailable, match="no adapter weights"):
        _check_available(str(tmp_path))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    _check_available(str(tmp_path))  # the adapter folder itself is complete; its base is checked on load
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ModelUnavailable, match="names no base model"):
        adapter_base(str(tmp_path))


def test_train_says_where_the_data_comes_from_and_what_is_missing(tmp_path: Path) -> None:
    args = ["--model", str(tmp_path / "model"), "--out", str(tmp_path / "out")]
    no_source = glassbox_in_process("train", "sft", *args)
    assert no_source.returncode == 2 and "--from-labels" in no_source.stderr, no_source.stderr
    runs = tmp_path / "runs"
    runs.mkdir()
    empty = glassbox_in_process("train", "dpo", "--from-labels", "--runs-dir", str(runs), *args)
    assert empty.returncode == 2, empty.stderr
    assert "no dpo samples" in empty.stderr and "DPO needs steps labelled wrong" in empty.stderr, empty.stderr
    assert not (tmp_path / "out").exists()  # nothing to train on: no folder left behind
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    taken = glassbox_in_process("train", "sft", "--from-labels", "--runs-dir", str(runs), *args)
    assert taken.returncode == 2 and "is not empty" in taken.stderr, taken.stderr


def test_train_names_a_missing_runs_folder_and_a_model_that_does_not_load_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    out = tmp_path / "out"
    missing = glassbox_in_process(
        "train", "sft", "--from-labels", "--runs-dir", str(tmp_path / "nowhere"), "--model", "m", "--out", str(out)
    )
    assert missing.returncode == 2 and "no runs folder" in missing.stderr, missing.stderr
    assert not (tmp_path / "nowhere").exists() and not out.exists()  # a typo creates nothing
    run_dir = script_run(tmp_path)
    runs = run_dir.parent
    label_step(run_dir, 0, "wrong", at=(150, 200))
    no_model = glassbox_in_process(
        "train", "sft", "--from-labels", "--runs-dir", str(runs), "--model", str(tmp_path / "no-model"), "--out", str(out)
    )
    assert no_model.returncode == 2 and "does not exist" in no_model.stderr, no_model.stderr
    assert not out.exists()  # the exported data is not left behind as if something had been trained
    import torch

    bad_devices = {"banana": "is not a device torch knows", "cuda:99": "cuda:99"}
    if not torch.cuda.is_available():
        bad_devices["cuda"] = "torch sees no CUDA GPU on this machine"
    for device, message in bad_devices.items():
        done = glassbox_in_process(
            "train", "sft", "--from-labels", "--runs-dir", str(runs), "--model", "m", "--out", str(out), "--device", device
        )
        assert done.returncode == 2 and message in " ".join(done.stderr.split()), (device, done.stderr)
        assert "Traceback" not in done.stderr and not out.exists()
