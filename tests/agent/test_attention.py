"""Attention maps with the tiny random-weight Qwen3-VL: exactness against eager attention, grids, token
alignment, figures, overlays, the viewer's heat layer and `glassbox explain`. The model's outputs are noise;
these tests check mechanics only."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from agent.backends.cache_name import returned_cache
from agent.prompt import build_prompt
from agent.task import load_task
from tests.conftest import TASKS, glassbox_in_process
from tracer.attention import AttentionMaps, figures, heat_png, layer_groups, overlay_png

torch = pytest.importorskip("torch", reason="attention capture needs torch (installed by .ci/setup)")
pytest.importorskip("transformers", reason="attention capture needs transformers (installed by .ci/setup)")


def png(colour=(240, 242, 246), size=(1280, 800)) -> bytes:
    buf = io.BytesIO()
    image = Image.new("RGB", size, colour)
    image.paste((20, 20, 200), (900, 500, 1100, 600))
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    from agent.backends.local import LocalQwen3VL

    return LocalQwen3VL(str(tiny_model_dir))


def eager_rows(net, inputs, sequences):
    """Reference: a full teacher-forced forward in eager attention with output_attentions."""
    prompt_len = inputs["input_ids"].shape[1]
    full = sequences[:, :-1]
    mm = torch.cat([inputs["mm_token_type_ids"], torch.zeros((1, full.shape[1] - prompt_len), dtype=torch.long)], dim=1)
    net.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            out = net(
                input_ids=full,
                attention_mask=torch.ones_like(full),
                pixel_values=inputs["pixel_values"],
                image_grid_thw=inputs["image_grid_thw"],
                mm_token_type_ids=mm,
                output_attentions=True,
            )
    finally:
        net.set_attn_implementation({"text_config": "sdpa", "vision_config": "sdpa"})
    return out.attentions


@pytest.mark.parametrize("history", [1, 2])
def test_captured_rows_equal_eager_attention(backend, history):
    from agent.backends.attention import capture_after_generate, image_spans

    task = load_task(TASKS / "publish_product.yaml")
    task.policy.history_screenshots = history
    from datetime import datetime, timezone

    from tracer.schema import StepRecord, StepTimings

    past = [
        StepRecord(
            index=0,
            started_at=datetime.now(timezone.utc),
            timings=StepTimings(),
            url=None,
            title=None,
            screenshot="steps/0000/screenshot.png",
            screenshot_size=(1280, 800),
            policy="qwen3vl",
            raw_output="x",
            reasoning="",
            action={"action": "wait"},
            confidence=None,
            outcome="ok",
        )
    ]
    prompt = build_prompt(task, past, png(), past_screenshots={0: png((10, 10, 10), (640, 400))})
    inputs = backend.inputs(prompt)
    with torch.inference_mode():
        out = backend.net.generate(**inputs, max_new_tokens=12, do_sample=False, return_dict_in_generate=True)
    captured = capture_after_generate(
        backend.net, inputs, out.sequences, returned_cache(out), image_token_id=backend.image_token_id
    )
    spans = image_spans(inputs["input_ids"][0], backend.image_token_id)
    assert len(spans) == history and spans[-1][1] - spans[-1][0] == 1000
    assert captured.grid == (25, 40) and captured.rows.shape == (4, out.sequences.shape[1] - inputs["input_ids"].shape[1], 1000)
    reference = eager_rows(backend.net, inputs, out.sequences)
    start, end = spans[-1]  # only the current screenshot
    prompt_len = inputs["input_ids"].shape[1]
    for layer, rows in enumerate(captured.rows):
        expected = reference[layer][0][:, prompt_len - 1 :, start:end].float().mean(0)
        assert torch.allclose(rows, expected, atol=1e-5), float((rows - expected).abs().max())


def test_fast_path_capture_over_the_static_cache_equals_eager_attention(backend):
    """The fast path's capture: prompt KV in a static cache, positions given, write position rewound."""
    from agent.backends.attention import capture_after_generate
    from agent.backends.base import Sampling
    from agent.backends.decoding import FastDecoder

    task = load_task(TASKS / "publish_product.yaml")
    decoder = FastDecoder(backend.net, compile=False, settings_key="test")
    sampling = Sampling(temperature=0, top_p=1, top_k=0, presence_penalty=0, max_new_tokens=12)
    for colour in [(240, 242, 246), (30, 90, 30)]:  # the second step reuses the system prompt's KV
        inputs = backend.inputs(build_prompt(task, [], png(colour)))
        result = decoder.generate(inputs, sampling, image_hashes=[str(colour)], eos_ids=set())
        prompt_len = inputs["input_ids"].shape[1]
        sequences = torch.cat([inputs["input_ids"][0], torch.tensor(result.new_ids)])[None, :]
        decoder.prepare_capture(prompt_len - 1)
        captured = capture_after_generate(
            backend.net, inputs, sequences, decoder.cache, image_token_id=backend.image_token_id, position_ids=result.position_ids
        )
        assert captured.rows.shape == (4, 12, 1000)
        reference = eager_rows(backend.net, inputs, sequences)
        start = inputs["input_ids"][0].tolist().index(backend.image_token_id)
        for layer, rows in enumerate(captured.rows):
            expected = reference[layer][0][:, prompt_len - 1 :, start : start + 1000].float().mean(0)
            assert torch.allclose(rows, expected, atol=1e-5), float((rows - expected).abs().max())
    assert result.stats.prefix_reused == start


def test_policy_records_maps_per_target_and_group(backend):
    from datetime import datetime, timezone

    from agent.qwen_policy import QwenPolicy
    from tools.views import Observation

    task = load_task(TASKS / "publish_product.yaml")
    task.policy.max_new_tokens = 16
    obs = Observation(
        screenshot_png=png(),
        screenshot_size=(1280, 800),
        css_size=(1280, 800),
        device_scale_factor=1.0,
        taken_at=datetime.now(timezone.utc),
    )
    output = QwenPolicy(backend, task).decide(task, [], obs)
    maps = output.trace.attention_maps
    assert maps is not None and "output/deep" in maps.maps
    assert {k.split("/")[1] for k in maps.maps} == {"shallow", "middle", "deep", "all"}
    for grid in maps.maps.values():
        assert grid.shape == (25, 40) and grid.dtype == np.float16
        assert abs(float(grid.astype(np.float32).sum()) - 1) < 1e-2
    task.policy.attention = False
    off = QwenPolicy(backend, task).decide(task, [], obs)
    assert off.trace.attention_maps is None and "off" in off.trace.unavailable["attention"]


def test_token_alignment_picks_the_coordinate_tokens(backend):
    from agent.confidence import target_tokens, word_tokens

    text = (
        'The Publish button.\n</think>\n\n<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", '
        '"coordinate": [183, 524]}}\n</tool_call>'
    )
    ids = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    decoded, tokens = backend._spans(ids, [0.0] * len(ids))
    assert decoded == text
    targets = target_tokens(decoded, tokens)
    action_text = "".join(tokens[i].text for i in targets["action"])
    assert "left_click" in action_text.replace('"', "") and "183" in action_text and "524" in action_text
    assert all(tokens[i].start < text.index("</think>") for i in targets["reasoning"])
    publish = "".join(tokens[i].text for i in word_tokens(decoded, tokens, "Publish"))
    assert "Publish" in publish


def test_figures_are_fractions_and_follow_the_attention():
    grid = np.full((25, 40), 1.0, dtype=np.float32)
    flat = figures(grid, (1280, 800), click_px=(100, 100), evidence_box=(0, 0, 320, 200))
    peaked = grid.copy()
    peaked[3, 3] = 500.0  # cell centre (112, 112) in a 1280x800 screenshot
    sharp = figures(peaked, (1280, 800), click_px=(100, 100), evidence_box=(0, 0, 320, 200))
    for fig in (flat, sharp):
        assert 0 <= fig.concentration <= 1 and 0 <= fig.entropy <= 1 and 0 <= fig.mass_in_evidence <= 1
    assert sharp.peak_px == (112, 112) and sharp.peak_to_click_px < 20
    assert sharp.concentration > flat.concentration and sharp.entropy < flat.entropy
    assert sharp.mass_in_evidence > flat.mass_in_evidence
    assert flat.entropy > 0.99


def test_overlays_render_at_screenshot_size(tmp_path):
    maps = AttentionMaps.from_rows(
        np.random.default_rng(0).random((6, 5, 1000)), grid=(25, 40), resized_size=(1280, 800), targets={"action": [1, 2]}
    )
    assert set(maps.maps) == {"action/shallow", "action/middle", "action/deep", "action/all"}
    maps.save(tmp_path / "a.npz")
    back = AttentionMaps.load(tmp_path / "a.npz")
    assert np.array_equal(back.maps["action/deep"], maps.maps["action/deep"]) and back.resized_size == (1280, 800)
    with Image.open(io.BytesIO(overlay_png(png(), maps.maps["action/deep"]))) as image:
        assert image.size == (1280, 800)
    with Image.open(io.BytesIO(heat_png(maps.maps["action/deep"], (1280, 800)))) as image:
        assert image.size == (1280, 800) and image.mode == "RGBA"
    assert layer_groups(28) == {"shallow": list(range(0, 9)), "middle": list(range(9, 19)), "deep": list(range(19, 28))}


def test_recorded_run_has_maps_the_viewer_serves_and_explain_redraws(backend, tmp_path, chromium):
    import httpx

    from replays.viewer import ViewerServer
    from tracer import read_steps

    model = backend.model
    runs = tmp_path / "runs"
    proc = glassbox_in_process(
        "run",
        str(TASKS / "publish_product.yaml"),
        "--policy",
        "qwen3vl",
        "--model",
        model,
        "--max-steps",
        "1",
        "--max-new-tokens",
        "16",
        "--runs-dir",
        str(runs),
    )
    assert proc.returncode == 1, proc.stderr
    [run_dir] = [p for p in runs.iterdir() if p.is_dir()]
    [step] = read_steps(run_dir)
    keys = {a.key for a in step.attention}
    assert "output/deep" in keys and (run_dir / step.attention[0].path).is_file()
    with ViewerServer(runs) as viewer:
        response = httpx.get(f"{viewer.url}/runs/{run_dir.name}/steps/0/attention.png", params={"key": "output/deep"})
        assert response.status_code == 200
        assert Image.open(io.BytesIO(response.content)).size == (1280, 800)
        assert httpx.get(
            f"{viewer.url}/runs/{run_dir.name}/steps/0/attention.png", params={"key": "../../x/deep"}
        ).status_code in (400, 404, 422)
    for method in ("attention", "gradcam"):
        out = glassbox_in_process(
            "explain",
            run_dir.name,
            "--step",
            "0",
            "--runs-dir",
            str(runs),
            "--method",
            method,
            "--out",
            str(tmp_path / method),
        )
        assert out.returncode == 0, out.stderr
        overlays = list((tmp_path / method).glob("*.png"))
        assert overlays and all(Image.open(p).size == (1280, 800) for p in overlays)
    bad = glassbox_in_process(
        "explain",
        run_dir.name,
        "--step",
        "0",
        "--runs-dir",
        str(runs),
        "--text",
        "no-such-word-here",
    )
    assert bad.returncode == 2 and "not in the step's output" in bad.stderr
