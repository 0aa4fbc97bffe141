"""The fast local decode path (static KV cache, compiled decode step, prompt prefix reuse) against the plain
path (transformers' ``generate``), with the tiny random-weight Qwen3-VL the project builds offline.

Its outputs are noise; these tests check that the two paths compute the same thing (tokens, log-probs,
attention rows) and that the prefix cache is keyed correctly. No timing here: see bench/gpu_step.py.
"""

from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image
from structlog.testing import capture_logs

from agent.prompt import Message, TextPart, build_prompt
from agent.task import load_task
from tests.conftest import TASKS

torch = pytest.importorskip("torch", reason="the local backend needs torch (installed by .ci/setup)")
pytest.importorskip("transformers", reason="the local backend needs transformers (installed by .ci/setup)")


def png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    image = Image.new("RGB", (1280, 800), colour)
    image.paste((colour[0] // 2, 40, 200), (100, 100, 400, 300))
    image.save(buf, "PNG")
    return buf.getvalue()


def greedy(max_new_tokens: int = 40, presence_penalty: float = 0.0):
    from agent.backends.base import Sampling

    return Sampling(temperature=0, top_p=1, top_k=0, presence_penalty=presence_penalty, max_new_tokens=max_new_tokens)


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return str(tiny_model_dir)


@pytest.fixture(scope="module")
def plain(model_dir):
    from agent.backends.local import LocalQwen3VL

    return LocalQwen3VL(model_dir, decoding="plain")


@pytest.fixture(scope="module")
def fast(model_dir):
    from agent.backends.local import LocalQwen3VL

    return LocalQwen3VL(model_dir, decoding="fast", compile=False)


@pytest.fixture(scope="module")
def task():
    return load_task(TASKS / "publish_product.yaml")


def test_auto_decoding_is_plain_on_cpu_and_fast_when_asked(plain, fast, model_dir):
    from agent.backends.local import LocalQwen3VL

    assert plain.decoding == "plain" and plain.decoder is None
    assert fast.decoding == "fast" and fast.decoder is not None and fast.compile is False
    auto = LocalQwen3VL(model_dir)  # this machine has no CUDA
    assert auto.decoding == "plain" and auto.compile is False
    assert auto.net is plain.net  # loaded once per process
    with pytest.raises(ValueError, match="decoding must be one of auto, fast, plain"):
        LocalQwen3VL(model_dir, decoding="turbo")


def test_fast_path_gives_the_plain_paths_greedy_tokens_logprobs_and_attention(plain, fast, task):
    for step, colour in enumerate([(240, 242, 246), (20, 160, 90), (240, 242, 246)]):
        prompt = build_prompt(task, [], png(colour))
        a = plain.generate(prompt, greedy(), step=step, attention=True)
        b = fast.generate(prompt, greedy(), step=step, attention=True)
        assert b.decoding.path == "fast" and a.decoding.path == "plain"
        assert [t.text for t in a.tokens] == [t.text for t in b.tokens] and a.text == b.text
        assert a.finish_reason == b.finish_reason
        assert max(abs(x.logprob - y.logprob) for x, y in zip(a.tokens, b.tokens, strict=True)) < 1e-4
        assert a.attention.rows.shape == b.attention.rows.shape == (4, len(a.tokens), 1000)
        assert torch.allclose(a.attention.rows, b.attention.rows, atol=1e-5)
        if step:  # the system prompt and tools came from the cache; the new screenshot did not
            assert b.decoding.prefix_reused > 0 and b.decoding.prefilled >= 1000


def test_prefix_cache_is_hit_on_the_next_step_and_missed_when_the_system_prompt_changes(fast, plain, task):
    first = build_prompt(task, [], png((250, 250, 250)))
    fast.generate(first, greedy(8), step=0)
    second = build_prompt(task, [], png((10, 10, 10)))
    ids = fast.inputs(second)["input_ids"][0].tolist()
    image_start = ids.index(fast.image_token_id)
    hit = fast.generate(second, greedy(8), step=1).decoding
    # Everything before the new screenshot is reused: the system prompt, the tools, the chat header.
    assert hit.prefix_reused == image_start and hit.prefilled == len(ids) - image_start
    assert hit.images_encoded == 1 and hit.images_reused == 0
    changed = second.model_copy(deep=True)
    changed.messages[0] = Message(role="system", content=[TextPart(text="You are careful. " + second.messages[0].text())])
    out = fast.generate(changed, greedy(8), step=2)
    miss = out.decoding
    assert miss.prefix_reused == 0 and miss.prefilled == miss.prompt_tokens
    assert out.text == plain.generate(changed, greedy(8), step=2).text  # stale cache entries never leak in
    again = fast.generate(changed, greedy(8), step=3).decoding  # same prompt again: all but the last token
    assert again.prefix_reused == again.prompt_tokens - 1
    assert again.images_encoded == 0 and again.images_reused == 1  # an unchanged screen skips the vision encoder


def test_prefix_cache_key_includes_the_images_and_the_settings(fast, model_dir, task):
    from agent.backends.local import LocalQwen3VL

    prompt = build_prompt(task, [], png((1, 2, 3)))
    fast.generate(prompt, greedy(4), step=0)
    # Same tokens, different pixels: image tokens all share one id, so the bytes must be part of the key.
    other = build_prompt(task, [], png((200, 2, 3)))
    ids = fast.inputs(other)["input_ids"][0].tolist()
    assert fast.inputs(prompt)["input_ids"][0].tolist() == ids
    assert fast.generate(other, greedy(4), step=1).decoding.prefix_reused == ids.index(fast.image_token_id)
    # Another backend on the same loaded model with other pixel settings shares the cache but not its key.
    small = LocalQwen3VL(model_dir, decoding="fast", compile=False, max_pixels=640 * 400)
    assert small.decoder is fast.decoder
    assert small.generate(other, greedy(4), step=2).decoding.prefix_reused == 0
    assert fast.generate(other, greedy(4), step=3).decoding.prefix_reused == 0


def test_presence_penalty_is_applied_the_same_way_on_both_paths(plain, fast, task):
    prompt = build_prompt(task, [], png((90, 90, 200)))
    free = plain.generate(prompt, greedy(48), step=0)
    a = plain.generate(prompt, greedy(48, presence_penalty=8.0), step=0)
    b = fast.generate(prompt, greedy(48, presence_penalty=8.0), step=0)
    assert a.text == b.text
    free_ids = [t.text for t in free.tokens]
    assert len(set(free_ids)) < len(free_ids), "the tiny model repeats tokens when nothing stops it"
    penalised = [t.text for t in a.tokens if t.text]
    assert a.text != free.text and len(set(penalised)) > len(set(t for t in free_ids if t))


def test_sampling_on_the_fast_path_is_reproducible_with_a_seed(fast, task):
    from agent.backends.base import Sampling

    prompt = build_prompt(task, [], png((30, 30, 30)))
    sampling = Sampling(temperature=0.9, top_p=0.95, top_k=50, presence_penalty=0.0, max_new_tokens=24, seed=11)
    a = fast.generate(prompt, sampling, step=4).text
    b = fast.generate(prompt, sampling, step=4).text
    c = fast.generate(prompt, sampling, step=5).text
    assert a == b and a != c


def test_the_static_cache_grows_when_a_step_needs_more(plain, model_dir, task):
    from datetime import datetime, timezone

    from agent.backends.local import LocalQwen3VL
    from tracer.schema import StepRecord, StepTimings

    backend = LocalQwen3VL(model_dir, decoding="fast", compile=False)
    first = backend.generate(build_prompt(task, [], png((5, 5, 5))), greedy(4), step=0).decoding
    # Four screenshots in the prompt (history_screenshots: 4) no longer fit the first size.
    settings = task.policy.model_copy(update={"history_screenshots": 4})
    past = [
        StepRecord(
            index=i,
            started_at=datetime.now(timezone.utc),
            timings=StepTimings(),
            url=None,
            title=None,
            screenshot=f"steps/{i:04d}/screenshot.png",
            screenshot_size=(1280, 800),
            policy="qwen3vl",
            raw_output="x",
            reasoning="",
            action={"action": "wait"},
            confidence=None,
            outcome="ok",
        )
        for i in range(3)
    ]
    prompt = build_prompt(
        task, past, png((5, 5, 5)), settings=settings, past_screenshots={i: png((9 + i, 9, 9)) for i in range(3)}
    )
    assert backend.inputs(prompt)["input_ids"].shape[1] > first.cache_tokens
    with capture_logs() as said:
        out = backend.generate(prompt, greedy(8), step=1)
    assert out.decoding.cache_tokens > first.cache_tokens and out.decoding.cache_tokens % 2048 == 0
    [grows] = [e for e in said if e["event"] == "static KV cache grows"]
    assert grows["log_level"] == "info"  # the terminal shows it
    assert (grows["from_tokens"], grows["cache_tokens"]) == (first.cache_tokens, out.decoding.cache_tokens)
    assert out.text == plain.generate(prompt, greedy(8), step=1).text


def _cannot_compile_on_cpu() -> str | None:
    """Why inductor cannot build CPU kernels here (it needs a C++ compiler and the Python headers), or None."""
    import sysconfig
    from pathlib import Path

    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "torch.compile on CPU needs a C++ compiler (g++; .ci/setup installs it)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "torch.compile on CPU needs the Python headers (Python.h; e.g. the python3-dev package)"
    return None


@pytest.mark.skipif(_cannot_compile_on_cpu() is not None, reason=str(_cannot_compile_on_cpu()))
def test_compiled_decode_step_gives_the_same_tokens_and_compiles_once_per_process(plain, model_dir, task):
    from agent.backends.local import LocalQwen3VL

    first = LocalQwen3VL(model_dir, decoding="fast", compile=True)
    prompt = build_prompt(task, [], png((240, 242, 246)))
    a = plain.generate(prompt, greedy(), step=0, attention=True)
    with capture_logs() as said:
        b = first.generate(prompt, greedy(), step=0, attention=True)  # the first step compiles, and says so
    events = [e["event"] for e in said if e["log_level"] == "info"]
    assert events[:2] == ["warming up: compiling the decode step", "warm-up done"]
    assert said[0]["cache_tokens"] == b.decoding.cache_tokens and said[0]["compiler"] == "inductor, CPU"
    assert b.decoding.compiled and b.decoding.compile_ms > 0  # the first step reports the warm-up's cost
    assert a.text == b.text and torch.allclose(a.attention.rows, b.attention.rows, atol=1e-5)
    with capture_logs() as said:
        second = LocalQwen3VL(model_dir, decoding="fast", compile=True)  # e.g. the next run
        c = second.generate(build_prompt(task, [], png((20, 160, 90))), greedy(), step=0)
    assert second.decoder is first.decoder and not any("compiling" in e["event"] for e in said)
    assert [e["path"] for e in said if e["event"] == "decoded"] == ["fast"]
    assert c.decoding.compile_ms is None and c.decoding.prefix_reused > 0


def test_the_static_cache_is_allocated_before_the_decode_step_and_keeps_its_addresses(fast, task):
    # CUDA graphs replay against fixed addresses: a cache allocated lazily inside the first (captured) decode
    # step would live in the graph's pool and be overwritten by the next replay. Allocate it up front, once.
    decoder = fast.decoder
    decoder.cache = None
    decoder._ensure_cache(100)
    layers = decoder.cache.layers
    assert layers and all(layer.is_initialized for layer in layers)
    assert layers[0].keys.dtype == fast.net.get_input_embeddings().weight.dtype
    addresses = [(layer.keys.data_ptr(), layer.values.data_ptr(), layer.cumulative_length.data_ptr()) for layer in layers]
    for colour in ((1, 2, 3), (200, 100, 50)):
        fast.generate(build_prompt(task, [], png(colour)), greedy(6), step=0)
    assert [
        (layer.keys.data_ptr(), layer.values.data_ptr(), layer.cumulative_length.data_ptr()) for layer in decoder.cache.layers
    ] == addresses


def test_an_eos_read_back_late_still_ends_the_step_at_the_eos_and_the_cache_stays_reusable(fast, task):
    # Tokens are read back in chunks (EOS_CHECK_EVERY): an EOS inside a chunk must cut the output exactly there.
    decoder = fast.decoder
    inputs = fast.inputs(build_prompt(task, [], png((30, 60, 90))))
    full = decoder.generate(inputs, greedy(40), image_hashes=["a"], eos_ids=set())
    eos = full.new_ids[21]  # inside the second chunk of 16
    first = full.new_ids.index(eos)
    cut = decoder.generate(inputs, greedy(40), image_hashes=["a"], eos_ids={eos})
    assert cut.finish_reason == "stop" and cut.new_ids == full.new_ids[:first]
    assert cut.logprobs == pytest.approx(full.logprobs[:first], abs=1e-5)
    again = decoder.generate(inputs, greedy(40), image_hashes=["a"], eos_ids=set())
    assert again.new_ids == full.new_ids and again.stats.prefix_reused > 0


def test_the_kv_cache_is_passed_by_the_installed_transformers_name_with_no_deprecation_warning(plain, fast, task):
    import inspect
    import warnings

    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

    from agent.backends.cache_name import cache_argument

    # transformers renamed past_key_values to cache (the old name goes in 5.40): both paths and the capture use
    # the name the installed release takes, so they keep working after the old one is removed.
    assert cache_argument() in inspect.signature(Qwen3VLModel.forward).parameters
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step, backend in enumerate((plain, fast)):
            backend.generate(build_prompt(task, [], png((240, 242, 246))), greedy(8), step=step, attention=True)
    assert not [str(w.message) for w in caught if "past_key_values" in str(w.message)]
