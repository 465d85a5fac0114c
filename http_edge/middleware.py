"""Pure ASGI middleware: the request id on every response, a last guard against crashes, and
each request's telemetry: its log context and access line, metrics and server span."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import grpc
from opentelemetry.trace import SpanKind

from http_edge.errors import edge_error
from http_edge.responses import is_openai_path, send_error
from http_edge.types import Message, Receive, Scope, Send
from observability import context, tracing
from observability.metrics import metrics

logger = logging.getLogger("http_edge")
access_log = logging.getLogger("switchboard.access")

# A request whose client left before any response was sent, as nginx counts it.
_CLIENT_CLOSED = 499
_STREAM_TYPES = (b"text/event-stream", b"application/x-ndjson")

_MAX_REQUEST_ID = 128


class RequestIdMiddleware:
    """Reads or makes `x-request-id`, stores it in the scope and echoes it on the response.

    An exception escaping the app becomes a 500 in the surface's error shape (when nothing was
    sent yet) instead of reaching the server, so no request can take a worker down.

    Each request runs in a log context of its own and a server span (whose parent is the
    client's `traceparent`), is counted by door, route and status, and ends with one access
    log line. Streamed responses count as active streams while they are open.
    """

    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        request_id = _incoming_request_id(scope["headers"]) or secrets.token_hex(16)
        scope["request_id"] = request_id
        began = time.perf_counter()
        token = context.begin(request_id)
        parent = tracing.parent_from_headers(_text_headers(scope)) if tracing.enabled() else None
        attributes = {"http.request.method": scope["method"], tracing.REQUEST_ID: request_id}
        name = f"{scope['method']} {scope['path']}"
        with tracing.span(name, kind=SpanKind.SERVER, parent=parent, attributes=attributes) as span:
            outcome = _Outcome()
            try:
                await self._respond(scope, receive, send, request_id, outcome)
            finally:
                self._record(scope, began, outcome, span)
                context.end(token)

    async def _respond(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, outcome: _Outcome
    ) -> None:
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                outcome.status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
                if _content_type(message["headers"]).startswith(_STREAM_TYPES):
                    outcome.stream_door = _door(scope)
                    metrics().active_streams.labels(outcome.stream_door).inc()
            await send(message)

        if "\n" in scope["path"]:
            # No route holds a line feed, and the router's patterns would miss it into a
            # plain-text 404: it is answered here in the surface's error shape.
            error = edge_error(grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND", "Not Found")
            await send_error(scope, send_with_id, error)
            return
        try:
            await self.app(scope, receive, send_with_id)  # type: ignore[operator]
        except Exception:
            logger.exception("request %s failed", request_id)
            if not started:
                error = edge_error(grpc.StatusCode.INTERNAL, 500, "INTERNAL", "internal error")
                await send_error(scope, send_with_id, error)

    @staticmethod
    def _record(scope: Scope, began: float, outcome: _Outcome, span: Any) -> None:
        seconds = time.perf_counter() - began
        door, route = _door(scope), _route(scope)
        status = outcome.status or _CLIENT_CLOSED
        if outcome.stream_door is not None:
            metrics().active_streams.labels(outcome.stream_door).dec()
        metrics().requests.labels(door, route, str(status)).inc()
        metrics().request_seconds.labels(door, route).observe(seconds)
        context.bind(route=route)
        access_log.info(
            "%s %s %d",
            scope["method"],
            route,
            status,
            extra={
                "door": door,
                "method": scope["method"],
                "status": status,
                "latency_ms": round(seconds * 1000, 2),
            },
        )
        if span is not None:
            span.update_name(f"{scope['method']} {route}")
            tracing.set_attributes(
                span, **{"http.route": route, "http.response.status_code": status}
            )
            if status >= 500:
                tracing.fail(span, str(status))


class _Outcome:
    """What a request's response was: its status, and the door of its stream if it streamed."""

    __slots__ = ("status", "stream_door")

    def __init__(self) -> None:
        self.status = 0
        self.stream_door: str | None = None


def _door(scope: Scope) -> str:
    """`openai`, `native` (a transcoded RPC) or `http` (probes, documents, unknown paths)."""
    if is_openai_path(scope["path"]):
        return "openai"
    request = context.current()
    if request is not None and request.route is not None and request.route.startswith("/"):
        return "native"
    return "http"


def _route(scope: Scope) -> str:
    """A bounded name of what was asked: the RPC a transcoded route called, or the fixed path
    of the edge's own routes; never the raw path, which holds ids."""
    request = context.current()
    if request is not None and request.route is not None:
        return request.route
    matched = scope.get("route")
    path = getattr(matched, "path", "")
    return path if path else "unmatched"


def _content_type(headers: Any) -> bytes:
    for name, value in headers:
        if name.lower() == b"content-type":
            return bytes(value)
    return b""


def _text_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def _incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-request-id":
            # Forwarded as gRPC metadata, so only short printable ASCII is taken as given.
            if 0 < len(value) <= _MAX_REQUEST_ID and value.isascii():
                text = value.decode()
                if text.isprintable():
                    return text
            return None
    return None
