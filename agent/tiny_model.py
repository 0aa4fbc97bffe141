"""A tiny random-weight Qwen3-VL, built offline, for tests and benchmarks. Its outputs are noise, not decisions.

It goes through the same code path as a real model: a byte-level BPE tokenizer with Qwen's special tokens
(wrapped in ``Qwen2Tokenizer``) and a Qwen-style chat template, a small ``Qwen3VLConfig``, random weights
with a fixed seed, the image-only processor (no torchvision needed), ``save_pretrained`` into a folder that
``--policy qwen3vl --model FOLDER`` then loads like any downloaded model.

    glassbox dev tiny-model /tmp/tiny-qwen3vl
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from agent.backends.processor import image_only_processor_class

SEED = 0
# (token, special). As in Qwen3, <think>/<tool_call>/... are added but not special, so decoding keeps them.
ADDED_TOKENS = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
]
# Qwen2's pre-tokenizer split (numbers one digit at a time, as in Qwen).
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
CORPUS = [
    "You are a helpful assistant. Use a mouse and keyboard to interact with a computer, and take screenshots.",
    "The user query: sign in, open the product list, create a new product and publish it.",
    "Click the username field, type the name, then click the password field and press enter.",
    "I will click on the Publish button at the bottom of the form. The page shows a success message.",
    "Task progress (You have done the following operation on the current device): Step 1: left_click; Step 2: type.",
    "请点击屏幕上的按钮，然后输入商品名称并发布。无线蓝牙耳机 价格 库存 分类 描述 上传主图",
    '{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [512, 300]}}',
    '{"name": "computer_use", "arguments": {"action": "type", "text": "hello world"}}',
    '{"name": "computer_use", "arguments": {"action": "key", "keys": ["ctrl", "a"]}}',
    '{"name": "computer_use", "arguments": {"action": "scroll", "pixels": -300}}',
    '{"name": "computer_use", "arguments": {"action": "terminate", "status": "success"}}',
    '{"name": "upload_file", "arguments": {"file": "desk_lamp", "coordinate": [300, 640]}}',
    '{"type": "function", "function": {"name": "computer_use", "description": "...", "parameters": {}}}',
    '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [183, 524]}}\n</tool_call>',
    "<think>\nThe button is in the upper right corner.\n</think>\n\n<tool_response>\nleft_click done.\n</tool_response>",
    "0 1 2 3 4 5 6 7 8 9 action coordinate pixels keys text status success failure wait answer",
]

# A Qwen-style template (our own): the generation prompt opens the think block, as Qwen3-VL-Thinking's does.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}"
    "{%- else %}{%- for part in message.content %}"
    "{%- if part.type == 'image' or 'image' in part or 'image_url' in part %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif 'text' in part %}{{- part.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)


def build_tokenizer(vocab_size: int = 1024, corpus: Sequence[str] = ()):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[t for t, _ in ADDED_TOKENS],
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4 + list(corpus) * 4, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    # transformers annotates merges as list[str] and unk_token as str, but its BPE takes (a, b) pairs and None = no unk.
    hf = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=merges,  # type: ignore[arg-type]
        unk_token=None,  # type: ignore[arg-type]
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=262144,
    )
    hf.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in ADDED_TOKENS])
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_tiny_model(
    out: Path,
    *,
    chat_template: str | None = None,
    layers: int = 4,
    vocab_size: int = 1024,
    corpus: Sequence[str] = (),
) -> Path:
    """Build the tiny model into ``out`` (model + processor, ``save_pretrained``); returns ``out``.

    ``corpus`` (with a larger ``vocab_size``) trains the tokenizer on more text, e.g. a task's prompt, so
    that prompt takes about as many tokens as with Qwen's own tokenizer rather than several times more
    (training tests and benchmarks, where every token costs a forward and a backward)."""
    import torch
    from transformers import GenerationConfig, Qwen2VLImageProcessorPil, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tok = build_tokenizer(vocab_size, corpus)
    if chat_template is not None:
        tok.chat_template = chat_template
    ids = {t: tok.convert_tokens_to_ids(t) for t, _ in ADDED_TOKENS}
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            hidden_act="silu",
            max_position_embeddings=32768,
            rms_norm_eps=1e-6,
            attention_bias=False,
            # mrope_section sums to head_dim / 2 (the real 128-dim heads use [24, 20, 20]).
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [6, 5, 5],
                "mrope_interleaved": True,
            },
            pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=2,
            hidden_size=64,
            intermediate_size=128,
            num_heads=4,
            in_channels=3,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=128,
            num_position_embeddings=256,
            deepstack_visual_indexes=[0, 1],
            hidden_act="gelu_pytorch_tanh",
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    # The real Qwen3-VL preprocessor values: patch 16, merge 2, mean/std 0.5.
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": 65536, "longest_edge": 16777216},
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = image_only_processor_class()(image_processor=image_processor, tokenizer=tok, chat_template=tok.chat_template)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "README.md").write_text(
        "# Tiny random-weight Qwen3-VL (Glassbox test model)\n\n"
        "Built offline by `glassbox dev tiny-model`. Random weights: its outputs are noise, not decisions.\n"
        "It exists to test the real transformers Qwen3-VL code path without downloading weights.\n",
        encoding="utf-8",
    )
    return out
