"""The two forwarders of the edge, after grpc-gateway's `ForwardResponseMessage` and
`ForwardResponseStream`: each calls the core, follows the client's connection (a client that goes
away cancels the call), and writes the answer or the error. A route chooses only the framing: how
a response message, a keep-alive ping and a failure become bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from http_edge.core import passed_headers
from http_edge.cors import watch_call
from http_edge.errors import ApiError, from_rpc_error
from http_edge.responses import send_bytes, send_error
from http_edge.streaming import (
    PING,
    STREAM_HEADERS,
    DisconnectWatcher,
    GracePeriod,
    MessageStream,
    ShuttingDown,
    shutting_down,
    unary_response,
)
from http_edge.types import Receive, Scope, Send

Headers = list[tuple[bytes, bytes]]


class StreamFraming(Protocol):
    """How one stream's messages are written: NDJSON or SSE lines, or OpenAI chunks."""

    content_type: tuple[bytes, bytes]
    ping: bytes

    def headers(self, first: Any) -> Headers:
        """Headers taken from the first response message."""
        ...

    def message(self, response: Any) -> bytes:
        """One response message, framed."""
        ...

    def failure(self, error: ApiError, shutting_down: bool) -> bytes:
        """The last bytes of a stream that failed after it started."""
        ...

    def end(self) -> bytes:
        """The last bytes of a stream that ended well."""
        ...


async def forward_unary(
    scope: Scope,
    receive: Receive,
    send: Send,
    call: Any,
    render: Callable[[Any], tuple[bytes, Headers]],
) -> None:
    """Writes the response of a unary `call` as one JSON body (`render` gives it and its headers),
    or its error in the shape of the surface addressed."""
    watch_call(scope, call)
    try:
        response = await unary_response(call, receive)
    except grpc.aio.AioRpcError as exc:
        await send_error(scope, send, from_rpc_error(exc))
        return
    if response is None:
        return
    body, headers = render(response)
    await send_bytes(send, 200, body, [*headers, *await passed_headers(call)])


async def forward_stream(
    scope: Scope,
    receive: Receive,
    send: Send,
    call: Any,
    framing: StreamFraming,
    *,
    ping_interval: float,
    grace: GracePeriod,
) -> None:
    """Writes each message of a server-streaming `call` as soon as it arrives, with pings while
    it is quiet. An error before the first message answers with its status; after it, the
    stream ends with the framing's failure. A client that goes away cancels the call."""
    watch_call(scope, call)
    watcher = DisconnectWatcher(receive, call)
    stream = MessageStream(call, ping_interval, grace)
    started = False
    try:
        item = await stream.next()
        while item is not None:
            if not started:
                headers = [framing.content_type, *STREAM_HEADERS]
                if item is not PING:
                    # A ping comes before any message: no metadata to wait for then.
                    headers += await passed_headers(call)
                    headers += framing.headers(item)
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                started = True
            chunk = framing.ping if item is PING else framing.message(item)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            item = await stream.next()
        ending = framing.end()
    except grpc.aio.AioRpcError as exc:
        if not started:
            await send_error(scope, send, from_rpc_error(exc))
            return
        ending = framing.failure(from_rpc_error(exc), False)
    except ShuttingDown:
        if not started:
            await send_error(scope, send, shutting_down())
            return
        ending = framing.failure(shutting_down(), True)
    except asyncio.CancelledError:
        if watcher.disconnected:
            return
        raise
    finally:
        watcher.stop()
        stream.close()
    if not started:
        # An empty stream: headers were never sent.
        headers = [framing.content_type, *STREAM_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ending, "more_body": False})
