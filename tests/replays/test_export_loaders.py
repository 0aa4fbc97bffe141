"""The exports load in the tools' own dataset loaders: LLaMA-Factory's (``get_dataset_list`` +
``_load_single_dataset``, and the whole ``get_dataset`` tokenisation with the qwen3_vl template and a Qwen3-VL
processor) and ms-swift's (``swift.dataset.load_dataset``, as ``--dataset FILE`` does).

Each loader runs in a child interpreter: this one when it has the tool, else the one named by
GLASSBOX_LLAMAFACTORY_PYTHON / GLASSBOX_SWIFT_PYTHON (a venv of its own: both tools pin other versions of
transformers than Glassbox's). Neither installed: the test skips saying so; the schema tests in
test_label_export.py check the documented layouts field by field either way.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from replays.export import export_feedback
from replays.labels import label_step
from tests.replays.label_runs import SECRET, SECRET_ENV, model_run

LOADERS = Path(__file__).parent / "loaders"


def interpreter(module: str, env_var: str) -> str:
    if importlib.util.find_spec(module) is not None:
        return sys.executable
    named = os.environ.get(env_var, "")
    if named and Path(named).is_file():
        return named
    pytest.skip(
        f"{module} is not installed in this Python and {env_var} names no Python that has it "
        f"(python -m venv V && V/bin/pip install {'llamafactory' if module == 'llamafactory' else 'ms-swift'}; "
        f"{env_var}=V/bin/python)"
    )


def load(python: str, script: str, *args: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the tool's own packages, not ours
    # Caches in the test's folder, not the user's (datasets, ModelScope).
    env |= {"HF_HOME": str(home / "hf"), "MODELSCOPE_CACHE": str(home / "ms"), "HF_HUB_OFFLINE": "1"}
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([python, str(LOADERS / script), *args], capture_output=True, text=True, timeout=600, env=env, cwd=home)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def labelled_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    run_dir, _ = model_run(tmp_path)
    label_step(run_dir, 0, "wrong", at=(412, 300), box=(380, 280, 450, 320))
    label_step(run_dir, 1, "wrong", at=(250, 400))
    label_step(run_dir, 2, "correct")
    return run_dir.parent


@pytest.mark.parametrize("fmt", ["sft", "dpo"])
def test_llamafactory_reads_the_export_through_dataset_info(labelled_runs: Path, tmp_path: Path, fmt: str) -> None:
    python = interpreter("llamafactory", "GLASSBOX_LLAMAFACTORY_PYTHON")
    out = tmp_path / "lf" / f"gb_{fmt}.jsonl"
    summary = export_feedback(labelled_runs, out, fmt)  # type: ignore[arg-type]
    got = load(python, "llamafactory_load.py", str(out.parent), f"gb_{fmt}", fmt, home=tmp_path / "home")
    print(f"LLaMA-Factory read {got['rows']} {fmt} row(s) of {summary.records}")
    assert got["rows"] == summary.records and got["formatting"] == "sharegpt" and got["ranking"] == (fmt == "dpo")
    assert all(s.startswith("You are a helpful assistant.\n\n# Tools") for s in got["system_starts"])
    assert all(roles[-1] == "user" for roles in got["prompt_roles"])
    assert got["response_roles"] == [["assistant"] * (1 if fmt == "sft" else 2)] * summary.records
    # Found in the dataset dir, as LLaMA-Factory resolves relative paths; steps after the first show two screens.
    assert [len(images) for images in got["images"]] == [1, 2] + ([2] if fmt == "sft" else [])
    assert all(Path(p).is_file() and Path(p).parent == out.parent / "images" for images in got["images"] for p in images)
    assert got["responses"][0][0].startswith("<think>\nThe next action is left_click at (412, 300)")


def test_llamafactory_tokenises_the_export_with_a_qwen3_vl_processor(
    labelled_runs: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    python = interpreter("llamafactory", "GLASSBOX_LLAMAFACTORY_PYTHON")
    # The tiny model names Glassbox's image-only processor class; a released Qwen3-VL names Qwen3VLProcessor
    # (with a video processor), which is what LLaMA-Factory loads.
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "processor_config.json").read_text())
    config["processor_class"] = "Qwen3VLProcessor"
    config["video_processor"] = {
        "video_processor_type": "Qwen3VLVideoProcessor",
        "patch_size": 16,
        "merge_size": 2,
        "temporal_patch_size": 2,
    }
    (model / "processor_config.json").write_text(json.dumps(config))
    out = tmp_path / "lf" / "gb_sft.jsonl"
    export_feedback(labelled_runs, out, "sft")
    got = load(python, "llamafactory_load.py", str(out.parent), "gb_sft", "sft", str(model), home=tmp_path / "home")
    print(f"LLaMA-Factory tokenised {got['tokenised_rows']} row(s), the first {got['first_len']} tokens")
    assert got["tokenised_rows"] == 3 and {"input_ids", "labels", "images"} <= set(got["tokenised_columns"])
    assert got["first_text_end"].endswith('"coordinate": [412, 300]}}\n</tool_call><|im_end|>\n')


@pytest.mark.parametrize("fmt", ["sft", "dpo"])
def test_swift_reads_the_export_as_a_dataset_path(labelled_runs: Path, tmp_path: Path, fmt: str) -> None:
    python = interpreter("swift", "GLASSBOX_SWIFT_PYTHON")
    out = tmp_path / "swift" / f"{fmt}.jsonl"
    summary = export_feedback(labelled_runs, out, fmt, flavor="swift")  # type: ignore[arg-type]
    got = load(python, "swift_load.py", str(out), home=tmp_path / "home")
    print(f"ms-swift read {got['rows']} {fmt} row(s) of {summary.records}, columns {got['columns']}")
    assert got["rows"] == summary.records and got["images_exist"]
    assert all(roles[0] == "system" and roles[-2:] == ["user", "assistant"] for roles in got["roles"])
    if fmt == "dpo":
        assert "rejected_response" in got["columns"]
        assert all(isinstance(r, str) and "<tool_call>" in r for r in got["rejected_response"])
        assert '"coordinate": [412, 300]' in got["last"][0]
