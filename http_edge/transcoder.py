"""The generic transcoder: the ASGI app serving every annotated RPC as grpc-gateway-style REST."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import message

from http_edge.core import CoreClient, Metadata, forwarded_metadata, passed_headers
from http_edge.cors import watch_call
from http_edge.errors import ApiError, edge_error, from_rpc_error, missing_api_key, native_body
from http_edge.marshal import build_request, check_raw_path, encode_json, response_to_dict
from http_edge.mux import Route, RouteTable
from http_edge.requests import ClientDisconnected, headers_of, read_body
from http_edge.responses import send_bytes, send_error
from http_edge.streaming import (
    NDJSON_CONTENT_TYPE,
    NDJSON_PING,
    PING,
    SSE_CONTENT_TYPE,
    SSE_PING,
    STREAM_HEADERS,
    DisconnectWatcher,
    GracePeriod,
    MessageStream,
    ShuttingDown,
    shutting_down,
    sse_event,
    unary_response,
    wants_sse,
)
from http_edge.types import Receive, Scope, Send
from observability import context


def not_found() -> ApiError:
    return edge_error(grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND", "Not Found")


def method_not_allowed(allowed: list[str]) -> ApiError:
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
        self._ping_interval = ping_interval
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
        watch_call(scope, call)
        try:
            response = await unary_response(call, receive)
        except grpc.aio.AioRpcError as exc:
            await send_error(scope, send, from_rpc_error(exc))
            return
        if response is None:
            return
        headers = await passed_headers(call)
        await send_bytes(send, 200, encode_json(response_to_dict(route, response)), headers)

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
        watch_call(scope, call)
        watcher = DisconnectWatcher(receive, call)
        stream = MessageStream(call, self._ping_interval, self._grace)
        sse = wants_sse(headers)
        started = False
        try:
            item = await stream.next()
            while item is not None:
                if not started:
                    content_type = SSE_CONTENT_TYPE if sse else NDJSON_CONTENT_TYPE
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": [
                                content_type,
                                *STREAM_HEADERS,
                                # A ping comes before any message: no metadata to wait for.
                                *(await passed_headers(call) if item is not PING else ()),
                            ],
                        }
                    )
                    started = True
                if item is PING:
                    chunk = SSE_PING if sse else NDJSON_PING
                else:
                    line = encode_json({"result": response_to_dict(route, item)})
                    chunk = sse_event(line) if sse else line + b"\n"
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                item = await stream.next()
        except (grpc.aio.AioRpcError, ShuttingDown) as exc:
            error = shutting_down() if isinstance(exc, ShuttingDown) else from_rpc_error(exc)
            if not started:
                await send_error(scope, send, error)
                return
            line = encode_json({"error": native_body(error)})
            chunk = sse_event(line) if sse else line + b"\n"
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except asyncio.CancelledError:
            if watcher.disconnected:
                return
            raise
        finally:
            watcher.stop()
            stream.close()
        if not started:
            # An empty stream: headers were never sent.
            content_type = SSE_CONTENT_TYPE if sse else NDJSON_CONTENT_TYPE
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [content_type, *STREAM_HEADERS],
                }
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
