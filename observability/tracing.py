"""OpenTelemetry traces, off unless configured: one trace per request, from the edge through
the core, retrieval, the model backend and each tool call.

When off, `span` is a no-op and nothing is propagated. When on, a client's W3C `traceparent`
becomes the parent of the request's trace, and upstream model and webhook calls carry the
current span's `traceparent` on to the servers they reach."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
REQUEST_ID = "switchboard.request_id"

_tracer: trace.Tracer | None = None
_provider: Any = None


def wanted(flag: bool) -> bool:
    """Whether to trace: `--otel`, or an OTLP endpoint in the environment."""
    return flag or bool(os.environ.get(ENDPOINT_ENV) or os.environ.get(TRACES_ENDPOINT_ENV))


def configure(exporter: Any = None, *, service_name: str = "switchboard") -> None:
    """Turns tracing on in this process: spans go to `exporter`, by default OTLP over HTTP to
    `OTEL_EXPORTER_OTLP_ENDPOINT` (or the exporter's default, http://localhost:4318), in
    batches; a given exporter gets each span as it ends."""
    global _tracer, _provider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _provider = provider
    _tracer = provider.get_tracer("switchboard")


def shutdown() -> None:
    """Sends the spans still buffered and stops tracing."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer, _provider = None, None


def enabled() -> bool:
    return _tracer is not None


# What `span` gives when tracing is off: one object for every block, no allocation.
_NO_SPAN: contextlib.AbstractContextManager[None] = contextlib.nullcontext()


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    parent: otel_context.Context | None = None,
) -> contextlib.AbstractContextManager[Span | None]:
    """A span current for the block (None when tracing is off); an exception escaping the
    block marks it failed."""
    if _tracer is None:
        return _NO_SPAN
    return _span(_tracer, name, kind, attributes, parent)


@contextlib.contextmanager
def _span(
    tracer: trace.Tracer,
    name: str,
    kind: SpanKind,
    attributes: Mapping[str, Any] | None,
    parent: otel_context.Context | None,
) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes={k: v for k, v in (attributes or {}).items() if v is not None},
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as error:
            current.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise


def set_attributes(current: Span | None, **attributes: Any) -> None:
    if current is not None:
        current.set_attributes({k: v for k, v in attributes.items() if v is not None})


def fail(current: Span | None, description: str) -> None:
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, description))


def parent_from_headers(headers: Mapping[str, str]) -> otel_context.Context | None:
    """The remote parent a request's `traceparent` names, when tracing is on."""
    if _tracer is None:
        return None
    return propagate.extract(headers)


def parent_from_metadata(metadata: Sequence[tuple[str, Any]] | None) -> otel_context.Context | None:
    """The remote parent of a gRPC call's `traceparent` metadata, when tracing is on."""
    if _tracer is None:
        return None
    carrier = {k: v for k, v in metadata or () if isinstance(v, str)}
    return propagate.extract(carrier)


def inject(headers: Any) -> None:
    """Adds the current span's `traceparent` to `headers` (a mutable mapping), when on."""
    if _tracer is not None:
        propagate.inject(headers)


def header_lines() -> bytes:
    """The current span's propagation headers as raw HTTP/1.1 header lines, when on."""
    if _tracer is None:
        return b""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in carrier.items())


async def inject_into_request(request: Any) -> None:
    """An httpx request hook: the current span's `traceparent` on every outgoing request."""
    if _tracer is not None:
        propagate.inject(request.headers)
