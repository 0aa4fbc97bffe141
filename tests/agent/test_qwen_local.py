"""The local transformers backend with a tiny random-weight Qwen3-VL built offline by the project.

The tiny model's outputs are noise: these tests check mechanics (loading, processor shapes, recording,
parsing robustness, confidence, caching), never decisions.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image

from agent.task import load_task
from tests.conftest import ROOT, TASKS, glassbox_in_process
from tracer import RunStatus, read_run, read_steps

pytest.importorskip("torch", reason="the local backend needs torch (installed by .ci/setup)")
pytest.importorskip("transformers", reason="the local backend needs transformers (installed by .ci/setup)")


@pytest.fixture(scope="session")
def tiny_model(tiny_thinking_model_dir: Path) -> Path:
    """The tiny model with the real Qwen3-VL-Thinking chat template (built once per session in conftest)."""
    return tiny_thinking_model_dir


@pytest.fixture(scope="session")
def backend(tiny_model):
    from agent.backends.local import LocalQwen3VL

    return LocalQwen3VL(str(tiny_model))


def png(width=1280, height=800) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (240, 242, 246)).save(buf, "PNG")
    return buf.getvalue()


def observation(data: bytes):
    from tools.views import Observation

    return Observation(
        screenshot_png=data,
        screenshot_size=(1280, 800),
        css_size=(1280, 800),
        device_scale_factor=1.0,
        taken_at=datetime.now(timezone.utc),
    )


def test_loads_through_the_user_code_path_and_detects_thinking(backend):
    assert backend.thinking is True
    assert type(backend.net).__name__ == "Qwen3VLForConditionalGeneration"
    assert sum(p.numel() for p in backend.net.parameters()) < 2_000_000


def test_processor_shapes_for_a_1280x800_screenshot(backend):
    from agent.prompt import build_prompt

    prompt = build_prompt(load_task(TASKS / "publish_product.yaml"), [], png())
    inputs = backend.inputs(prompt)
    assert inputs["image_grid_thw"].tolist() == [[1, 50, 80]]
    assert int((inputs["input_ids"] == backend.image_token_id).sum()) == 1000
    assert "mm_token_type_ids" in inputs and int(inputs["mm_token_type_ids"].sum()) == 1000


def test_policy_output_has_raw_output_parse_result_and_confidence_or_reason(backend):
    from agent.qwen_policy import QwenPolicy

    task = load_task(TASKS / "publish_product.yaml")
    task.policy.max_new_tokens = 24
    task.policy.temperature = 0
    policy = QwenPolicy(backend, task)
    calls = []
    original = backend.generate
    backend.generate = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        first = policy.decide(task, [], observation(png()))
        second = policy.decide(task, [], observation(png()))
        other = policy.decide(task, [], observation(png(1280, 800)[:-1] + b"\x00"))
    finally:
        backend.generate = original
    assert first.trace.raw_output is not None and first.trace.token_counts.output <= 24 and first.trace.token_counts.image == 1000
    assert (first.decision.tool_calls and first.decision.parse_error is None) or first.decision.parse_error
    assert first.decision.confidence is not None or first.decision.confidence_reason
    assert first.trace.prompt[0].role == "system" and first.trace.prompt[1].images == ["current"]
    if first.decision.parse_error is None:  # only valid outputs are cached
        assert second.trace.cache_hit is True and len(calls) == 2 and other.trace.cache_hit is False
    else:
        assert second.trace.cache_hit is False and len(calls) == 3


def test_sampling_is_reproducible_with_a_seed(backend):
    from agent.backends.base import resolve_sampling
    from agent.prompt import build_prompt

    prompt = build_prompt(load_task(TASKS / "publish_product.yaml"), [], png())
    sampling = resolve_sampling({}, thinking=True, max_new_tokens=12, seed=7)
    assert (sampling.temperature, sampling.top_p, sampling.top_k) == (0.6, 0.95, 20)
    a = backend.generate(prompt, sampling, step=3).text
    b = backend.generate(prompt, sampling, step=3).text
    assert a == b


def test_confidence_scores_the_tool_call_tokens_only(backend):
    from agent.backends.base import TokenLogprob
    from agent.confidence import confidence

    text = (
        "click at (1, 2)</think>\n<tool_call>\n"
        '{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [183, 524]}}\n</tool_call>'
    )
    ids = backend.tokenizer(text)["input_ids"]
    spans, previous = [], ""
    for i in range(len(ids)):
        decoded = backend.tokenizer.decode(ids[: i + 1])
        spans.append((len(previous), len(decoded)))
        previous = decoded
    tokens = [TokenLogprob(text=text[s:e], start=s, end=e, logprob=-0.1) for s, e in spans]
    digits = {
        i for i, t in enumerate(tokens) if t.text.strip() in {"1", "8", "3", "5", "2", "4"} and t.start > text.index("</think>")
    }
    for i in digits:
        tokens[i] = tokens[i].model_copy(update={"logprob": -2.0})
    conf = confidence(text, tokens)
    assert set(conf.parts) == {"action_name", "coordinate"}
    assert conf.parts["coordinate"] == pytest.approx(0.135335, abs=1e-5)  # exp(-2)
    assert conf.parts["action_name"] == pytest.approx(0.904837, abs=1e-5)  # exp(-0.1)
    assert 0 < conf.value < conf.parts["action_name"]
    reasoning_only = confidence("at (1, 2)</think> nothing", tokens[:5])
    assert reasoning_only.value is None and "no tool call tokens" in reasoning_only.reason


@pytest.mark.parametrize("decoding", ["plain", "fast"])
def test_run_with_the_tiny_model_reaches_its_step_limit(tiny_model, tmp_path, chromium, decoding):
    runs = tmp_path / "runs"
    task = load_task(TASKS / "publish_product.yaml")
    data = task.model_dump(mode="json")
    proc = glassbox_in_process(
        "run",
        str(TASKS / "publish_product.yaml"),
        "--policy",
        "qwen3vl",
        "--model",
        str(tiny_model),
        "--max-steps",
        "3",
        "--max-errors",
        "10",
        "--max-new-tokens",
        "32",
        "--runs-dir",
        str(runs),
        "--decoding",
        decoding,
        "--no-compile",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # noise does not publish products
    assert "Traceback" not in proc.stderr
    [run_dir] = [p for p in runs.iterdir() if p.is_dir()]
    run = read_run(run_dir)
    assert run.status is RunStatus.failed and run.end_reason == "step limit reached (3 steps)"
    assert run.policy == "qwen3vl" and run.model == str(tiny_model)
    steps = read_steps(run_dir)
    assert len(steps) == 3
    for step in steps:
        assert step.raw_output is not None and step.reasoning is not None
        assert step.action is not None or (step.error and step.error_kind in ("parse", "action"))
        assert step.confidence is not None or step.confidence_reason
        assert step.prompt and step.prompt[1].images == [step.screenshot]
        assert step.token_counts.image == 1000 and step.cache_hit is False
        assert step.decoding.path == decoding and step.decoding.prompt_tokens == step.token_counts.prompt
    if decoding == "fast":  # the prefix cache: a miss on the first step, hit on the next ones
        assert steps[0].decoding.prefix_reused == 0
        assert all(s.decoding.prefix_reused > 2000 for s in steps[1:])  # at least the system prompt and tools
    assert "Xq7-tulip-4821" not in (run_dir / "steps.jsonl").read_text()
    assert data["name"] == run.task_name


def test_missing_weights_say_what_is_missing(tmp_path):
    from agent.backends.local import LocalQwen3VL, ModelUnavailable

    with pytest.raises(ModelUnavailable, match="does not exist"):
        LocalQwen3VL(str(tmp_path / "nope"))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    with pytest.raises(ModelUnavailable, match="missing: weights .*tokenizer.*huggingface-cli download"):
        LocalQwen3VL(str(tmp_path / "half"))
    proc = glassbox_in_process(
        "run",
        str(TASKS / "publish_product.yaml"),
        "--policy",
        "qwen3vl",
        "--model",
        str(tmp_path / "half"),
        "--runs-dir",
        str(tmp_path / "runs"),
    )
    assert proc.returncode == 2 and "is missing: weights" in proc.stderr
    hub = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            str(TASKS / "publish_product.yaml"),
            "--policy",
            "qwen3vl",
            "--model",
            "Qwen/Qwen3-VL-2B-Thinking",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert hub.returncode == 2 and "huggingface-cli download" in hub.stderr
