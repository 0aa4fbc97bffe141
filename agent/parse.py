"""One parser for every shape of Qwen3-VL output: reasoning and tool calls, or a structured parse error.

Shapes read:
- ``<think>reasoning</think>`` + answer, and the Thinking models' ``reasoning</think>`` + answer (the
  opening tag is in the prompt);
- one or several ``<tool_call>{json}</tool_call>``, a missing closing tag, code fences, trailing text,
  single-quoted (Python-style) dicts, ``arguments`` given as a JSON string;
- OpenAI ``tool_calls`` (arguments as a JSON string or an object) and the server's separate reasoning
  (``reasoning`` or the older ``reasoning_content``).

Model output is untrusted input, so the parser is total (any input gives a ``ParsedOutput``, never an
exception), linear in the length of the output (plain string scans, no backtracking regexes over the
output), and never acts on reasoning: tool calls are looked for only in the answer. A Thinking model's
output without ``</think>`` was cut off mid-reasoning and is all reasoning; an unclosed ``<think>`` block
is reasoning up to the end of the output. Coordinates are never guessed.

    parsed = parse_output(raw_text, thinking=True)
    parsed.reasoning, parsed.tool_calls, parsed.error
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

from pydantic import BaseModel, Field

from tools.actions import ToolCall
from tools.coords import CoordinateMode

OPEN_THINK, CLOSE_THINK = "<think>", "</think>"
OPEN_CALL, CLOSE_CALL = "<tool_call>", "</tool_call>"
MAX_CALLS = 16  # tool calls one output may hold; more is a broken output, refused as a whole
REPAIR_BUDGET = 50_000  # characters of damaged calls one output may spend repairs on (a real call is far smaller)
MAX_ERRORS_SHOWN = 3
MAX_DEPTH = 64  # nesting of a tool call's arguments

# Regexes over model output must stay linear: the fence one is anchored with match() at one position.
_FENCE_OPEN = re.compile(r"```[A-Za-z0-9_-]*")
_BARE_NAME = re.compile(r"name([\"'])\s*:")
BARE_CANDIDATES = 64  # "name": keys tried as the start of an untagged call
BARE_WINDOW = 256  # whitespace allowed between "{" and an untagged call's "name"

CUT_OFF = (
    "the output was cut off before the reasoning ended (no </think>), so it holds only reasoning and nothing in it is acted on"
)


class ParsedOutput(BaseModel):
    reasoning: str = ""
    answer: str = ""  # the text after the reasoning
    tool_calls: list[ToolCall] = Field(default_factory=list)
    error: str | None = None
    cut_off: bool = False  # the reasoning never ended (no </think>, or an unclosed <think>)


def split_reasoning(text: str, server_reasoning: str | None = None, *, thinking: bool = False) -> tuple[str, str]:
    """(reasoning, answer). ``server_reasoning`` is what a server returned separately, if anything."""
    reasoning, answer, _ = _split(text, server_reasoning, thinking)
    return reasoning, answer


def _split(text: str, server_reasoning: str | None, thinking: bool) -> tuple[str, str, bool]:
    """(reasoning, answer, cut_off)."""
    close = text.rfind(CLOSE_THINK)
    if close >= 0:
        head, answer = text[:close], text[close + len(CLOSE_THINK) :]
        opened = head.find(OPEN_THINK)
        reasoning = head[opened + len(OPEN_THINK) :] if opened >= 0 else head
        cut_off = False
    elif thinking and server_reasoning is None:
        # The prompt ends with "<think>\n" and no server split the reasoning off: no </think> means the
        # model never finished thinking, so every character is reasoning (a drafted tool call included).
        opened = text.find(OPEN_THINK)
        reasoning, answer, cut_off = (text[opened + len(OPEN_THINK) :] if opened >= 0 else text), "", True
    else:
        reasoning, answer, cut_off = "", text, False
    opened = answer.find(OPEN_THINK)
    if opened >= 0:  # an unclosed think block in the answer: reasoning to the end, never acted on
        reasoning = _join(reasoning, answer[opened + len(OPEN_THINK) :].strip())
        answer, cut_off = answer[:opened], True
    return _join(server_reasoning, reasoning.strip()), answer.strip(), cut_off


def parse_output(
    text: object,
    *,
    server_reasoning: object = None,
    server_tool_calls: object = None,
    thinking: bool = False,
) -> ParsedOutput:
    """Parse a model's output. Never raises: problems come back in ``error``.

    ``thinking``: the model is a Thinking model whose prompt opens the think block, so an output without
    ``</think>`` (and no reasoning split off by a server) is unfinished reasoning.
    """
    if text is None:
        text = ""
    if not isinstance(text, str):
        return ParsedOutput(error=f"the model output is {type(text).__name__}, not text, and cannot be parsed")
    if server_reasoning is not None and not isinstance(server_reasoning, str):
        return ParsedOutput(answer=text, error=f"the server's reasoning is {type(server_reasoning).__name__}, not text")
    try:
        return _parse(text, server_reasoning, server_tool_calls, thinking)
    except Exception as exc:  # defensive: a parser bug must be a recorded error, not a crashed run
        return ParsedOutput(answer=text[:2000], error=f"the output could not be parsed ({type(exc).__name__})")


def _parse(text: str, server_reasoning: str | None, server_tool_calls: object, thinking: bool) -> ParsedOutput:
    reasoning, answer, cut_off = _split(text, server_reasoning, thinking)
    calls: list[ToolCall] = []
    errors: list[str] = []
    if server_tool_calls is not None and not isinstance(server_tool_calls, list):
        errors.append(f"the server's tool_calls is {type(server_tool_calls).__name__}, not a list")
    elif server_tool_calls:
        for raw in server_tool_calls[: MAX_CALLS + 1]:
            _collect(_from_openai(raw), calls, errors)
    chunks = _tagged_chunks(answer, MAX_CALLS + 1)
    if not chunks and not calls:
        bare = _bare_call_start(answer)
        if bare is not None:
            chunks = [answer[bare:]]  # a call without its tags
    budget = [REPAIR_BUDGET]  # shared by every chunk, so repairs stay bounded however many chunks there are
    for chunk in chunks:
        _collect(_from_text(chunk, budget), calls, errors)
    if len(calls) > MAX_CALLS:
        return ParsedOutput(
            reasoning=reasoning,
            answer=answer,
            cut_off=cut_off,
            error=f"the output holds more than {MAX_CALLS} tool calls; give one call per answer",
        )
    if calls:
        return ParsedOutput(reasoning=reasoning, answer=answer, tool_calls=calls, cut_off=cut_off)
    if errors:
        shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
        more = f" (and {len(errors) - MAX_ERRORS_SHOWN} more)" if len(errors) > MAX_ERRORS_SHOWN else ""
        return ParsedOutput(reasoning=reasoning, answer=answer, cut_off=cut_off, error=shown + more)
    if cut_off:
        why = CUT_OFF
    elif not answer and reasoning:
        why = "the output holds only reasoning and no <tool_call>"
    elif not answer:
        why = "the output is empty"
    else:
        why = 'the output holds no <tool_call>{"name": ..., "arguments": {...}}</tool_call>'
    return ParsedOutput(reasoning=reasoning, answer=answer, cut_off=cut_off, error=why)


def _collect(result: tuple[ToolCall | None, str | None], calls: list[ToolCall], errors: list[str]) -> None:
    call, error = result
    if call is not None:
        calls.append(call)
    if error:
        errors.append(error)


def _tagged_chunks(answer: str, limit: int) -> list[str]:
    """The bodies of ``<tool_call>`` blocks; a body ends at its closing tag, the next opening tag or the end.

    The next positions of both tags are remembered, so the scan is linear however the tags are arranged.
    """
    chunks: list[str] = []
    start = answer.find(OPEN_CALL)
    next_close = -2  # not looked up yet
    while start >= 0 and len(chunks) < limit:
        body = start + len(OPEN_CALL)
        if next_close != -1 and next_close < body:
            next_close = answer.find(CLOSE_CALL, body)
        next_open = answer.find(OPEN_CALL, body)
        ends = [p for p in (next_close, next_open) if p >= 0]
        end = min(ends) if ends else len(answer)
        chunks.append(answer[body:end])
        start = next_open
    return chunks


def _bare_call_start(answer: str) -> int | None:
    """Where a JSON object whose first key is ``name`` begins, e.g. ``{"name": ...}`` without tags.

    The regex starts with a literal (``name``), which the engine finds at C speed; each hit is checked
    backwards over a short window, and only the first few hits are tried, so hostile text stays linear.
    """
    for tried, hit in enumerate(_BARE_NAME.finditer(answer)):
        if tried >= BARE_CANDIDATES:
            break
        quote = hit.start() - 1
        if quote < 0 or answer[quote] != answer[hit.end(1) - 1]:
            continue
        window = max(0, quote - BARE_WINDOW)
        before = answer[window:quote].rstrip()
        if before.endswith("{"):
            return window + len(before) - 1
    return None


def _from_text(chunk: str, budget: list[int]) -> tuple[ToolCall | None, str | None]:
    body = _strip_fence(chunk.strip())
    start = body.find("{")
    if start < 0:
        return None, f"a <tool_call> holds no JSON object: {body[:80]!r}"
    obj = _first_object(body[start:], budget)
    if obj is None:
        return None, f"a <tool_call> holds malformed JSON: {body[start : start + 120]!r}"
    return _to_call(obj)


def _strip_fence(body: str) -> str:
    fence = _FENCE_OPEN.match(body)
    if fence:
        body = body[fence.end() :]
    if body.endswith("```"):
        body = body[:-3]
    return body.strip()


def _first_object(text: str, budget: list[int]) -> Any:
    """The first JSON (or Python-literal) object in ``text``, ignoring what follows it.

    Strict JSON is read at C speed whatever its size; the repairs (brace matching in Python, closing
    braces, Python literals) spend ``budget`` and are skipped once it is used up.
    """
    try:
        obj, _ = json.JSONDecoder().raw_decode(text)
        return obj
    except (ValueError, RecursionError):  # JSONDecodeError, too many digits, too deep
        pass
    if len(text) > budget[0]:
        budget[0] = 0
        return None
    budget[0] -= len(text)
    end = _balanced_end(text)
    candidate = text[:end] if end else text
    for attempt in (candidate, candidate + "}", candidate + "}}"):
        try:
            return json.loads(attempt)
        except (ValueError, RecursionError):
            pass
        value = _python_literal(attempt)
        if isinstance(value, dict):
            return value
    return None


def _python_literal(text: str) -> Any:
    """A Python-style dict (single quotes, True/False/None, or JSON's true/false/null), or None."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
        tree = _JsonNames().visit(tree)
        return ast.literal_eval(tree)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


class _JsonNames(ast.NodeTransformer):
    """JSON's bare names as Python constants (replacing text would corrupt strings that contain them)."""

    _NAMES = {"true": True, "false": False, "null": None}

    def visit_Name(self, node: ast.Name) -> ast.AST:  # noqa: N802 (ast visitor naming)
        if node.id in self._NAMES:
            return ast.copy_location(ast.Constant(self._NAMES[node.id]), node)
        return node


def _balanced_end(text: str) -> int | None:
    depth, quote, escape = 0, "", False
    for i, ch in enumerate(text):
        if quote:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == quote:
                quote = ""
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
        except (ValueError, RecursionError):
            return None, f"the arguments of {_short(name)} are a string that is not JSON"
    if not isinstance(name, str) or not name:
        return None, "a tool call has no 'name'"
    if not isinstance(args, dict):
        return None, f"the tool call {_short(name)} has no 'arguments' object"
    problem = _not_json(args, 0)
    if problem:
        return None, f"the arguments of {_short(name)} are not plain JSON: {problem}"
    return ToolCall(name=name, arguments=_as_json(args)), None


def _not_json(value: Any, depth: int) -> str | None:
    """Why ``value`` (from a Python literal) cannot be recorded as JSON, or None."""
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "a number is not finite"
    if isinstance(value, (list, tuple)):
        return next((p for p in (_not_json(v, depth + 1) for v in value) if p), None)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return "an argument name is not a string"
        return next((p for p in (_not_json(v, depth + 1) for v in value.values()) if p), None)
    return f"a {type(value).__name__} value"


def _as_json(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    return value


def _from_openai(raw: object) -> tuple[ToolCall | None, str | None]:
    fn = raw.get("function", raw) if isinstance(raw, dict) else None
    if not isinstance(fn, dict):
        return None, "a tool_calls entry is not an object"
    return _to_call({"name": fn.get("name"), "arguments": fn.get("arguments")})


def _short(name: object) -> str:
    return repr(name)[:80]


def _join(a: str | None, b: str) -> str:
    return "\n".join(x for x in ((a or "").strip(), b) if x)


def coordinate_error(
    coordinate: list[float] | None,
    *,
    mode: CoordinateMode,
    divisor: float,
    css_size: tuple[int, int],
) -> str | None:
    """Why a model coordinate lies outside what the model was shown (fed back to the model), or None.

    Relative mode: the 0..divisor grid (0..1000 for Qwen3-VL). Absolute mode: the screenshot the
    coordinates are measured in. The far edge itself is allowed (the executor rounds it onto the last pixel).
    """
    if coordinate is None:
        return None
    x, y = coordinate[0], coordinate[1]
    if mode is CoordinateMode.relative_1000:
        limit_x = limit_y = divisor
        where = f"the 0..{divisor:g} grid (x and y must each be between 0 and {divisor:g})"
    else:
        limit_x, limit_y = css_size
        where = f"the {css_size[0]}x{css_size[1]} screenshot (x from 0 to {css_size[0]}, y from 0 to {css_size[1]})"
    if 0 <= x <= limit_x and 0 <= y <= limit_y:
        return None
    return f"the coordinate [{x:g}, {y:g}] is outside {where}; nothing was done"
