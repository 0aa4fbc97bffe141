"""Confidence of a step from token log-probabilities: how sure the model was of the action name and the
coordinate it wrote (and of the typed text, when it typed).

Each part is the geometric mean of its tokens' probabilities; the step's confidence is the geometric mean
over all those tokens, a number in [0, 1]. Only the tool call's tokens count, never the reasoning's.
"""

from __future__ import annotations

import math
import re

from pydantic import BaseModel

from agent.backends.base import TokenLogprob

_ACTION = re.compile(r'["\']action["\']\s*:\s*["\']([a-z_]+)["\']')
_NAME = re.compile(r'["\']name["\']\s*:\s*["\']([a-z_]+)["\']')
_COORD = re.compile(r'["\']coordinate["\']\s*:\s*\[\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\]')
_TEXT = re.compile(r'["\']text["\']\s*:\s*"((?:[^"\\]|\\.)*)"')


class TokenSpans(BaseModel):
    """Character spans of the parts of the (first) tool call in the generated text."""

    action_name: list[tuple[int, int]] = []
    coordinate: list[tuple[int, int]] = []
    text: list[tuple[int, int]] = []


def tool_call_spans(text: str, call_index: int = 0, *, thinking: bool = False) -> TokenSpans:
    """Spans of the ``call_index``-th tool call in the answer part (after the last ``</think>``).

    The reasoning is never used: a Thinking model's output without ``</think>`` is all reasoning (no
    spans), and an unclosed ``<think>`` ends the answer.
    """
    close = text.rfind("</think>")
    if close < 0 and thinking:
        return TokenSpans()
    offset = close + len("</think>") if close >= 0 else 0
    limit = text.find("<think>", offset)
    limit = len(text) if limit < 0 else limit
    start = text.find("<tool_call>", offset, limit)
    if start < 0:
        if call_index:
            return TokenSpans()
        start = offset  # an untagged call: the first one only
    for _ in range(call_index):
        start = text.find("<tool_call>", start + len("<tool_call>"), limit)
        if start < 0:
            return TokenSpans()
    ends = [p for p in (text.find("</tool_call>", start, limit), text.find("<tool_call>", start + 1, limit)) if p >= 0]
    call = text[start : min(ends) if ends else limit]
    spans = TokenSpans()
    m = _ACTION.search(call) or _NAME.search(call)
    if m:
        spans.action_name.append((start + m.start(1), start + m.end(1)))
    m = _COORD.search(call)
    if m:
        spans.coordinate += [(start + m.start(1), start + m.end(1)), (start + m.start(2), start + m.end(2))]
    m = _TEXT.search(call)
    if m and m.end(1) > m.start(1):
        spans.text.append((start + m.start(1), start + m.end(1)))
    return spans


def tokens_in(tokens: list[TokenLogprob], spans: list[tuple[int, int]]) -> list[int]:
    """Indexes of tokens overlapping any span."""
    return [
        i
        for i, t in enumerate(tokens)
        if any(t.start < e and t.end > s or (t.start == t.end and s <= t.start < e) for s, e in spans)
    ]


class Confidence(BaseModel):
    value: float | None
    parts: dict[str, float] = {}
    reason: str | None = None


def confidence(
    text: str, tokens: list[TokenLogprob] | None, why_none: str | None = None, *, call_index: int = 0, thinking: bool = False
) -> Confidence:
    """How sure the model was of its ``call_index``-th tool call; ``text`` is what the tokens spell out."""
    if not tokens:
        return Confidence(value=None, reason=why_none or "the backend returned no log-probabilities")
    spans = tool_call_spans(text, call_index, thinking=thinking)
    parts: dict[str, float] = {}
    chosen: list[int] = []
    for name, part_spans in (("action_name", spans.action_name), ("coordinate", spans.coordinate), ("text", spans.text)):
        idx = tokens_in(tokens, part_spans)
        if idx:
            parts[name] = _geomean([tokens[i].logprob for i in idx])
            chosen += idx
    if not chosen:
        return Confidence(value=None, reason="no tool call tokens to score (the output holds no usable tool call)")
    value = _geomean([tokens[i].logprob for i in sorted(set(chosen))])
    return Confidence(value=value, parts=parts)


def _geomean(logprobs: list[float]) -> float:
    return round(min(1.0, max(0.0, math.exp(sum(logprobs) / len(logprobs)))), 6)


def target_tokens(text: str, tokens: list[TokenLogprob], *, thinking: bool = False) -> dict[str, list[int]]:
    """Which generated tokens belong to the action (name + coordinate), the reasoning, the typed text, the output."""
    spans = tool_call_spans(text, thinking=thinking)
    end = text.rfind("</think>")
    if end < 0 and thinking:  # cut off while thinking: every token is reasoning
        end = len(text)
    targets = {
        "action": sorted(set(tokens_in(tokens, spans.action_name + spans.coordinate))),
        "reasoning": tokens_in(tokens, [(0, end)]) if end > 0 else [],
        "text": tokens_in(tokens, spans.text),
        "output": list(range(len(tokens))),  # every generated token: always there, even for unusable output
    }
    return {k: v for k, v in targets.items() if v}


def word_tokens(text: str, tokens: list[TokenLogprob], word: str) -> list[int]:
    """Tokens of every occurrence of ``word`` in the text (reasoning included: this is for explanation)."""
    spans, start = [], text.find(word)
    while start >= 0 and word:
        spans.append((start, start + len(word)))
        start = text.find(word, start + 1)
    return tokens_in(tokens, spans)
