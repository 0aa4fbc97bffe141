"""Send span descriptions (:mod:`tracer.otel_spans`) through the OpenTelemetry SDK and its OTLP exporter.

    session = OtelSession.start()                     # endpoint, headers, protocol: OTEL_EXPORTER_OTLP_* only
    trace = session.trace(parent=None)                # one run; ``parent``: a W3C traceparent (an eval's span)
    trace.emit(run_span(record, conv))                # open: it is the parent of what follows
    trace.emit(...step spans...)                      # ended at once, with their recorded times
    trace.emit(finished_run_span)                     # ends the open span
    session.close()                                   # at most CLOSE_TIMEOUT_S, collector up or down

A private ``TracerProvider`` (``service.name=glassbox`` unless ``OTEL_SERVICE_NAME`` says otherwise): a host
application's global tracing is left as it is. The SDK is imported here only, and only when exporting.

Exporting never breaks a run: a collector that is down or refuses costs one warning (the first failed export,
through ``warn``), the SDK's own error lines are kept off the terminal, and closing waits at most
``CLOSE_TIMEOUT_S`` (each request is given at most ``REQUEST_TIMEOUT_S``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tools.errors import UsageError
from tracer.logs import get_logger
from tracer.otel_spans import SpanDesc

log = get_logger("glassbox.otel")

REQUEST_TIMEOUT_S = 1.0  # one export request (retries included); the SDK's default is 10 s
CLOSE_TIMEOUT_S = 1.5  # closing a session: the last batch's export and the exporter's shutdown together
SCHEDULE_DELAY_MS = 500  # how long finished spans wait to be batched (the SDK's default: 5 s)
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


class OtelUnavailable(UsageError, RuntimeError):
    """Export was asked for but cannot be set up (the SDK is missing, an unknown protocol, a limit that is not a
    whole number)."""


def export_requested(flag: bool, env: Mapping[str, str] | None = None) -> bool:
    """``--otel`` given, or an OTLP endpoint set in the environment; never with ``OTEL_SDK_DISABLED=true``."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return flag or any(env.get(name, "").strip() for name in ENDPOINT_VARS)


def otel_variables(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The OpenTelemetry variables (``OTEL_*``) of ``env``: what another process needs to export as this one does
    (an eval's workers, which on a Ray cluster do not share this process's environment)."""
    env = os.environ if env is None else env
    return {name: value for name, value in env.items() if name.startswith("OTEL_")}


def protocol(env: Mapping[str, str] | None = None) -> str:
    """``http/protobuf`` (the default) or ``grpc``, from the standard variables (the traces one first)."""
    env = os.environ if env is None else env
    value = next((env[name].strip() for name in PROTOCOL_VARS if env.get(name, "").strip()), "http/protobuf")
    if value not in ("http/protobuf", "grpc"):
        raise OtelUnavailable(f"OTLP protocol {value!r} is not supported; use http/protobuf or grpc")
    return value


HEADER_VARS = ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
# name=value, as the OTLP exporter specification has it (the SDK's liberal form: a value may hold spaces).
_HEADER = re.compile(
    r"[ \t]*[\x21\x23-\x27\x2a\x2b\x2d\x2e\x30-\x39\x41-\x5a\x5e-\x7a\x7c\x7e]+[ \t]*=[ \t]*"
    r"[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*[ \t]*"
)


def check_settings(env: Mapping[str, str] | None = None) -> None:
    """The OTLP variables make sense, or :class:`OtelUnavailable` (a usage error) says which does not: an
    endpoint without its scheme (``localhost:4318``), another scheme, a port that is not a number, a header
    entry that is not ``name=value`` (the SDK would print the entry, key and all, and drop it). A header's value
    is never repeated in the message: it is usually a key."""
    env = os.environ if env is None else env
    proto = protocol(env)
    for name in ENDPOINT_VARS:
        raw = env.get(name, "").strip()
        if not raw:
            continue
        shown = re.sub(r"//[^/@]*@", "//", raw)[:200]  # a user:password in it is not repeated
        try:
            parts = urlsplit(raw)
            port = parts.port  # raises for a port that is not a number
        except ValueError:
            raise OtelUnavailable(f"{name} {shown!r} is not a URL (its port must be a number)") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            if proto == "grpc" and not parts.netloc and port is None and ":" in raw:
                continue  # the gRPC exporter takes host:port as it is
            raise OtelUnavailable(
                f"{name} {shown!r} is not an http:// or https:// URL; e.g. http://localhost:{4317 if proto == 'grpc' else 4318}"
            )
        break  # the first one set is the one used
    for name in HEADER_VARS:
        raw = env.get(name, "")
        for i, entry in enumerate(re.split(r"[ \t]*,[ \t]*", raw), start=1):
            if entry.strip() and not _HEADER.fullmatch(entry.strip()):
                raise OtelUnavailable(
                    f"{name}: entry {i} is not name=value (comma-separated, the value URL-encoded); "
                    "its text is not shown here, it may hold a key"
                )


def endpoint_for_humans(env: Mapping[str, str] | None = None) -> str:
    """Where spans go, for messages: the configured endpoint without any user:password, or the default."""
    env = os.environ if env is None else env
    raw = next((env[name].strip() for name in ENDPOINT_VARS if env.get(name, "").strip()), "")
    if not raw:
        return "http://localhost:4317" if protocol(env) == "grpc" else "http://localhost:4318"  # as it is set
    try:
        parts = urlsplit(raw)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "the configured endpoint"


# -- keeping the SDK's error lines off the terminal -----------------------------------------------------------

_quiet = threading.local()


class _QuietWhileExporting(logging.Filter):
    """Drops the exporter's log records while *our* exporter is at work in this thread (a host application's
    own exports still log as they always did)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "active", False)


_FILTER = _QuietWhileExporting()
_filtered: set[str] = set()


def _quiet_sdk_loggers() -> None:
    names = [n for n in list(logging.Logger.manager.loggerDict) if n.startswith(("opentelemetry.exporter", "opentelemetry.sdk"))]
    for name in names:
        if name not in _filtered:
            logging.getLogger(name).addFilter(_FILTER)
            _filtered.add(name)


# -- the session ----------------------------------------------------------------------------------------------


class OtelSession:
    """One exporter and private tracer provider (per ``glassbox`` command, or per eval worker attempt)."""

    def __init__(self, provider: Any, processor: Any, tracer: Any, exporter: "_GuardedExporter") -> None:
        self._provider, self._processor, self._tracer, self._exporter = provider, processor, tracer, exporter
        self._closed = False

    @classmethod
    def start(cls, *, warn: Callable[[str], None] | None = None) -> "OtelSession":
        """Set up from the environment (the OTLP exporter reads its endpoint and headers there itself)."""
        env = os.environ
        check_settings(env)
        proto = protocol(env)
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            if proto == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

                inner: Any = GrpcExporter(timeout=_request_timeout(env))
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

                inner = HttpExporter(timeout=_request_timeout(env))
        except ImportError as exc:
            raise OtelUnavailable(
                f"OpenTelemetry export needs the otel extra ({exc}); install it with pip install -e '.[otel]'"
            ) from None
        _quiet_sdk_loggers()
        where = endpoint_for_humans(env)
        exporter = _GuardedExporter(inner, where, warn or (lambda message: log.warning(message)))
        service = env.get("OTEL_SERVICE_NAME", "").strip() or "glassbox"
        resource = Resource.create({"service.name": service})
        provider = TracerProvider(resource=resource, span_limits=_span_limits(env))
        processor = BatchSpanProcessor(exporter, schedule_delay_millis=SCHEDULE_DELAY_MS)  # type: ignore[arg-type]  # duck-typed
        provider.add_span_processor(processor)
        from tracer import __name__ as scope

        return cls(provider, processor, provider.get_tracer(scope), exporter)

    @property
    def failed(self) -> bool:
        """An export failed (the warning was given)."""
        return self._exporter.warned

    def trace(self, parent: str | None = None) -> "SpanTree":
        """A tree of spans (one run, or an eval's workflow) under ``parent``, a W3C ``traceparent`` (None: a new trace)."""
        return SpanTree(self._tracer, parent)

    def flush(self) -> None:
        """Send every finished span now, waiting for the collector (each request at most ``REQUEST_TIMEOUT_S``):
        for ``glassbox export otel``, where delivering is the point. A run only closes (bounded)."""
        try:
            self._processor.force_flush()
        except Exception as exc:  # noqa: BLE001  # flushing never breaks the command
            log.debug("flushing the OpenTelemetry exporter failed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Send what is left and stop, within ``CLOSE_TIMEOUT_S`` whatever the collector does."""
        if self._closed:
            return
        self._closed = True
        try:
            self._processor.shutdown(timeout_millis=int(CLOSE_TIMEOUT_S * 1000))
        except TypeError:  # an SDK whose processor takes no timeout
            self._processor.shutdown()
        except Exception as exc:  # noqa: BLE001  # closing never breaks the command
            log.debug("closing the OpenTelemetry exporter failed", error=f"{type(exc).__name__}: {exc}")


class SpanTree:
    """Spans of one tree by their description's key; an open span (no end) is the parent of later ones."""

    def __init__(self, tracer: Any, parent: str | None) -> None:
        self._tracer = tracer
        self._parent = _context_from_traceparent(parent) if parent else None
        self._spans: dict[str, Any] = {}  # open spans
        self._ended: dict[str, Any] = {}  # the contexts of the last spans ended, for their children

    def emit(self, desc: SpanDesc) -> None:
        """Start the described span (or update the open one of the same key), ending it when it has an end."""
        from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

        span = self._spans.get(desc.key)
        if span is None:
            if desc.parent in self._spans:  # a new child of an open span: the spans ended before it have no more
                self._ended.clear()
            parent_span = (self._spans.get(desc.parent) or self._ended.get(desc.parent)) if desc.parent else None
            context = set_span_in_context(parent_span) if parent_span is not None else self._parent
            span = self._tracer.start_span(
                desc.name,
                context=context,
                kind=SpanKind.CLIENT if desc.kind == "client" else SpanKind.INTERNAL,
                attributes=desc.attributes,
                start_time=_ns(desc.start),
            )
            self._spans[desc.key] = span
        else:
            span.set_attributes(desc.attributes)
        for event in desc.events:
            span.add_event(event.name, attributes=event.attributes, timestamp=_ns(event.time))
        if desc.status == "error":
            span.set_status(Status(StatusCode.ERROR, desc.status_message))
        elif desc.status == "ok":
            span.set_status(Status(StatusCode.OK))
        if desc.end is not None:
            span.end(end_time=_ns(desc.end))
            if desc.parent is not None:  # ended: kept only as a parent for the spans emitted right after it
                from opentelemetry.trace import NonRecordingSpan

                self._spans.pop(desc.key, None)
                self._ended[desc.key] = NonRecordingSpan(span.get_span_context())

    def traceparent(self, key: str) -> str | None:
        """The W3C ``traceparent`` of an open span, to hand to another process (an eval's worker)."""
        from opentelemetry.trace import set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        span = self._spans.get(key)
        if span is None:
            return None
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, context=set_span_in_context(span))
        return carrier.get("traceparent")


class _GuardedExporter:
    """Wraps the OTLP exporter: its failures become one warning, and its log lines stay quiet."""

    def __init__(self, inner: Any, where: str, warn: Callable[[str], None]) -> None:
        self._inner, self._where, self._warn = inner, where, warn
        self.warned = False
        self._lock = threading.Lock()

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        _quiet.active = True
        try:
            result = self._inner.export(spans)
        except Exception:  # noqa: BLE001  # an exporter bug must not reach the run either
            result = SpanExportResult.FAILURE
        finally:
            _quiet.active = False
        if result is not SpanExportResult.SUCCESS:
            self._failed()
        return result

    def _failed(self) -> None:
        with self._lock:
            if self.warned:
                return
            self.warned = True
        try:
            self._warn(f"OpenTelemetry export to {self._where} failed; the run goes on without it (no more warnings)")
        except Exception:  # noqa: BLE001, S110  # a broken console cannot break the export thread
            pass

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        _quiet.active = True
        try:
            try:
                self._inner.shutdown(timeout_millis=timeout_millis)
            except TypeError:
                self._inner.shutdown()
        except Exception:  # noqa: BLE001, S110  # shutting down never raises into the command
            pass
        finally:
            _quiet.active = False

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


MAX_ATTRIBUTE_CHARS = 256 * 1024  # a model's reasoning is tens of KB; a run folder's text can be 32 MB a step


def _span_limits(env: Mapping[str, str]) -> Any:
    """Attribute values cut at ``MAX_ATTRIBUTE_CHARS`` unless the standard variables set a limit (the SDK's own
    default is none): one crafted step's text must not make a request every collector refuses (gRPC's default
    message limit is 4 MB), which would drop the other spans sent with it."""
    from opentelemetry.sdk.trace import SpanLimits

    standard = ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT")
    chosen = any(env.get(name, "").strip() for name in standard)
    try:  # the SDK reads every OTEL_*_LIMIT variable itself, and says which one it could not
        return SpanLimits() if chosen else SpanLimits(max_span_attribute_length=MAX_ATTRIBUTE_CHARS)
    except ValueError as exc:
        raise OtelUnavailable(f"OpenTelemetry export cannot start: {exc}") from None


def _request_timeout(env: Mapping[str, str]) -> float:
    """The configured OTLP timeout (milliseconds, as the specification says), capped at ``REQUEST_TIMEOUT_S``."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        try:
            value = float(env.get(name, "") or "nan") / 1000
        except ValueError:
            continue
        if value == value and value > 0:
            return min(value, REQUEST_TIMEOUT_S)
    return REQUEST_TIMEOUT_S


def _context_from_traceparent(traceparent: str) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def _ns(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000_000)
