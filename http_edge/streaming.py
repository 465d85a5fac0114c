"""Server-streaming responses: reading the call with keep-alive pings, and disconnect watching.

Framing follows grpc-gateway for NDJSON (`{"result": …}` / `{"error": …}` per line) and SSE for
clients that ask for `text/event-stream`; each message is written as soon as it arrives. When the
server's shutdown grace period ends, a stream still open stops reading its call, which cancels
it, and ends with a `server is shutting down` error.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc

from http_edge.errors import ApiError, edge_error
from http_edge.types import Receive

PING = object()
SSE_PING = b": ping\n\n"
# NDJSON readers skip blank lines, so a bare newline keeps proxies from timing the stream out.
NDJSON_PING = b"\n"
SSE_CONTENT_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")
NDJSON_CONTENT_TYPE = (b"content-type", b"application/x-ndjson")
STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


def wants_sse(headers: dict[bytes, bytes]) -> bool:
    """Whether the client's `accept` asks for server-sent events."""
    return b"text/event-stream" in headers.get(b"accept", b"")


def sse_event(data: bytes) -> bytes:
    """`data` as one unnamed server-sent event."""
    return b"data: " + data + b"\n\n"


class ShuttingDown(Exception):
    """The server's shutdown grace period ended while the stream was open."""


def shutting_down() -> ApiError:
    """The error a stream still open at the end of the shutdown grace period ends with."""
    return edge_error(
        grpc.StatusCode.UNAVAILABLE, 503, "SERVER_SHUTTING_DOWN", "server is shutting down"
    )


class GracePeriod:
    """The time open streams are given once the server begins to shut down; `end()` makes each
    of them raise `ShuttingDown` from `MessageStream.next`."""

    def __init__(self) -> None:
        self.ended = False
        self._waiters: set[asyncio.Future[None]] = set()

    def end(self) -> None:
        """Ends the period: every open stream stops with `ShuttingDown`."""
        self.ended = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def waiter(self) -> asyncio.Future[None]:
        """A future done when the period ends; `discard` it when no longer waiting."""
        waiter = asyncio.get_running_loop().create_future()
        if self.ended:
            waiter.set_result(None)
        else:
            self._waiters.add(waiter)
        return waiter

    def discard(self, waiter: asyncio.Future[None]) -> None:
        """Forgets a waiter from `waiter()` that no longer waits."""
        self._waiters.discard(waiter)


class MessageStream:
    """Reads a server-streaming call; `next()` answers a message, `PING` after silence, or None,
    and raises `ShuttingDown` once `grace` has ended."""

    __slots__ = ("_call", "_grace", "_grace_over", "_pending", "_ping_interval")

    def __init__(
        self, call: grpc.aio.UnaryStreamCall, ping_interval: float, grace: GracePeriod
    ) -> None:
        self._call = call
        self._ping_interval = ping_interval
        self._pending: asyncio.Future[Any] | None = None
        self._grace = grace
        # One future per stream rather than one shared by all: each wait adds and removes a
        # callback, which costs the length of the future's callback list.
        self._grace_over = grace.waiter()

    async def next(self) -> Any:
        """The next message, `PING` after a ping interval of silence, or None at the end."""
        if self._pending is None:
            self._pending = self._read()
        pending = self._pending
        if not pending.done() and not self._grace_over.done():
            await self._wait(pending)
        if self._grace_over.done():
            raise ShuttingDown
        if not pending.done():
            return PING
        self._pending = None
        message = pending.result()
        return None if message is grpc.aio.EOF else message

    def _read(self) -> asyncio.Future[Any]:
        next_message = getattr(self._call, "next_message", None)
        if next_message is not None:
            # The in-process channel hands messages over as futures: no task per read.
            return next_message()  # type: ignore[no-any-return]
        return asyncio.ensure_future(self._call.read())

    async def _wait(self, pending: asyncio.Future[Any]) -> None:
        """Until `pending` is done, the grace period ends, or the ping interval passes; with a
        future and a timer, lighter than `asyncio.wait` for thousands of streams."""
        loop = asyncio.get_running_loop()
        woken = loop.create_future()

        def wake(_: object = None) -> None:
            if not woken.done():
                woken.set_result(None)

        pending.add_done_callback(wake)
        self._grace_over.add_done_callback(wake)
        timer = loop.call_later(self._ping_interval, wake)
        try:
            await woken
        finally:
            timer.cancel()
            pending.remove_done_callback(wake)
            self._grace_over.remove_done_callback(wake)

    def close(self) -> None:
        """Cancel the call and any read in flight."""
        self._grace.discard(self._grace_over)
        self._call.cancel()
        if self._pending is not None:
            self._pending.cancel()
            self._pending.add_done_callback(_consume_outcome)
            self._pending = None


class DisconnectWatcher:
    """Cancels `call` when the client disconnects; `disconnected` tells whether it did."""

    __slots__ = ("_call", "_receive", "_task", "disconnected")

    def __init__(self, receive: Receive, call: grpc.aio.Call) -> None:
        self.disconnected = False
        self._receive = receive
        self._call = call
        self._task: asyncio.Task[None] | None = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self._call.cancel()
                return

    def stop(self) -> None:
        """Stops watching; the call is left as it is."""
        # The cancelled task keeps its error, whose traceback holds this watcher: forgetting
        # the task leaves no cycle, so the request's objects are freed at once rather than
        # by the garbage collector.
        task, self._task = self._task, None
        if task is not None:
            task.cancel()


async def unary_response(call: Any, receive: Receive) -> Any:
    """The response of a unary call, or None when the client disconnected first (the call is
    then cancelled). Raises `grpc.aio.AioRpcError` as the call does."""
    watcher = DisconnectWatcher(receive, call)
    try:
        return await call
    except asyncio.CancelledError:
        if watcher.disconnected:
            return None
        raise
    finally:
        watcher.stop()


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        future.exception()
