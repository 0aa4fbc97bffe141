"""A real OTLP/HTTP trace receiver on 127.0.0.1 (an OS-assigned port) for the export tests: it decodes each request
with the official ``opentelemetry-proto`` messages, keeps the raw bytes (to look for secrets in everything sent)
and answers as a collector does. Also a gRPC receiver on the proto package's service stubs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.servers import LocalServer, QuietHandler

KINDS = {Span.SPAN_KIND_INTERNAL: "internal", Span.SPAN_KIND_CLIENT: "client", Span.SPAN_KIND_SERVER: "server"}


@dataclass
class ReceivedSpan:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: int  # 0 unset, 1 ok, 2 error
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""


def value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which) if which else None


def decode(payload: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(payload)
    spans = []
    for rs in request.resource_spans:
        resource = {kv.key: value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append(
                    ReceivedSpan(
                        name=s.name,
                        kind=KINDS.get(s.kind, str(s.kind)),
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        attributes={kv.key: value(kv.value) for kv in s.attributes},
                        events=[(e.name, {kv.key: value(kv.value) for kv in e.attributes}) for e in s.events],
                        status=s.status.code,
                        resource=resource,
                        scope=ss.scope.name,
                    )
                )
    return spans


class OtlpHttpReceiver(LocalServer):
    """``with OtlpHttpReceiver() as r: ... r.env`` (the variables that point an exporter here), ``r.spans()``."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.read_body()
                with outer._lock:
                    outer.payloads.append(body)
                    outer.paths.append(self.path)
                    outer.headers.append(dict(self.headers))
                self.reply(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

        super().__init__(Handler)

    @property
    def env(self) -> dict[str, str]:
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.url, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            payloads = list(self.payloads)
        return [s for p in payloads for s in decode(p)]

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(self.payloads)


def tree(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    """Children by parent span id."""
    children: dict[str, list[ReceivedSpan]] = {}
    for s in spans:
        children.setdefault(s.parent_id, []).append(s)
    for kids in children.values():
        kids.sort(key=lambda s: (s.start_ns, s.name))
    return children
