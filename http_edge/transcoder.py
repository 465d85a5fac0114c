"""The generic transcoder: the ASGI app serving every annotated RPC as grpc-gateway-style REST."""

from __future__ import annotations

import grpc
from google.protobuf import message

from http_edge.core import CoreClient, Metadata, forwarded_metadata
from http_edge.errors import ApiError, edge_error, missing_api_key, native_body
from http_edge.forward import Headers, forward_stream, forward_unary
from http_edge.marshal import build_request, check_raw_path, encode_json, response_to_dict
from http_edge.mux import Route, RouteTable
from http_edge.requests import ClientDisconnected, headers_of, read_body
from http_edge.responses import send_error
from http_edge.streaming import (
    NDJSON_CONTENT_TYPE,
    NDJSON_PING,
    SSE_CONTENT_TYPE,
    SSE_PING,
    GracePeriod,
    Pings,
    sse_event,
    wants_sse,
)
from http_edge.types import Receive, Scope, Send
from observability import context


def not_found() -> ApiError:
    """The 404 for a path that no route matches."""
    return edge_error(grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND", "Not Found")


def method_not_allowed(allowed: list[str]) -> ApiError:
    """The 405 for a method the path does not take, with its `allow` header."""
    error = edge_error(
        grpc.StatusCode.UNIMPLEMENTED, 405, "METHOD_NOT_ALLOWED", "Method Not Allowed"
    )
    error.headers["allow"] = ", ".join(allowed)
    return error


class Transcoder:
    """Matches a request to its route, calls the RPC and writes the answer."""

    def __init__(
        self,
        table: RouteTable,
        core: CoreClient,
        *,
        max_body_bytes: int,
        ping_interval: float,
        grace: GracePeriod | None = None,
    ) -> None:
        self._table = table
        self._core = core
        self._max_body_bytes = max_body_bytes
        self._pings = Pings(ping_interval)
        self._grace = grace or GracePeriod()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self._table.match(scope["method"], scope["path"])
        if isinstance(matched, list):
            await send_error(scope, send, method_not_allowed(matched) if matched else not_found())
            return
        route, bindings = matched
        context.bind(route=route.rpc_path)
        headers = headers_of(scope)
        # Every annotated RPC needs a key: a caller without one learns nothing of the body rules.
        unauthenticated = missing_api_key(headers)
        if unauthenticated is not None:
            await send_error(scope, send, unauthenticated)
            return
        try:
            check_raw_path(scope.get("raw_path"), bindings)
            body = await read_body(receive, headers, self._max_body_bytes) if route.body else b""
            request = build_request(route, body, bindings, scope["query_string"])
        except ApiError as error:
            await send_error(scope, send, error)
            return
        except ClientDisconnected:
            return
        metadata = forwarded_metadata(headers, scope["request_id"])
        if route.server_streaming:
            await self._stream(scope, receive, send, route, request, metadata, headers)
        else:
            await self._unary(scope, receive, send, route, request, metadata)

    async def _unary(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        request: message.Message,
        metadata: Metadata,
    ) -> None:
        call = self._core.unary(route.rpc_path)(request, metadata=metadata)

        def render(response: message.Message) -> tuple[bytes, Headers]:
            return encode_json(response_to_dict(route, response)), []

        await forward_unary(scope, receive, send, call, render)

    async def _stream(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        request: message.Message,
        metadata: Metadata,
        headers: dict[bytes, bytes],
    ) -> None:
        call = self._core.streaming(route.rpc_path)(request, metadata=metadata)
        framing = (SseLines if wants_sse(headers) else NdjsonLines)(route)
        await forward_stream(
            scope,
            receive,
            send,
            call,
            framing,
            pings=self._pings,
            grace=self._grace,
        )


class NdjsonLines:
    """grpc-gateway's stream framing: a `{"result": …}` or `{"error": …}` object per line."""

    __slots__ = ("_route",)
    content_type = NDJSON_CONTENT_TYPE
    ping = NDJSON_PING

    def __init__(self, route: Route) -> None:
        self._route = route

    def headers(self, first: message.Message) -> Headers:
        """None: NDJSON streams take no headers from their first message."""
        return []

    def message(self, response: message.Message) -> bytes:
        """A response message as `{"result": …}`, framed."""
        return self.frame(encode_json({"result": response_to_dict(self._route, response)}))

    def failure(self, error: ApiError, shutting_down: bool) -> bytes:
        """The error as `{"error": …}`, framed."""
        return self.frame(encode_json({"error": native_body(error)}))

    def end(self) -> bytes:
        """Nothing: the stream just ends."""
        return b""

    @staticmethod
    def frame(line: bytes) -> bytes:
        """`line` and a newline."""
        return line + b"\n"


class SseLines(NdjsonLines):
    """The same objects as unnamed server-sent events, for clients that accept
    `text/event-stream`."""

    __slots__ = ()
    content_type = SSE_CONTENT_TYPE
    ping = SSE_PING

    @staticmethod
    def frame(line: bytes) -> bytes:
        """`line` as an unnamed server-sent event."""
        return sse_event(line)
