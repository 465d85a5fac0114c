"""Server-streaming responses: framing constants, the shutdown grace period, and following
the client's connection.

Framing follows grpc-gateway for NDJSON (`{"result": …}` / `{"error": …}` per line) and SSE for
clients that ask for `text/event-stream`. When the server's shutdown grace period ends, a stream
still open has its call cancelled and ends with a `server is shutting down` error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from http_edge.errors import ApiError, edge_error
from http_edge.types import Receive, Scope

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


def shutting_down() -> ApiError:
    """The error a stream still open at the end of the shutdown grace period ends with."""
    return edge_error(
        grpc.StatusCode.UNAVAILABLE, 503, "SERVER_SHUTTING_DOWN", "server is shutting down"
    )


# The scope key under which the edge's server offers to follow the client's connection: an
# object with `follow(callback)`, which has `callback()` called once the connection is lost,
# and `unfollow()`. No task waits on `receive` for that.
ON_DISCONNECT = "switchboard.on_disconnect"


class Stoppable(Protocol):
    """An open stream that the end of the shutdown grace period stops."""

    def shut_down(self) -> None:
        """Stops the stream, which ends with a `server is shutting down` error."""
        ...


class Quiet(Protocol):
    """An open stream that may need a keep-alive ping."""

    def ping_if_quiet(self, since: float) -> None:
        """Writes a ping if nothing was written since `since` (an event loop time)."""
        ...


class Pings:
    """Keep-alive pings for the open streams of a route: one timer sweeps them all, every
    quarter interval, and pings each that has been quiet for an interval, rather than a
    timer per stream."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._streams: set[Quiet] = set()
        self._timer: asyncio.TimerHandle | None = None

    def follow(self, stream: Quiet) -> None:
        """Pings `stream` whenever it has been quiet for an interval, until `forget`."""
        self._streams.add(stream)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval / 4, self._sweep)

    def forget(self, stream: Quiet) -> None:
        """Stops pinging a stream that has ended."""
        self._streams.discard(stream)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        since = loop.time() - self.interval
        for stream in self._streams:
            stream.ping_if_quiet(since)
        self._timer = loop.call_later(self.interval / 4, self._sweep) if self._streams else None


class GracePeriod:
    """The time open streams are given once the server begins to shut down; `end()` stops
    each stream that `follow` was given."""

    def __init__(self) -> None:
        self.ended = False
        self._streams: set[Stoppable] = set()

    def end(self) -> None:
        """Ends the period: every open stream is stopped."""
        self.ended = True
        streams, self._streams = self._streams, set()
        for stream in streams:
            stream.shut_down()

    def follow(self, stream: Stoppable) -> None:
        """Stops `stream` when the period ends (at once if it has ended)."""
        if self.ended:
            stream.shut_down()
        else:
            self._streams.add(stream)

    def forget(self, stream: Stoppable) -> None:
        """Forgets a stream that has ended."""
        self._streams.discard(stream)


def follow_disconnect(
    scope: Scope, receive: Receive, on_disconnect: Callable[[], None]
) -> Callable[[], None]:
    """Has `on_disconnect()` called once if the client goes away; answers the function that
    stops following. The edge's server tells of a lost connection itself (`ON_DISCONNECT`);
    under another ASGI server a task reads `receive` for `http.disconnect`."""
    notice = scope.get(ON_DISCONNECT)
    if notice is not None:
        notice.follow(on_disconnect)
        return notice.unfollow  # type: ignore[no-any-return]
    return DisconnectWatcher(receive, on_disconnect).stop


class DisconnectWatcher:
    """Calls `on_disconnect()` when `receive` answers `http.disconnect`."""

    __slots__ = ("_on_disconnect", "_receive", "_task")

    def __init__(self, receive: Receive, on_disconnect: Callable[[], None]) -> None:
        self._receive = receive
        self._on_disconnect = on_disconnect
        self._task: asyncio.Task[None] | None = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._on_disconnect()
                return

    def stop(self) -> None:
        """Stops watching."""
        # The cancelled task keeps its error, whose traceback holds this watcher: forgetting
        # the task leaves no cycle, so the request's objects are freed at once rather than
        # by the garbage collector.
        task, self._task = self._task, None
        if task is not None:
            task.cancel()


async def unary_response(scope: Scope, receive: Receive, call: Any) -> Any:
    """The response of a unary call, or None when the client disconnected first (the call is
    then cancelled). Raises `grpc.aio.AioRpcError` as the call does."""
    disconnected = False

    def gone() -> None:
        nonlocal disconnected
        disconnected = True
        call.cancel()

    stop = follow_disconnect(scope, receive, gone)
    try:
        return await call
    except asyncio.CancelledError:
        if disconnected:
            return None
        raise
    finally:
        stop()
