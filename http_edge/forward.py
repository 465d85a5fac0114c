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
    STREAM_HEADERS,
    GracePeriod,
    Pings,
    follow_disconnect,
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
        response = await unary_response(scope, receive, call)
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
    pings: Pings,
    grace: GracePeriod,
) -> None:
    """Writes each message of a server-streaming `call` as soon as it arrives, with pings while
    it is quiet. An error before the first message answers with its status; after it, the
    stream ends with the framing's failure. A client that goes away, or the end of the
    shutdown grace period, cancels the call.

    The call is read in the request's own task: an open stream holds no task, queue or timer
    of its own, since a server holds thousands of them."""
    watch_call(scope, call)
    stream = _OpenStream(send, call, framing)
    stop_following = follow_disconnect(scope, receive, stream.client_gone)
    grace.follow(stream)
    pings.follow(stream)
    ending: bytes | None
    try:
        message = await call.read()
        while message is not grpc.aio.EOF:
            await stream.write(message)
            # Not held while the next one is awaited.
            del message
            message = await call.read()
        ending = framing.end()
    except grpc.aio.AioRpcError as exc:
        ending = await stream.failure(scope, from_rpc_error(exc), shutting_down=False)
    except asyncio.CancelledError:
        if stream.stopped is _GONE:
            return
        if stream.stopped is not _SHUT_DOWN:
            raise
        ending = await stream.failure(scope, shutting_down(), shutting_down=True)
    finally:
        stop_following()
        grace.forget(stream)
        pings.forget(stream)
        stream.close()
    if ending is not None:
        await stream.finish(ending)


_GONE = "client gone"
_SHUT_DOWN = "server shutting down"


class _OpenStream:
    """One response stream being forwarded: whether its head went out, why it was stopped,
    and its keep-alive pings (each written from a task of its own, which lives only as long
    as its write)."""

    __slots__ = (
        "_call",
        "_framing",
        "_ping",
        "_send",
        "_written_at",
        "ended",
        "started",
        "stopped",
    )

    def __init__(self, send: Send, call: Any, framing: StreamFraming) -> None:
        self._send = send
        self._call = call
        self._framing = framing
        self.started = False
        self.ended = False
        self.stopped: str | None = None
        self._ping: asyncio.Task[None] | None = None
        self._written_at = asyncio.get_running_loop().time()

    def client_gone(self) -> None:
        """The client went away: the call is cancelled."""
        self._stop(_GONE)

    def shut_down(self) -> None:
        """The shutdown grace period ended: the call is cancelled."""
        self._stop(_SHUT_DOWN)

    def _stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason
            self._call.cancel()

    async def write(self, message: Any) -> None:
        """Writes one response message (the head first, with headers from the first one)."""
        if not self.started:
            headers = [*await passed_headers(self._call), *self._framing.headers(message)]
            # A ping may have begun the stream while the metadata was awaited.
            if not self.started:
                await self._start(headers)
        self._written_at = asyncio.get_running_loop().time()
        chunk = self._framing.message(message)
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def failure(self, scope: Scope, error: ApiError, *, shutting_down: bool) -> bytes | None:
        """The framing's last bytes for a stream that failed, or None once the error was
        answered as a whole response (nothing had been written yet)."""
        if self.started:
            return self._framing.failure(error, shutting_down)
        self.started = self.ended = True
        await send_error(scope, self._send, error)
        return None

    async def finish(self, ending: bytes) -> None:
        """Writes the stream's last bytes (the head first if nothing was written)."""
        if not self.started:
            # An empty stream: headers were never sent.
            await self._start([])
        await self._send({"type": "http.response.body", "body": ending, "more_body": False})

    def close(self) -> None:
        """No more pings; the call is cancelled unless it ended."""
        self.ended = True
        self._call.cancel()

    def ping_if_quiet(self, since: float) -> None:
        """Writes a ping if nothing was written since `since`."""
        if not self.ended and self._ping is None and self._written_at <= since:
            self._ping = asyncio.ensure_future(self._write_ping())

    async def _start(self, headers: Headers) -> None:
        self.started = True
        headers = [self._framing.content_type, *STREAM_HEADERS, *headers]
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})

    async def _write_ping(self) -> None:
        # Writes wait their turn on a paused connection in the order they began, so a ping
        # never lands inside another write, nor after the last one.
        try:
            if not self.ended:
                if not self.started:
                    # A ping before any message: no metadata to wait for then.
                    await self._start([])
                self._written_at = asyncio.get_running_loop().time()
                ping = self._framing.ping
                await self._send({"type": "http.response.body", "body": ping, "more_body": True})
        finally:
            self._ping = None
