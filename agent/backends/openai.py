"""OpenAI-compatible backend (vLLM, SGLang, any chat-completions server).

Same prompt as the local backend: the system text with the tools block, images as PNG data URLs.
Retries with exponential backoff on 429 and 5xx (honouring Retry-After); the API key comes from an
environment variable (``OPENAI_API_KEY`` unless the task names another), never from a file.
"""

from __future__ import annotations

import base64
import codecs
import os
import random
import time
from typing import Any

import httpx

from agent.backends.base import CUT_HERE, Backend, BackendError, Generation, Sampling, TokenLogprob
from agent.prompt import ImagePart, Prompt, TextPart

RETRY_STATUS = {429, 500, 502, 503, 504}
CHARS_PER_TOKEN_LIMIT = 32  # a token is a few characters; far past this is not one model's answer to max_tokens


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 120.0,
        retries: int = 4,
        thinking: bool | None = None,
        logprobs: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL must start with http:// or https://, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.retries = retries
        self.timeout_s = timeout_s
        self.api_key_env = api_key_env
        self.logprobs = logprobs
        self.thinking = ("thinking" in model.lower()) if thinking is None else thinking
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env)
        self._key = key or None  # kept only to mask it in error text a server echoes back (it goes into step records)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    def request_body(self, prompt: Prompt, sampling: Sampling, *, step: int) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        for m in prompt.messages:
            if all(isinstance(p, TextPart) for p in m.content):
                messages.append({"role": m.role, "content": "".join(p.text for p in m.content)})  # type: ignore[union-attr]
                continue
            parts: list[dict[str, Any]] = []
            for p in m.content:
                if isinstance(p, ImagePart):
                    url = "data:image/png;base64," + base64.b64encode(p.png).decode("ascii")
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                else:
                    parts.append({"type": "text", "text": p.text})
            messages.append({"role": m.role, "content": parts})
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "presence_penalty": sampling.presence_penalty,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed + step
        if self.logprobs:
            body["logprobs"] = True
        return body

    def generate(
        self, prompt: Prompt, sampling: Sampling, *, step: int, attention: bool = False, deadline: float | None = None
    ) -> Generation:
        body = self.request_body(prompt, sampling, step=step)
        data = self._post(body, deadline)
        try:
            choice = data["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"the server's answer has no choices[0].message: {str(data)[:200]}") from None
        if not isinstance(choice, dict) or not isinstance(message, dict):
            raise BackendError(f"the server's choices[0].message is not an object: {str(data)[:200]}")
        content = message.get("content") or ""
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        if not isinstance(content, str):
            raise BackendError(f"the server's message content is {type(content).__name__}, not text")
        reasoning = _reasoning(message)
        finish = choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None
        # No model writes more than a few characters a token: a server that sends megabytes past max_tokens would fill
        # the run's records (each step keeps its output twice) and the viewer. Cut here, and said so.
        limit = CHARS_PER_TOKEN_LIMIT * max(sampling.max_new_tokens, 256)
        if len(content) > limit or len(reasoning or "") > limit:
            content, reasoning, finish = content[:limit], reasoning[:limit] if reasoning else reasoning, CUT_HERE
        tool_calls = message.get("tool_calls") or None
        if tool_calls is not None and not (isinstance(tool_calls, list) and all(isinstance(c, dict) for c in tool_calls)):
            raise BackendError(f"the server's tool_calls is not a list of objects: {str(tool_calls)[:200]}")
        whole, tokens, reason = generation_tokens(choice.get("logprobs"))
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        details = usage.get("completion_tokens_details")
        details = details if isinstance(details, dict) else {}
        return Generation(
            text=content,
            server_reasoning=reasoning,
            server_tool_calls=tool_calls,
            tokens=tokens,
            token_text=whole if tokens is not None and whole != content else None,
            logprobs_reason=reason,
            prompt_tokens=_int(usage.get("prompt_tokens")),
            output_tokens=_int(usage.get("completion_tokens")),
            reasoning_tokens=_int(details.get("reasoning_tokens")),
            finish_reason=finish,
            attention_reason="a served model returns no attention; `glassbox explain` can compute maps with a local copy",
        )

    def _post(self, body: dict[str, Any], deadline: float | None = None) -> dict[str, Any]:
        """The server's JSON answer; 429 and 5xx and lost connections are tried again, never past ``deadline``."""
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.retries + 1):
            timeout = self.timeout_s
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0.05:
                    raise BackendError(_budget_spent(url, last))
                timeout = min(timeout, left)
            try:
                response = self._client.post(url, json=body, timeout=timeout)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                if deadline is not None and time.monotonic() >= deadline - 0.05:
                    raise BackendError(_budget_spent(url, last)) from None
            else:
                if response.status_code == 200:
                    try:
                        data = response.json()
                    except ValueError:
                        kind = response.headers.get("content-type", "").split(";")[0].strip()
                        if kind == "text/event-stream":
                            raise BackendError(
                                f"{url} answered with a stream (server-sent events), not one JSON answer: Glassbox does "
                                "not ask for streaming; a proxy in between may force it"
                            ) from None
                        raise BackendError(f"{url} answered 200 with a body that is not JSON") from None
                    if not isinstance(data, dict):
                        raise BackendError(f"{url} answered 200 with JSON that is not an object: {str(data)[:200]}")
                    return data
                said = response.text if self._key is None else response.text.replace(self._key, "●●●●")
                last = f"HTTP {response.status_code}: {said[:200]}"
                if response.is_redirect:  # not followed: the key goes to the --base-url given, nowhere else
                    where = response.headers.get("location", "")
                    raise BackendError(
                        f"{url} redirects to {where[:300]!r} (HTTP {response.status_code}), which is not followed: "
                        "give that address as --base-url if it is the server"
                    )
                if response.status_code in (401, 403):
                    key = f"the API key from ${self.api_key_env}" if self._key else f"no API key (${self.api_key_env} is not set)"
                    raise BackendError(f"{url} refused {key} ({last})", lasting=True)
                if response.status_code not in RETRY_STATUS:
                    raise BackendError(f"{url} refused the request ({last})")
                retry_after = response.headers.get("retry-after")
                if retry_after and retry_after.replace(".", "", 1).isdigit() and attempt < self.retries:
                    _pause(min(float(retry_after), 30), deadline)
                    continue
            if attempt < self.retries:
                _pause(min(0.25 * 2**attempt, 8) * (0.5 + random.random() / 2), deadline)
        raise BackendError(f"{url} failed after {self.retries + 1} attempts ({last})")

    def close(self) -> None:
        self._client.close()


def _budget_spent(url: str, last: str) -> str:
    return f"the run's time budget ran out while waiting for {url}" + (f" (last: {last})" if last else "")


def _pause(seconds: float, deadline: float | None) -> None:
    """Wait before trying again, but not past the run's deadline (the next attempt then says the budget ran out)."""
    if deadline is not None:
        seconds = min(seconds, max(0.0, deadline - time.monotonic()))
    time.sleep(seconds)


def _reasoning(message: dict[str, Any]) -> str | None:
    """The reasoning a server split off: ``reasoning`` (current vLLM) or ``reasoning_content`` (older).

    An empty string is kept (not None): it says the server did split the reasoning off (the model closed
    its think block at once), so the content is the answer, not an unfinished thought.
    """
    for key in ("reasoning", "reasoning_content"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    for key in ("reasoning", "reasoning_content"):
        if isinstance(message.get(key), str):
            return ""
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def generation_tokens(logprobs: Any) -> tuple[str, list[TokenLogprob] | None, str | None]:
    """(whole generation, tokens indexing into it, why there are no tokens).

    The server's ``logprobs.content`` covers everything the model generated, whatever its reasoning and
    tool parsers moved out of ``content``: the reasoning, ``</think>`` and the raw ``<tool_call>`` text.
    So the tokens are aligned against their own concatenation, not against ``content``. Where every
    entry carries its UTF-8 ``bytes``, those are decoded incrementally, so a character split over two
    tokens is whole in the text (and belongs to the token that completes it).
    """
    if not isinstance(logprobs, dict) or not logprobs.get("content"):
        return "", None, "the server returned no log-probabilities"
    entries = logprobs["content"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return "", None, "the server's log-probabilities are not a list of token entries"
    values = [e.get("logprob") for e in entries]
    # A log-probability is <= 0; a hair above 0 is float rounding (clamped below), anything else is not one.
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 1e-4 for v in values):
        return "", None, "the server's log-probabilities hold values that are not log-probabilities (numbers <= 0)"
    texts = _token_texts(entries)
    if texts is None:
        return "", None, "the server's log-probabilities hold tokens that are not text"
    tokens, position = [], 0
    for text, value in zip(texts, values, strict=True):
        tokens.append(TokenLogprob(text=text, start=position, end=position + len(text), logprob=min(float(value), 0.0)))
        position += len(text)
    return "".join(texts), tokens, None


def _token_texts(entries: list[dict[str, Any]]) -> list[str] | None:
    byte_lists = [e.get("bytes") for e in entries]
    if all(isinstance(b, list) and all(isinstance(x, int) and 0 <= x < 256 for x in b) for b in byte_lists):
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        texts = [decoder.decode(bytes(b)) for b in byte_lists]  # type: ignore[arg-type]
        texts[-1] += decoder.decode(b"", final=True)
        return texts
    strings = [e.get("token") for e in entries]
    if not all(isinstance(t, str) for t in strings):
        return None
    return strings  # type: ignore[return-value]
