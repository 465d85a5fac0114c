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
        span_of_request = tracing.span("")
        if tracing.enabled():
            attributes = {"http.request.method": scope["method"], tracing.REQUEST_ID: request_id}
            span_of_request = tracing.span(
                f"{scope['method']} {scope['path']}",
                kind=SpanKind.SERVER,
                parent=tracing.parent_from_headers(_text_headers(scope)),
                attributes=attributes,
            )
        response = _Response(send, (b"x-request-id", request_id.encode()), scope)
        with span_of_request as span:
            try:
                if "\n" in scope["path"]:
                    # No route holds a line feed, and the router's patterns would miss it into
                    # a plain-text 404: it is answered here in the surface's error shape.
                    error = edge_error(grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND", "Not Found")
                    await send_error(scope, response, error)
                    return
                try:
                    await self.app(scope, receive, response)  # type: ignore[operator]
                except Exception:
                    logger.exception("request %s failed", request_id)
                    if not response.status:
                        error = edge_error(
                            grpc.StatusCode.INTERNAL, 500, "INTERNAL", "internal error"
                        )
                        await send_error(scope, response, error)
            finally:
                self._record(scope, began, response, span)
                context.end(token)

    @staticmethod
    def _record(scope: Scope, began: float, outcome: _Response, span: Any) -> None:
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


class _Response:
    """The app's `send`: adds the request id to the response head, and notes its status and
    the door of its stream if it streams. An object rather than a closure: it lives as long as
    each open stream, and is smaller."""

    __slots__ = ("_header", "_scope", "_send", "status", "stream_door")

    def __init__(self, send: Send, header: tuple[bytes, bytes], scope: Scope) -> None:
        self._send = send
        self._header = header
        self._scope = scope
        self.status = 0
        self.stream_door: str | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), self._header]
            if _content_type(message["headers"]).startswith(_STREAM_TYPES):
                self.stream_door = _door(self._scope)
                metrics().active_streams.labels(self.stream_door).inc()
        await self._send(message)


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
