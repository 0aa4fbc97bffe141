"""A run as OpenTelemetry spans in the GenAI semantic conventions: pure functions from records to span descriptions.

No OpenTelemetry import here: :mod:`tracer.otel_sdk` turns these descriptions into SDK spans, for a live run (one
step at a time, as it is recorded) and for a recorded one (``glassbox export otel``) alike, so both send the same
trace. Times are the records' own, so an old run shows when it ran.

The tree (names from the GenAI conventions; see ``SEMCONV`` for the version followed)::

    invoke_workflow {suite}                     an eval (``glassbox eval``): its runs sit under it
      invoke_agent glassbox                     one run: gen_ai.conversation.id = the run id
        glassbox.step                           one per step (glassbox.step.index, confidence, audit ...)
          chat {model}                          the model call (none for a script step); CLIENT for a served model
          execute_tool computer_use             the action (every tool call, terminate included)

Checks are ``gen_ai.evaluation.result`` events on the run's span, labels and the reasoning-vs-screen verdict on
the step's. Message content (prompt, reasoning, output, tool arguments) only with ``capture_content``; screenshots
only by reference. Every string goes through the run's scrubber last (:func:`scrub_span`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from tools.actions import ToolCall
from tracer.labels import CurrentLabel
from tracer.schema import CheckResult, ConsistencyCheck, PromptMessage, RunRecord, StepRecord
from tracer.secrets import Scrubber

# The GenAI conventions followed: by default the names released in open-telemetry/semantic-conventions v1.41.0
# (the first with invoke_workflow, reasoning tokens and time to first chunk); with the opt-in, those of
# open-telemetry/semantic-conventions-genai at 002c8a6 (docs/gen-ai/*, registry/attributes/gen-ai.md), where the
# conventions moved and are still in development.
SEMCONV = "semantic-conventions v1.41.0 (default); semantic-conventions-genai@002c8a6 (gen_ai_latest_experimental)"
AGENT_NAME = "glassbox"
TOOL_NAME = "computer_use"
OPT_IN_LATEST = "gen_ai_latest_experimental"

AttrValue = Union[str, bool, int, float, list[str], list[int], list[float]]
Attributes = dict[str, AttrValue]


class Conventions(BaseModel):
    """Which names to write and whether message content goes out.

    ``latest`` (``OTEL_SEMCONV_STABILITY_OPT_IN`` lists ``gen_ai_latest_experimental``): the newest names only,
    those added since v1.41.0 among them (``gen_ai.usage.image.input_tokens``). Default: the v1.41.0 names, plus
    ``gen_ai.system`` beside ``gen_ai.provider.name`` for tools that still read it, and what v1.41.0 has no name
    for under ``glassbox.*`` (``glassbox.usage.image_tokens``).
    """

    latest: bool = False
    capture_content: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Conventions":
        env = os.environ if env is None else env
        opt_in = {part.strip() for part in env.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")}
        capture = env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower() == "true"
        return cls(latest=OPT_IN_LATEST in opt_in, capture_content=capture)


class SpanEvent(BaseModel):
    name: str
    time: datetime
    attributes: Attributes = Field(default_factory=dict)


class SpanDesc(BaseModel):
    """One span to emit: ``key`` names it within the run (``parent`` is another span's key; None: the run's
    parent, the eval's workflow span or nothing)."""

    key: str
    parent: str | None
    name: str
    kind: Literal["internal", "client"] = "internal"
    start: datetime
    end: datetime | None  # None: still open (a live run's root until it ends)
    attributes: Attributes = Field(default_factory=dict)
    events: list[SpanEvent] = Field(default_factory=list)
    status: Literal["unset", "ok", "error"] = "unset"
    status_message: str | None = None


class MediaRef(BaseModel):
    """Where a screenshot can be seen: the running viewer's URL for the run, else the run folder on disk."""

    viewer_url: str | None = None  # e.g. http://127.0.0.1:8765 (the viewer's base)
    run_dir: str | None = None

    def file(self, run_id: str, path: str) -> str:
        """A file of the run (``path`` relative to its folder): the viewer's URL of it, else its path."""
        if self.viewer_url:
            return f"{self.viewer_url.rstrip('/')}/runs/{run_id}/files/{path}"
        if self.run_dir:
            return f"{self.run_dir.rstrip('/')}/{path}"
        return path


# -- the run --------------------------------------------------------------------------------------------------


def provider(policy: str) -> str | None:
    """``gen_ai.provider.name`` for a policy: a served model speaks the OpenAI API; a local one runs in
    transformers (no well-known value applies, so a custom one); a script has no provider."""
    return {"openai": "openai", "qwen3vl": "transformers"}.get(policy)


def run_span(run: RunRecord, conv: Conventions) -> SpanDesc:
    """The run's ``invoke_agent`` span, open (:func:`finish_run_span` closes it with the run's outcome)."""
    attrs: Attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": AGENT_NAME,
        "gen_ai.conversation.id": run.run_id,
        "glassbox.run.id": run.run_id,
        "glassbox.task.name": run.task_name,
        "glassbox.policy": run.policy,
    }
    _provider_attrs(attrs, run.policy, conv)
    if run.model:
        attrs["gen_ai.request.model"] = run.model
    _server_attrs(attrs, run)
    if run.target_url:
        attrs["glassbox.target_url"] = run.target_url
    for name, value in (
        ("glassbox.eval.id", run.eval_id),
        ("glassbox.episode.id", run.episode_id),
        ("glassbox.parent_run", run.parent_run),
    ):
        if value:
            attrs[name] = value
    return SpanDesc(
        key="run", parent=None, name=f"invoke_agent {AGENT_NAME}", start=_utc(run.started_at), end=None, attributes=attrs
    )


def finish_run_span(span: SpanDesc, run: RunRecord, *, end: datetime | None = None) -> SpanDesc:
    """Close the run's span with its outcome: status, summary figures and one evaluation event per check."""
    finished = _utc(end or run.ended_at or datetime.now(timezone.utc))
    span.end = max(finished, span.start)
    attrs = span.attributes
    attrs["glassbox.run.status"] = run.status.value
    if run.end_reason:
        attrs["glassbox.run.end_reason"] = run.end_reason
    if run.agent_verdict:
        attrs["glassbox.agent_verdict"] = run.agent_verdict
    attrs["glassbox.run.steps"] = run.steps
    attrs["glassbox.run.errors"] = run.errors
    if run.summary.mean_confidence is not None:
        attrs["glassbox.run.mean_confidence"] = run.summary.mean_confidence
    span.events.extend(check_event(check, span.end) for check in run.checks)
    if run.status.value == "failed":
        span.status, span.status_message = "error", run.end_reason or "failed"
        attrs["error.type"] = "task_failed" if run.checks else "_OTHER"
    elif run.status.value == "succeeded":
        span.status = "ok"
    return span


def check_event(check: CheckResult, at: datetime) -> SpanEvent:
    return evaluation_event(
        f"check.{check.type}",
        at,
        value=1.0 if check.passed else 0.0,
        label="pass" if check.passed else "fail",
        explanation=f"{check.description}: {check.detail}",
    )


def evaluation_event(
    name: str, at: datetime, *, value: float | None = None, label: str | None = None, explanation: str | None = None
) -> SpanEvent:
    attrs: Attributes = {"gen_ai.evaluation.name": name}
    if value is not None:
        attrs["gen_ai.evaluation.score.value"] = float(value)
    if label is not None:
        attrs["gen_ai.evaluation.score.label"] = label
    if explanation:
        attrs["gen_ai.evaluation.explanation"] = explanation
    return SpanEvent(name="gen_ai.evaluation.result", time=at, attributes=attrs)


def workflow_span(name: str, eval_id: str, start: datetime, end: datetime | None = None) -> SpanDesc:
    """An eval's ``invoke_workflow`` span: the runs of its episodes are its children."""
    attrs: Attributes = {
        "gen_ai.operation.name": "invoke_workflow",
        "gen_ai.workflow.name": name,
        "gen_ai.conversation.id": eval_id,
        "glassbox.eval.id": eval_id,
    }
    return SpanDesc(key="workflow", parent=None, name=f"invoke_workflow {name}", start=_utc(start), end=end, attributes=attrs)


# -- a step ---------------------------------------------------------------------------------------------------


def step_spans(
    run: RunRecord,
    step: StepRecord,
    conv: Conventions,
    *,
    media: MediaRef | None = None,
    verdict: ConsistencyCheck | None = None,
    labels: Sequence[CurrentLabel] = (),
) -> list[SpanDesc]:
    """The step span, the model call's ``chat`` span (model steps only) and the action's ``execute_tool`` span.

    ``verdict``: the reasoning-vs-screen verdict to report (OCR's, when a recorded run has it; else the step's).
    ``labels``: people's verdicts on this step (``glassbox label`` or the viewer)."""
    t = step.timings
    start = _utc(step.started_at)
    think_start = start + _ms(t.perceive_ms)
    think_end = think_start + _ms(t.think_ms)
    waited = step.gate.waited_ms if step.gate is not None else 0.0
    act_start = think_end + _ms(waited)
    act_end = act_start + _ms(t.act_ms)
    end = max(act_end + _ms(t.record_ms), act_end)
    key = f"step-{step.index}"
    by_model = _decided_by_model(run, step)

    attrs: Attributes = {
        "glassbox.step.index": step.index,
        "glassbox.step.outcome": step.outcome,
        "glassbox.step.policy": step.policy,
        "glassbox.screenshot": (media or MediaRef()).file(run.run_id, step.screenshot),
        "glassbox.timings.perceive_ms": t.perceive_ms,
        "glassbox.timings.think_ms": t.think_ms,
        "glassbox.timings.act_ms": t.act_ms,
    }
    if step.url:
        attrs["glassbox.page.url"] = step.url
    if step.title:
        attrs["glassbox.page.title"] = step.title
    if step.action is not None:
        attrs["glassbox.action"] = step.action.action
    _confidence_attrs(attrs, step)
    _coordinate_attrs(attrs, step)
    _attention_attrs(attrs, step)
    if step.replay is not None:
        attrs["glassbox.replay.decision"] = step.replay.decision
        attrs["glassbox.replay.source_run"] = step.replay.source_run
        for name in ("screen_diff", "region_diff"):
            value = getattr(step.replay, name)
            if value is not None:
                attrs[f"glassbox.replay.{name}"] = value
        if step.replay.url_matches is not None:
            attrs["glassbox.replay.url_matches"] = step.replay.url_matches
    if step.gate is not None:
        attrs["glassbox.gate.who"] = step.gate.who
        attrs["glassbox.gate.decision"] = step.gate.decision
        attrs["glassbox.gate.waited_ms"] = step.gate.waited_ms
    if step.error_kind is not None:
        attrs["error.type"] = step.error_kind.value
    events: list[SpanEvent] = []
    if verdict is None:
        verdict = step.consistency
    if verdict is not None:
        attrs["glassbox.consistency.verdict"] = verdict.verdict
        events.append(
            evaluation_event(
                "glassbox.consistency",
                end,
                value={"match": 1.0, "mismatch": 0.0}.get(verdict.verdict),
                label=verdict.verdict,
                explanation=verdict.reason,
            )
        )
    for current in labels:
        label = current.label
        if current.deleted or label.step != step.index:
            continue
        explanation = label.note or None
        if label.correction:
            explanation = (
                (explanation + "; " if explanation else "") + "correction: " + json.dumps(label.correction, sort_keys=True)
            )
        events.append(
            evaluation_event(
                "glassbox.label",
                max(_utc(label.created_at), end),
                value=1.0 if label.verdict == "correct" else 0.0,
                label=label.verdict,
                explanation=explanation,
            )
        )
    spans = [
        SpanDesc(
            key=key,
            parent="run",
            name="glassbox.step",
            start=start,
            end=end,
            attributes=attrs,
            events=events,
            status="error" if step.outcome == "error" else "unset",
            status_message=step.error if step.outcome == "error" else None,
        )
    ]
    if by_model:
        spans.append(_chat_span(run, step, conv, key, think_start, think_end, media))
    for call_index, call in enumerate(_calls(step)):
        spans.append(_tool_span(run, step, conv, key, call_index, call, act_start, act_end))
    return spans


def _decided_by_model(run: RunRecord, step: StepRecord) -> bool:
    """A model decided the step (not a script, a replayed action or a person's correction)."""
    if step.replay is not None and step.replay.decision in ("replayed", "diverged", "corrected"):
        return False
    return step.policy in ("qwen3vl", "openai") or (step.model is not None and step.policy != "script")


def _calls(step: StepRecord) -> list[ToolCall]:
    """The tool call the step ran (a step runs one call of its output); none when the output held none."""
    if step.tool_calls:
        return step.tool_calls[:1]
    if step.action is not None:  # a script or replayed step: the action itself is the call
        return [ToolCall(name=TOOL_NAME, arguments=step.action.model_dump(mode="json"))]
    return []


def _chat_span(
    run: RunRecord,
    step: StepRecord,
    conv: Conventions,
    parent: str,
    start: datetime,
    end: datetime,
    media: MediaRef | None,
) -> SpanDesc:
    model = step.model or run.model or "unknown"
    attrs: Attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
    _provider_attrs(attrs, step.policy, conv)
    _server_attrs(attrs, run)
    sampling = run.task.get("policy") if isinstance(run.task.get("policy"), dict) else {}
    for source, name in (
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("top_k", "gen_ai.request.top_k"),
        ("max_new_tokens", "gen_ai.request.max_tokens"),
        ("seed", "gen_ai.request.seed"),
    ):
        value = sampling.get(source) if isinstance(sampling, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attrs[name] = value
    counts = step.token_counts
    if counts is not None:
        if counts.prompt is not None:
            attrs["gen_ai.usage.input_tokens"] = counts.prompt
        if counts.output is not None:
            attrs["gen_ai.usage.output_tokens"] = counts.output
        if counts.image is not None:
            attrs["gen_ai.usage.image.input_tokens" if conv.latest else "glassbox.usage.image_tokens"] = counts.image
        if counts.reasoning is not None:
            attrs["gen_ai.usage.reasoning.output_tokens"] = counts.reasoning
        if counts.finish_reason:
            attrs["gen_ai.response.finish_reasons"] = [counts.finish_reason]
    first = _time_to_first_token_s(step)
    if first is not None:
        attrs["gen_ai.response.time_to_first_chunk"] = first
    if step.decoding is not None:
        attrs["glassbox.decoding.path"] = step.decoding.path
        attrs["glassbox.decoding.prefix_reused"] = step.decoding.prefix_reused
    if step.cache_hit is not None:
        attrs["glassbox.cache_hit"] = step.cache_hit
    if step.error_kind is not None and step.error_kind.value in ("parse", "backend"):
        attrs["error.type"] = step.error_kind.value
    if conv.capture_content:
        _content_attrs(attrs, run, step, media)
    failed = step.error_kind is not None and step.error_kind.value in ("parse", "backend")
    return SpanDesc(
        key=f"{parent}/chat",
        parent=parent,
        name=f"chat {model}",
        kind="client" if step.policy == "openai" else "internal",
        start=start,
        end=max(end, start),
        attributes=attrs,
        status="error" if failed else "unset",
        status_message=step.error if failed else None,
    )


def _tool_span(
    run: RunRecord,
    step: StepRecord,
    conv: Conventions,
    parent: str,
    call_index: int,
    call: ToolCall,
    start: datetime,
    end: datetime,
) -> SpanDesc:
    attrs: Attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.name,
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": tool_call_id(run.run_id, step),
        "glassbox.step.outcome": step.outcome,
    }
    action = step.action.action if step.action is not None else call.arguments.get("action")
    if isinstance(action, str):
        attrs["glassbox.action"] = action
    failed = step.outcome == "error" and step.error_kind is not None and step.error_kind.value in ("action", "executor")
    if failed:
        assert step.error_kind is not None
        attrs["error.type"] = step.error_kind.value
    if conv.capture_content:
        attrs["gen_ai.tool.call.arguments"] = json.dumps(call.arguments, ensure_ascii=False, sort_keys=True)
        result = {"outcome": step.outcome, **({"error": step.error} if step.error else {})}
        attrs["gen_ai.tool.call.result"] = json.dumps(result, ensure_ascii=False)
    return SpanDesc(
        key=f"{parent}/tool-{call_index}",
        parent=parent,
        name=f"execute_tool {call.name}",
        start=start,
        end=max(end, start),
        attributes=attrs,
        status="error" if failed else "unset",
        status_message=step.error if failed else None,
    )


def tool_call_id(run_id: str, step: StepRecord) -> str:
    """Glassbox's tool calls carry no id of their own; this one is stable across exports of the same run."""
    return f"{run_id}/{step.index}/{step.call_index}"


# -- attribute groups -----------------------------------------------------------------------------------------


def _provider_attrs(attrs: Attributes, policy: str, conv: Conventions) -> None:
    name = provider(policy)
    if name is None:
        return
    attrs["gen_ai.provider.name"] = name
    if not conv.latest:
        attrs["gen_ai.system"] = name  # the pre-1.37 name, which some tools still read


def _server_attrs(attrs: Attributes, run: RunRecord) -> None:
    if run.policy != "openai":
        return
    policy = run.task.get("policy")
    base = policy.get("base_url") if isinstance(policy, dict) else None
    if not isinstance(base, str):
        return
    try:
        parts = urlsplit(base)
        port = parts.port
    except ValueError:
        return
    if parts.hostname:
        attrs["server.address"] = parts.hostname
        attrs["server.port"] = port or (443 if parts.scheme == "https" else 80)


def _confidence_attrs(attrs: Attributes, step: StepRecord) -> None:
    if step.confidence is not None:
        attrs["glassbox.confidence"] = step.confidence
    elif step.confidence_reason:
        attrs["glassbox.confidence.reason"] = step.confidence_reason
    for part, value in step.confidence_parts.items():
        attrs[f"glassbox.confidence.{part}"] = value


def _coordinate_attrs(attrs: Attributes, step: StepRecord) -> None:
    audit = step.coordinate
    if audit is None:
        return
    attrs["glassbox.coordinate.model"] = [float(v) for v in audit.model]
    attrs["glassbox.coordinate.mode"] = str(getattr(audit.mode, "value", audit.mode))
    attrs["glassbox.coordinate.css"] = [int(v) for v in audit.css]
    attrs["glassbox.coordinate.clamped"] = audit.clamped
    attrs["glassbox.coordinate.device_scale_factor"] = audit.device_scale_factor


def _attention_attrs(attrs: Attributes, step: StepRecord) -> None:
    """The action's deepest attention map: where it peaked, and whether that is inside the evidence box."""
    if not step.attention:
        return
    ref = next((a for a in step.attention if a.target == "action" and a.group == "deep"), step.attention[0])
    attrs["glassbox.attention.key"] = ref.key
    attrs["glassbox.attention.peak_px"] = [int(v) for v in ref.peak_px]
    attrs["glassbox.attention.concentration"] = ref.concentration
    if ref.peak_to_click_px is not None:
        attrs["glassbox.attention.peak_to_click_px"] = ref.peak_to_click_px
    if ref.mass_in_evidence is not None:
        attrs["glassbox.attention.mass_in_evidence"] = ref.mass_in_evidence
    if step.evidence is not None:
        left, top, right, bottom = step.evidence.box
        x, y = ref.peak_px
        attrs["glassbox.attention.peak_in_box"] = left <= x <= right and top <= y <= bottom


def _time_to_first_token_s(step: StepRecord) -> float | None:
    """A local model's fast path times its vision encoder and prefill: together, the wait for the first token."""
    d = step.decoding
    if d is None or d.prefill_ms is None:
        return None
    return round(((d.vision_ms or 0.0) + d.prefill_ms) / 1000, 6)


def _content_attrs(attrs: Attributes, run: RunRecord, step: StepRecord, media: MediaRef | None) -> None:
    """The prompt, reasoning and output as the conventions' message attributes (JSON); images by reference."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in step.prompt or []:
        parts = _parts(message, run, media)
        if message.role == "system":
            system.extend(parts)
        else:
            messages.append({"role": message.role, "parts": parts})
    if system:
        attrs["gen_ai.system_instructions"] = json.dumps(system, ensure_ascii=False)
    if messages:
        attrs["gen_ai.input.messages"] = json.dumps(messages, ensure_ascii=False)
    out: list[dict[str, Any]] = []
    if step.reasoning:
        out.append({"type": "reasoning", "content": step.reasoning})
    for call in step.tool_calls:
        out.append({"type": "tool_call", "id": tool_call_id(run.run_id, step), "name": call.name, "arguments": call.arguments})
    if not step.tool_calls and step.raw_output:
        out.append({"type": "text", "content": step.raw_output})
    if out:
        finish = step.token_counts.finish_reason if step.token_counts and step.token_counts.finish_reason else "stop"
        attrs["gen_ai.output.messages"] = json.dumps(
            [{"role": "assistant", "parts": out, "finish_reason": finish}], ensure_ascii=False
        )


def _parts(message: PromptMessage, run: RunRecord, media: MediaRef | None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for image in message.images:  # by reference only: never the bytes
        parts.append({"type": "uri", "modality": "image", "uri": (media or MediaRef()).file(run.run_id, image)})
    if message.text:
        parts.append({"type": "text", "content": message.text})
    return parts


# -- scrubbing and small helpers ------------------------------------------------------------------------------


def scrub_span(span: SpanDesc, scrubber: Scrubber) -> SpanDesc:
    """Mask every secret in the span's name, attributes, events and status (records are masked already; this
    is the last line for anything a future field adds). A no-op without secrets."""
    if not scrubber:
        return span
    span.name = scrubber.scrub_text(span.name)
    span.attributes = {k: _scrub_value(v, scrubber) for k, v in span.attributes.items()}
    for event in span.events:
        event.attributes = {k: _scrub_value(v, scrubber) for k, v in event.attributes.items()}
    if span.status_message:
        span.status_message = scrubber.scrub_text(span.status_message)
    return span


def _scrub_value(value: AttrValue, scrubber: Scrubber) -> AttrValue:
    if isinstance(value, str):
        return scrubber.scrub_text(value)
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [scrubber.scrub_text(str(v)) for v in value]
    return value


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _ms(value: float | None) -> timedelta:
    return timedelta(milliseconds=max(0.0, value or 0.0))
