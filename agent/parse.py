"""One parser for every shape of Qwen3-VL output: reasoning and tool calls, or a structured parse error.

Shapes read:
- ``<think>reasoning</think>`` + answer, and the Thinking models' ``reasoning</think>`` + answer (the
  opening tag is in the prompt);
- one or several ``<tool_call>{json}</tool_call>``, a missing closing tag, code fences, trailing text,
  single-quoted (Python-style) dicts, ``arguments`` given as a JSON string;
- OpenAI ``tool_calls`` (arguments as a JSON string or an object) and the server's separate reasoning
  (``reasoning`` or the older ``reasoning_content``).

Tool calls are looked for only in the answer, never in the reasoning; coordinates are never guessed.

    parsed = parse_output(raw_text)
    parsed.reasoning, parsed.tool_calls, parsed.error
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from pydantic import BaseModel, Field

from tools.actions import ToolCall

_TOOL_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*|\s*```$")
_BARE_CALL = re.compile(r"\{\s*[\"']name[\"']\s*:")


class ParsedOutput(BaseModel):
    reasoning: str = ""
    answer: str = ""  # the text after the reasoning
    tool_calls: list[ToolCall] = Field(default_factory=list)
    error: str | None = None


def split_reasoning(text: str, server_reasoning: str | None = None) -> tuple[str, str]:
    """(reasoning, answer). ``server_reasoning`` is what a server returned separately, if anything."""
    if "</think>" in text:
        head, _, answer = text.rpartition("</think>")
        reasoning = head.split("<think>", 1)[1] if "<think>" in head else head
        return _join(server_reasoning, reasoning.strip()), answer.strip()
    if "<think>" in text:  # an unclosed think block: the model ran out of tokens while thinking
        before, _, reasoning = text.partition("<think>")
        return _join(server_reasoning, reasoning.strip()), before.strip()
    return (server_reasoning or "").strip(), text.strip()


def parse_output(
    text: str | None,
    *,
    server_reasoning: str | None = None,
    server_tool_calls: list[dict[str, Any]] | None = None,
) -> ParsedOutput:
    """Parse a model's output. Never raises: problems come back in ``error``."""
    try:
        return _parse(text or "", server_reasoning, server_tool_calls)
    except Exception as exc:  # defensive: a parser bug must be a recorded error, not a crashed run
        return ParsedOutput(answer=text or "", error=f"the output could not be parsed ({type(exc).__name__}: {exc})")


def _parse(text: str, server_reasoning: str | None, server_tool_calls: list[dict[str, Any]] | None) -> ParsedOutput:
    reasoning, answer = split_reasoning(text, server_reasoning)
    calls: list[ToolCall] = []
    errors: list[str] = []
    for raw in server_tool_calls or []:
        call, error = _from_openai(raw)
        if call:
            calls.append(call)
        if error:
            errors.append(error)
    chunks = [m.group(1) for m in _TOOL_CALL.finditer(answer)]
    if not chunks and not calls and _BARE_CALL.search(answer):
        chunks = [answer[_BARE_CALL.search(answer).start():]]  # a call without its tags
    for chunk in chunks:
        call, error = _from_text(chunk)
        if call:
            calls.append(call)
        if error:
            errors.append(error)
    if calls:
        return ParsedOutput(reasoning=reasoning, answer=answer, tool_calls=calls)
    if errors:
        return ParsedOutput(reasoning=reasoning, answer=answer, error="; ".join(errors))
    if not answer and reasoning:
        why = "the output holds only reasoning and no <tool_call> (it may have run out of tokens while thinking)"
    else:
        why = 'the output holds no <tool_call>{"name": ..., "arguments": {...}}</tool_call>'
    return ParsedOutput(reasoning=reasoning, answer=answer, error=why)


def _from_text(chunk: str) -> tuple[ToolCall | None, str | None]:
    body = _FENCE.sub("", chunk.strip()).strip()
    start = body.find("{")
    if start < 0:
        return None, f"a <tool_call> holds no JSON object: {body[:80]!r}"
    obj = _first_object(body[start:])
    if obj is None:
        return None, f"a <tool_call> holds malformed JSON: {body[start:start + 120]!r}"
    return _to_call(obj)


def _first_object(text: str) -> Any:
    """The first JSON (or Python-literal) object in ``text``, ignoring what follows it."""
    try:
        obj, _ = json.JSONDecoder().raw_decode(text)
        return obj
    except json.JSONDecodeError:
        pass
    end = _balanced_end(text)
    candidate = text[:end] if end else text
    for attempt in (candidate, candidate + "}", candidate + "}}"):
        try:
            return json.loads(attempt)
        except json.JSONDecodeError:
            pass
        try:
            value = ast.literal_eval(attempt.replace("true", "True").replace("false", "False").replace("null", "None"))
            if isinstance(value, dict):
                return value
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            pass
    return None


def _balanced_end(text: str) -> int | None:
    depth, quote, escape = 0, None, False
    for i, ch in enumerate(text):
        if quote:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _to_call(obj: Any) -> tuple[ToolCall | None, str | None]:
    if not isinstance(obj, dict):
        return None, "a tool call must be a JSON object with 'name' and 'arguments'"
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters"))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None, f"the arguments of {name!r} are a string that is not JSON"
    if not isinstance(name, str) or not name:
        return None, "a tool call has no 'name'"
    if not isinstance(args, dict):
        return None, f"the tool call {name!r} has no 'arguments' object"
    return ToolCall(name=name, arguments=args), None


def _from_openai(raw: dict[str, Any]) -> tuple[ToolCall | None, str | None]:
    fn = raw.get("function", raw) if isinstance(raw, dict) else None
    if not isinstance(fn, dict):
        return None, "a tool_calls entry is not an object"
    return _to_call({"name": fn.get("name"), "arguments": fn.get("arguments")})


def _join(a: str | None, b: str) -> str:
    return "\n".join(x for x in ((a or "").strip(), b) if x)
