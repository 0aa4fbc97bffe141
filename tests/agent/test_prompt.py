"""The prompt builder against the real Qwen3-VL chat templates (kept as fixtures; see tests/fixtures/SOURCES.md)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.prompt import build_prompt, computer_use_function, strip_think, system_text
from agent.task import load_task
from tests.conftest import TASKS
from tracer.schema import StepRecord, StepTimings

FIXTURES = Path(__file__).parents[1] / "fixtures"
pytest.importorskip("transformers", reason="the chat templates are rendered by transformers")


@pytest.fixture(scope="module")
def tokenizer():
    from agent.tiny_model import build_tokenizer

    return build_tokenizer()


def render(tokenizer, template: str, messages) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize("kind", ["thinking", "instruct"])
def test_cookbook_prompt_renders_byte_for_byte(tokenizer, kind):
    """Our system text + the cookbook's user turn renders exactly as the real template did for the cookbook."""
    template = (FIXTURES / f"qwen3vl_{kind}.chat_template.jinja").read_text()
    expected = (FIXTURES / f"rendered_cookbook_{kind}.txt").read_text()
    messages = [
        {"role": "system", "content": [{"type": "text", "text": system_text([computer_use_function()])}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "open the third issue"}]},
    ]
    assert render(tokenizer, template, messages) == expected


def step(index: int, **kw) -> StepRecord:
    base = dict(
        index=index,
        started_at=datetime.now(timezone.utc),
        timings=StepTimings(),
        url="http://x",
        title="Sign in",
        screenshot=f"steps/{index:04d}/screenshot.png",
        screenshot_size=(1280, 800),
        policy="qwen3vl",
        raw_output='I see it.</think>\n<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", '
        '"coordinate": [500, 462]}}\n</tool_call>',
        reasoning="I see it.",
        action={"action": "left_click", "coordinate": [500, 462]},
        confidence=0.5,
        outcome="ok",
    )
    base.update(kw)
    return StepRecord(**base)


def test_first_step_prompt(tokenizer):
    task = load_task(TASKS / "publish_product.yaml")
    prompt = build_prompt(task, [], b"png")
    names = [t["name"] for t in prompt.tools]
    assert names == ["computer_use", "upload_file", "goto_url"]
    assert "The screen's resolution is 1000x1000." in prompt.messages[0].text()
    user = prompt.messages[1].text()
    assert user.startswith("<image>The user query: Sign in to the store admin as admin")
    assert "<secret>password</secret>" in user and "Xq7-tulip-4821" not in user
    template = (FIXTURES / "qwen3vl_thinking.chat_template.jinja").read_text()
    text = render(tokenizer, template, prompt.hf_messages())
    assert text.count("<|image_pad|>") == 1 and text.endswith("<|im_start|>assistant\n<think>\n")
    assert '"enum": ["desk_lamp"]' in text


def test_history_summary_and_error_feedback():
    task = load_task(TASKS / "publish_product.yaml")
    history = [
        step(0),
        step(
            1,
            action=None,
            outcome="error",
            error="the output holds no <tool_call>",
            error_kind="parse",
            raw_output="garbage",
            tool_calls=[],
        ),
    ]
    prompt = build_prompt(task, history, b"png")
    user = prompt.messages[1].text()
    assert "Step 1: left_click at (500, 462)" in user
    assert "Step 2: output could not be used -> error: the output holds no <tool_call>" in user
    assert "Your last output could not be used because" in user
    assert len(prompt.images()) == 1


def test_last_k_screenshots_come_back_as_turns(tokenizer):
    task = load_task(TASKS / "publish_product.yaml")
    task.policy.history_screenshots = 3
    history = [step(0), step(1), step(2)]
    prompt = build_prompt(task, history, b"now", past_screenshots={1: b"one", 2: b"two"})
    roles = [m.role for m in prompt.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [i.png for i in prompt.images()] == [b"one", b"two", b"now"]
    assert "Step 1: left_click" in prompt.messages[1].text() and "Step 2" not in prompt.messages[1].text()
    assistant = prompt.messages[2].text()
    assert "</think>" not in assistant and "I see it." not in assistant and assistant.startswith("<tool_call>")
    assert prompt.messages[3].text().startswith("<tool_response>\nleft_click done.")
    # each action's response names the page it led to (the next screenshot's title), not the one it acted on
    titled = [step(0, title="Sign in"), step(1, title="Dashboard"), step(2, title="Products")]
    prompt = build_prompt(task, titled, b"now", past_screenshots={1: b"one", 2: b"two"}, current_title="New product")
    responses = [m.text() for m in prompt.messages if m.role == "user"][1:]
    assert [r.split("Page: ")[1].split("\n")[0] for r in responses] == ["Products", "New product"]
    huge = build_prompt(task, titled, b"now", past_screenshots={1: b"one", 2: b"two"}, current_title="x" * 1_000_000)
    told = [m.text() for m in huge.messages if m.role == "user"][-1]
    assert "Page: " + "x" * 300 + "\n" in told  # a page's megabyte title is cut, not sent whole
    record = prompt.record("steps/0003/screenshot.png")
    assert record[1].images == ["steps/0001/screenshot.png"] and record[-1].images == ["steps/0003/screenshot.png"]
    template = (FIXTURES / "qwen3vl_thinking.chat_template.jinja").read_text()
    text = render(tokenizer, template, prompt.hf_messages())
    assert text.count("<|image_pad|>") == 3 and "<think>" not in text[: -len("<think>\n")]


def test_strip_think():
    assert strip_think("a\n</think>\n\n<tool_call>x</tool_call>") == "<tool_call>x</tool_call>"
    assert strip_think("<think>a</think>b") == "b"
    assert strip_think("plain") == "plain"


def test_a_secret_the_page_writes_into_its_title_or_a_dialog_never_reaches_the_model():
    """A page that put the typed key in its title had it told to the model ("Page: Key Xq7-...") as it wrote it."""
    task = load_task(TASKS / "publish_product.yaml")  # its password is a secret
    secret = "Xq7-tulip-4821"
    task.policy.history_screenshots = 2
    typed = step(1, action={"action": "type", "text": "<secret>password</secret>"})
    prompt = build_prompt(task, [step(0), typed], b"now", past_screenshots={1: b"one"}, current_title=f"Key {secret}")
    told = " ".join(m.text() for m in prompt.messages)
    assert "Page: Key ●●●●" in told and secret not in told and "<secret>password</secret>" in told
    dialog = step(0, dialogs=[{"kind": "alert", "message": f"saved {secret}", "answer": "accepted"}], outcome="ok")
    told = " ".join(m.text() for m in build_prompt(task, [dialog], b"now", current_title=secret).messages)
    assert secret not in told and "●●●●" in told
