"""The Qwen3-VL policy: build the prompt, ask a backend, parse the answer, score its confidence.

The same class serves the local transformers backend and OpenAI-compatible servers. At temperature 0
an identical (screenshots, prompt, settings) returns the cached decision, recorded as a cache hit.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable

from agent.backends.base import CUT_HERE, Backend, BackendError, Generation, resolve_sampling
from agent.confidence import Confidence, confidence, target_tokens
from agent.parse import CUT_OFF, ParsedOutput, parse_output
from agent.policy import CallConfidence, ModelTrace, Policy, PolicyDecision, PolicyOutput
from agent.prompt import Prompt, build_prompt
from agent.task import Task
from tools.views import Observation
from tracer.attention import AttentionMaps, layer_groups
from tracer.schema import StepRecord, TokenCounts

CACHE_SIZE = 256


class QwenPolicy(Policy):
    def __init__(self, backend: Backend, task: Task) -> None:
        self.backend = backend
        self.name = "qwen3vl" if backend.name == "local" else "openai"
        self.model = backend.model
        settings = task.policy
        self.sampling = resolve_sampling(
            {
                "temperature": settings.temperature,
                "top_p": settings.top_p,
                "top_k": settings.top_k,
                "presence_penalty": settings.presence_penalty,
            },
            thinking=backend.thinking,
            max_new_tokens=settings.max_new_tokens,
            seed=settings.seed,
        )
        self._screens: dict[int, bytes] = {}
        self._cache: OrderedDict[str, tuple[Generation, PolicyOutput]] = OrderedDict()

    def decide(self, task: Task, history: list[StepRecord], observation: Observation) -> PolicyOutput:
        index = len(history)
        self._screens[index] = observation.screenshot_png
        k = task.policy.history_screenshots
        for old in [i for i in self._screens if i < index - k + 1]:
            del self._screens[old]
        prompt = build_prompt(
            task,
            history,
            observation.screenshot_png,
            settings=task.policy,
            past_screenshots={i: png for i, png in self._screens.items() if i < index},
            current_title=observation.title,
        )
        return self.decide_prompt(prompt, step=index, attention=task.policy.attention, cache=True)

    def decide_prompt(self, prompt: Prompt, *, step: int, attention: bool = False, cache: bool = False) -> PolicyOutput:
        """Ask the model about ``prompt``: :meth:`decide`'s, or one built elsewhere (``glassbox decide``: a recorded
        step's prompt, never cached); never raises for the backend. With ``cache`` and greedy sampling an identical
        prompt returns the cached decision, recorded as a cache hit."""
        key = self._key(prompt) if cache and self.sampling.greedy else None
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            _, cached = self._cache[key]
            trace = cached.trace.model_copy(update={"cache_hit": True, "decoding": None, "prompt": prompt.record("current")})
            return cached.model_copy(update={"trace": trace})
        try:
            generation = self.backend.generate(prompt, self.sampling, step=step, attention=attention, deadline=self.deadline)
        except BackendError as exc:
            return PolicyOutput(
                decision=PolicyDecision(
                    backend_error=f"the model backend failed: {exc}", backend_lasting=exc.lasting, confidence_reason="no output"
                ),
                trace=ModelTrace(prompt=prompt.record("current"), unavailable={"attention": "no output"}),
            )
        output = self._output(prompt, generation)
        if key is not None and output.decision.parse_error is None:
            self._cache[key] = (generation, output)
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return output

    def _output(self, prompt: Prompt, generation: Generation) -> PolicyOutput:
        thinking = self.backend.thinking
        parsed = parse_output(
            generation.text,
            server_reasoning=generation.server_reasoning,
            server_tool_calls=generation.server_tool_calls,
            thinking=thinking,
        )
        scores = [self._confidence(generation, parsed, i) for i in range(max(1, len(parsed.tool_calls)))]
        conf = scores[0]
        raw = generation.text
        if generation.server_reasoning:
            raw = f"<think>\n{generation.server_reasoning}\n</think>\n\n{generation.text}"
        if generation.server_tool_calls:
            raw += "\n" + json.dumps({"tool_calls": generation.server_tool_calls}, ensure_ascii=False)
        error = parsed.error
        if error and generation.finish_reason == "length":
            error += f" (generation stopped at the {self.sampling.max_new_tokens}-token limit)"
        elif error and generation.finish_reason == CUT_HERE:
            error += (
                f" (the server's answer ran far past what {self.sampling.max_new_tokens} tokens can hold, so Glassbox kept "
                f"its first {len(generation.text)} characters)"
            )
        elif error == CUT_OFF and generation.finish_reason == "stop":
            # Not cut off: the model (or the server's template) ended without ever closing its reasoning.
            error = (
                "the output ends without </think> although the model stopped on its own, so it holds only reasoning and "
                "nothing in it is acted on: the server's chat template or reasoning parser may drop the tag, or the "
                "model does not think (then set policy.thinking: false)"
            )
        maps = attention_maps(generation, thinking=thinking) if generation.attention is not None else None
        unavailable = {} if maps is not None else {"attention": generation.attention_reason or "no attention captured"}
        decision = PolicyDecision(
            tool_calls=parsed.tool_calls,
            parse_error=error,
            confidence=conf.value,
            confidence_parts=conf.parts,
            confidence_reason=conf.reason,
            call_confidence=[CallConfidence(value=c.value, parts=c.parts, reason=c.reason) for c in scores]
            if len(parsed.tool_calls) > 1
            else [],
        )
        trace = ModelTrace(
            raw_output=raw,
            reasoning=parsed.reasoning,
            prompt=prompt.record("current"),
            cache_hit=False,
            token_counts=TokenCounts(
                prompt=generation.prompt_tokens,
                output=generation.output_tokens,
                image=generation.image_tokens,
                reasoning=generation.reasoning_tokens,
                finish_reason=generation.finish_reason,
            ),
            unavailable=unavailable,
            attention_maps=maps,
            decoding=generation.decoding,
            extras={"notes": generation.notes, "sampling": self.sampling.model_dump()},
        )
        return PolicyOutput(decision=decision, trace=trace)

    def _confidence(self, generation: Generation, parsed: ParsedOutput, call_index: int) -> Confidence:
        """The confidence of one tool call, scored on the text the tokens spell out (a served model's
        whole generation, reasoning and raw ``<tool_call>`` text included, even when the server moved
        them out of ``content``)."""
        if parsed.error is not None and generation.tokens:
            return Confidence(value=None, reason="no tool call to score (the output could not be used)")
        if generation.tokens and generation.token_text is not None and call_index < len(parsed.tool_calls):
            spelt = parse_output(generation.token_text, thinking=self.backend.thinking).tool_calls
            if call_index >= len(spelt) or spelt[call_index] != parsed.tool_calls[call_index]:
                # A server whose log-probabilities are not of the answer it sent: a score of another call is no score.
                return Confidence(value=None, reason="the log-probabilities spell another tool call than the one acted on")
        return confidence(
            generation.token_text or generation.text,
            generation.tokens,
            generation.logprobs_reason,
            call_index=call_index,
            thinking=self.backend.thinking,
        )

    def _key(self, prompt: Prompt) -> str:
        h = hashlib.sha256()
        h.update((self.model or "").encode())
        h.update(self.sampling.model_dump_json().encode())
        for m in prompt.messages:
            h.update(m.role.encode())
            h.update(m.text().encode())
        for image in prompt.images():
            h.update(hashlib.sha256(image.png).digest())
        return h.hexdigest()

    def close(self) -> None:
        self.backend.close()


def attention_maps(generation: Generation, *, thinking: bool = False) -> AttentionMaps | None:
    """Maps for the action (action name + coordinate tokens), the reasoning, and the typed text."""
    captured = generation.attention
    if captured is None or not generation.tokens:
        return None
    targets: dict[str, Iterable[int]] = dict(
        target_tokens(generation.token_text or generation.text, generation.tokens, thinking=thinking)
    )
    groups = {
        name: [i for i, _ in enumerate(captured.layers) if i in set(idx)]
        for name, idx in layer_groups(len(captured.layers)).items()
    }
    maps = AttentionMaps.from_rows(
        captured.rows.numpy(), grid=captured.grid, resized_size=captured.resized_size, targets=targets, groups=groups
    )
    return maps if maps.maps else None
