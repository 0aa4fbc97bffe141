"""The record-to-span mapping (tracer.otel_spans) on its own: which spans a step gets, the names under each
``OTEL_SEMCONV_STABILITY_OPT_IN``, Glassbox's figures, content only on request, and the scrubber over all of it.
Plus the SDK session against a real gRPC receiver (the official proto package's service stubs)."""

from __future__ import annotations

import json
import os
from concurrent import futures
from datetime import datetime, timedelta, timezone

import pytest

from tools.actions import ToolCall, parse_tool_call
from tools.coords import CoordinateAudit, CoordinateMode
from tracer.otel_sdk import (
    MAX_ATTRIBUTE_CHARS,
    OtelSession,
    OtelUnavailable,
    _request_timeout,
    _span_limits,
    endpoint_for_humans,
    export_requested,
    protocol,
)
from tracer.otel_spans import Conventions, MediaRef, finish_run_span, run_span, scrub_span, step_spans, workflow_span
from tracer.schema import (
    AttentionRef,
    CheckResult,
    DecodingInfo,
    Evidence,
    PromptMessage,
    ReplayInfo,
    RunRecord,
    RunStatus,
    StepErrorKind,
    StepRecord,
    StepTimings,
    TokenCounts,
)
from tracer.secrets import Scrubber

T0 = datetime(2026, 11, 20, 8, 30, tzinfo=timezone.utc)
SECRET = "Xq7-tulip-4821"


def run_record(policy: str = "qwen3vl", model: str | None = "Qwen/Qwen3-VL-2B", **update: object) -> RunRecord:
    task = {"policy": {"name": policy, "base_url": "http://10.0.0.7:8000/v1", "temperature": 0.6, "seed": 7}}
    fields: dict[str, object] = {
        "run_id": "20261120-083000-shop-abc123",
        "task_name": "shop",
        "task_file": None,
        "task": task,
        "policy": policy,
        "model": model,
        "status": RunStatus.running,
        "started_at": T0,
        "pid": 1,
        "host": "h",
    }
    return RunRecord.model_validate({**fields, **update})


def model_step(index: int = 3, **update: object) -> StepRecord:
    call = ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [500, 462]})
    base = dict(
        index=index,
        started_at=T0 + timedelta(seconds=10),
        timings=StepTimings(perceive_ms=100, think_ms=2000, act_ms=300, record_ms=5),
        url="http://127.0.0.1:8000/admin",
        title="Admin",
        screenshot=f"steps/{index:04d}/screenshot.png",
        screenshot_size=(1280, 800),
        policy="qwen3vl",
        model="Qwen/Qwen3-VL-2B",
        prompt=[
            PromptMessage(role="system", text="You are a GUI agent."),
            PromptMessage(role="user", text="Sign in.", images=[f"steps/{index:04d}/screenshot.png"]),
        ],
        raw_output="<think>I click Sign in.</think><tool_call>...</tool_call>",
        reasoning="I click Sign in.",
        tool_calls=[call],
        action=parse_tool_call(call),
        coordinate=CoordinateAudit(
            model=(500.0, 462.0),
            mode=CoordinateMode.relative_1000,
            divisor=1000.0,
            resized_size=None,
            screenshot_size=(1280, 800),
            device_scale_factor=1.0,
            css=(640, 369),
            clamped=False,
        ),
        evidence=Evidence(crop="steps/0003/evidence.webp", box=(600, 340, 680, 400), point=(640, 369), sized_by="element"),
        attention=[
            AttentionRef(
                key="action/deep",
                target="action",
                group="deep",
                path="steps/0003/attention.npz",
                peak_px=(650, 372),
                concentration=0.4,
                entropy=2.0,
                peak_to_click_px=10.4,
                mass_in_evidence=0.62,
            )
        ],
        confidence=0.91,
        confidence_parts={"action": 0.95, "coordinate": 0.88},
        token_counts=TokenCounts(prompt=1500, output=60, image=1100, reasoning=40, finish_reason="stop"),
        decoding=DecodingInfo(path="fast", prompt_tokens=1500, prefilled=300, vision_ms=120.0, prefill_ms=80.0),
        outcome="ok",
    )
    base.update(update)
    return StepRecord(**base)  # type: ignore[arg-type]


def by_name(spans):
    return {s.name.split()[0]: s for s in spans}


def test_a_model_step_has_a_step_a_chat_and_a_tool_span_with_the_default_names():
    run = run_record()
    spans = step_spans(run, model_step(), Conventions())
    assert [s.name for s in spans] == ["glassbox.step", "chat Qwen/Qwen3-VL-2B", "execute_tool computer_use"]
    step, chat, tool = spans
    assert (chat.parent, tool.parent, step.parent) == (step.key, step.key, "run")
    assert chat.kind == "internal"  # a local model: no server
    assert chat.start == T0 + timedelta(seconds=10, milliseconds=100) and chat.end == chat.start + timedelta(seconds=2)
    assert tool.start == chat.end and tool.end == tool.start + timedelta(milliseconds=300)
    a = chat.attributes
    assert a["gen_ai.provider.name"] == "transformers" and a["gen_ai.system"] == "transformers"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (1500, 60)
    assert a["gen_ai.usage.reasoning.output_tokens"] == 40 and a["gen_ai.response.time_to_first_chunk"] == 0.2
    assert a["glassbox.usage.image_tokens"] == 1100 and "gen_ai.usage.image.input_tokens" not in a  # not in v1.41.0
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.seed"]) == (0.6, 7)
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.system_instructions")) for k in a)
    s = step.attributes
    assert s["glassbox.confidence"] == 0.91 and s["glassbox.confidence.coordinate"] == 0.88
    assert s["glassbox.coordinate.css"] == [640, 369] and s["glassbox.coordinate.mode"] == "relative-1000"
    assert s["glassbox.attention.peak_in_box"] is True and s["glassbox.attention.mass_in_evidence"] == 0.62
    assert tool.attributes["gen_ai.tool.call.id"] == "20261120-083000-shop-abc123/3/0"
    assert tool.attributes["glassbox.action"] == "left_click" and "gen_ai.tool.call.arguments" not in tool.attributes


def test_latest_names_on_opt_in():
    conv = Conventions.from_env({"OTEL_SEMCONV_STABILITY_OPT_IN": "http, gen_ai_latest_experimental"})
    assert conv.latest and not conv.capture_content
    chat = by_name(step_spans(run_record(), model_step(), conv))["chat"].attributes
    assert chat["gen_ai.usage.reasoning.output_tokens"] == 40 and chat["gen_ai.response.time_to_first_chunk"] == 0.2
    assert chat["gen_ai.usage.image.input_tokens"] == 1100
    assert "gen_ai.system" not in chat and not any(k.startswith("glassbox.usage") for k in chat)
    assert Conventions.from_env({"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest"}).latest is False


def test_a_served_model_is_a_client_span_with_its_server():
    run = run_record(policy="openai", model="served")
    chat = by_name(step_spans(run, model_step(policy="openai", model="served", decoding=None), Conventions()))["chat"]
    assert chat.kind == "client" and chat.name == "chat served"
    assert (chat.attributes["server.address"], chat.attributes["server.port"]) == ("10.0.0.7", 8000)
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert "gen_ai.response.time_to_first_chunk" not in chat.attributes  # not known for a served model


def test_content_on_request_images_by_reference():
    conv = Conventions.from_env({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "TRUE"})
    media = MediaRef(viewer_url="http://127.0.0.1:8600/")
    spans = by_name(step_spans(run_record(), model_step(), conv, media=media))
    chat = spans["chat"].attributes
    assert json.loads(chat["gen_ai.system_instructions"]) == [{"type": "text", "content": "You are a GUI agent."}]
    [user] = json.loads(chat["gen_ai.input.messages"])
    assert user["parts"][0] == {
        "type": "uri",
        "modality": "image",
        "uri": "http://127.0.0.1:8600/runs/20261120-083000-shop-abc123/files/steps/0003/screenshot.png",
    }
    [out] = json.loads(chat["gen_ai.output.messages"])
    assert out["finish_reason"] == "stop" and out["parts"][0] == {"type": "reasoning", "content": "I click Sign in."}
    assert out["parts"][1]["type"] == "tool_call" and out["parts"][1]["arguments"]["action"] == "left_click"
    assert json.loads(spans["execute_tool"].attributes["gen_ai.tool.call.arguments"])["coordinate"] == [500, 462]
    assert spans["glassbox.step"].attributes["glassbox.screenshot"].endswith("/files/steps/0003/screenshot.png")


def test_steps_without_a_model_or_without_a_tool_call():
    run = run_record(policy="script", model=None)
    call = ToolCall(name="computer_use", arguments={"action": "terminate", "status": "success"})
    script = model_step(policy="script", model=None, prompt=None, raw_output=None, reasoning=None, tool_calls=[call],
                        action=parse_tool_call(call), token_counts=None, decoding=None)  # fmt: skip
    assert [s.name for s in step_spans(run, script, Conventions())] == ["glassbox.step", "execute_tool computer_use"]
    assert "gen_ai.provider.name" not in run_span(run, Conventions()).attributes

    parse_error = model_step(tool_calls=[], action=None, outcome="error", error="no tool call", error_kind=StepErrorKind.parse)
    spans = step_spans(run_record(), parse_error, Conventions())
    assert [s.name.split()[0] for s in spans] == ["glassbox.step", "chat"]  # nothing was called
    assert spans[0].status == "error" and spans[1].attributes["error.type"] == "parse"

    failed = model_step(outcome="error", error="no element at the point", error_kind=StepErrorKind.executor)
    tool = by_name(step_spans(run_record(), failed, Conventions()))["execute_tool"]
    assert tool.status == "error" and tool.attributes["error.type"] == "executor"

    replayed = model_step(replay=ReplayInfo(source_run="r0", source_step=3, decision="diverged", screen_diff=0.31))
    spans = by_name(step_spans(run_record(), replayed, Conventions()))
    assert "chat" not in spans  # the recorded action, not a model's decision
    assert spans["glassbox.step"].attributes["glassbox.replay.decision"] == "diverged"
    assert spans["glassbox.step"].attributes["glassbox.replay.screen_diff"] == 0.31


def test_the_run_span_ends_with_its_checks_and_workflow_span():
    run = run_record(status=RunStatus.failed, end_reason="checks failed", ended_at=T0 + timedelta(minutes=2))
    run.checks = [CheckResult(type="text_present", description="the message", passed=False, detail="not found")]
    span = finish_run_span(run_span(run, Conventions()), run)
    assert span.end == T0 + timedelta(minutes=2) and span.status == "error"
    [event] = span.events
    assert event.name == "gen_ai.evaluation.result"
    assert event.attributes == {
        "gen_ai.evaluation.name": "check.text_present",
        "gen_ai.evaluation.score.value": 0.0,
        "gen_ai.evaluation.score.label": "fail",
        "gen_ai.evaluation.explanation": "the message: not found",
    }
    flow = workflow_span("shop", "eval-1", T0)
    assert flow.name == "invoke_workflow shop" and flow.attributes["gen_ai.operation.name"] == "invoke_workflow"


def test_the_scrubber_runs_over_every_string():
    leaky = model_step(reasoning=f"the password is {SECRET}", url=f"http://127.0.0.1/?pw={SECRET}")
    conv = Conventions(capture_content=True)
    spans = [scrub_span(s, Scrubber([SECRET])) for s in step_spans(run_record(), leaky, conv)]
    text = json.dumps([s.model_dump(mode="json") for s in spans], ensure_ascii=False)
    assert SECRET not in text and "●●●●" in text


def test_settings_come_from_the_standard_variables():
    assert export_requested(False, {}) is False and export_requested(True, {}) is True
    assert export_requested(False, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}) is True
    assert export_requested(True, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}) is False
    assert protocol({}) == "http/protobuf"
    assert protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}) == "grpc"
    with pytest.raises(OtelUnavailable, match="http/json"):
        protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert (
        endpoint_for_humans({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://user:pw@otel.example:4318"}) == "https://otel.example:4318"
    )
    assert _request_timeout({"OTEL_EXPORTER_OTLP_TIMEOUT": "500"}) == 0.5
    assert _request_timeout({"OTEL_EXPORTER_OTLP_TIMEOUT": "30000"}) == 1.0


def test_grpc_export_to_a_real_grpc_receiver(monkeypatch):
    grpc = pytest.importorskip("grpc", reason="the gRPC exporter needs grpcio (the otel extra)")
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    from tests.tracer.otlp_receiver import decode

    got: list[bytes] = []

    class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802
            got.append(request.SerializeToString())
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        warnings: list[str] = []
        session = OtelSession.start(warn=warnings.append)
        run = run_record(status=RunStatus.succeeded, ended_at=T0 + timedelta(minutes=1))
        tree = session.trace()
        tree.emit(run_span(run, Conventions()))
        for span in step_spans(run, model_step(), Conventions()):
            tree.emit(span)
        tree.emit(finish_run_span(run_span(run, Conventions()), run))
        session.flush()  # delivered before the receiver stops, however long the first connection takes
        session.close()
    finally:
        server.stop(None)
    assert warnings == [] and not session.failed
    spans = [s for payload in got for s in decode(payload)]
    names = sorted(s.name for s in spans)
    assert names == ["chat Qwen/Qwen3-VL-2B", "execute_tool computer_use", "glassbox.step", "invoke_agent glassbox"]
    root = next(s for s in spans if not s.parent_id)
    step = next(s for s in spans if s.name == "glassbox.step")
    assert step.parent_id == root.span_id and root.start_ns == int(T0.timestamp() * 1e9)


@pytest.mark.parametrize(("name", "value"), [("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "abc"), ("OTEL_SPAN_EVENT_COUNT_LIMIT", "-5")])
def test_a_limit_that_is_not_a_whole_number_is_a_usage_error_naming_it(monkeypatch, name, value):
    assert _span_limits({}).max_span_attribute_length == MAX_ATTRIBUTE_CHARS
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "64")
    assert _span_limits(os.environ).max_span_attribute_length == 64
    monkeypatch.setenv(name, value)
    with pytest.raises(OtelUnavailable, match=f"{name} must be a non-negative integer"):
        OtelSession.start()
