"""OpenAI-compatible backend (vLLM, SGLang, any chat-completions server).

Same prompt as the local backend: the system text with the tools block, images as PNG data URLs.
Retries with exponential backoff on 429 and 5xx (honouring Retry-After); the API key comes from an
environment variable (``OPENAI_API_KEY`` unless the task names another), never from a file.
"""

from __future__ import annotations

import base64
import os
import random
import time
from typing import Any

import httpx

from agent.backends.base import Backend, BackendError, Generation, Sampling, TokenLogprob
from agent.prompt import ImagePart, Prompt, TextPart

RETRY_STATUS = {429, 500, 502, 503, 504}


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 120.0,
                 retries: int = 4, thinking: bool | None = None, logprobs: bool = True,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL must start with http:// or https://, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.retries = retries
        self.logprobs = logprobs
        self.thinking = ("thinking" in model.lower()) if thinking is None else thinking
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    def request_body(self, prompt: Prompt, sampling: Sampling, *, step: int) -> dict[str, Any]:
        messages = []
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
            "model": self.model, "messages": messages, "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k,
            "presence_penalty": sampling.presence_penalty,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed + step
        if self.logprobs:
            body["logprobs"] = True
        return body

    def generate(self, prompt: Prompt, sampling: Sampling, *, step: int, attention: bool = False) -> Generation:
        body = self.request_body(prompt, sampling, step=step)
        data = self._post(body)
        try:
            choice = data["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"the server's answer has no choices[0].message: {str(data)[:200]}") from None
        content = message.get("content") or ""
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        tool_calls = message.get("tool_calls") or None
        tokens, reason = _token_spans(choice.get("logprobs"), content)
        usage = data.get("usage") or {}
        return Generation(
            text=content, server_reasoning=reasoning, server_tool_calls=tool_calls, tokens=tokens,
            logprobs_reason=reason, prompt_tokens=usage.get("prompt_tokens"), output_tokens=usage.get("completion_tokens"),
            finish_reason=choice.get("finish_reason"),
            attention_reason="a served model returns no attention; `glassbox explain` can compute maps with a local copy",
        )

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.retries + 1):
            try:
                response = self._client.post(url, json=body)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise BackendError(f"{url} answered 200 with a body that is not JSON") from None
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRY_STATUS:
                    raise BackendError(f"{url} refused the request ({last})")
                retry_after = response.headers.get("retry-after")
                if retry_after and retry_after.replace(".", "", 1).isdigit() and attempt < self.retries:
                    time.sleep(min(float(retry_after), 30))
                    continue
            if attempt < self.retries:
                time.sleep(min(0.25 * 2 ** attempt, 8) * (0.5 + random.random() / 2))
        raise BackendError(f"{url} failed after {self.retries + 1} attempts ({last})")

    def close(self) -> None:
        self._client.close()


def _token_spans(logprobs: Any, content: str) -> tuple[list[TokenLogprob] | None, str | None]:
    if not logprobs or not isinstance(logprobs, dict) or not logprobs.get("content"):
        return None, "the server returned no log-probabilities"
    tokens, position = [], 0
    for entry in logprobs["content"]:
        text = entry.get("token", "")
        start = content.find(text, position) if text else position
        if start < 0:
            return None, "the server's tokens do not line up with its content"
        tokens.append(TokenLogprob(text=text, start=start, end=start + len(text), logprob=float(entry.get("logprob", 0.0))))
        position = start + len(text)
    return tokens, None
