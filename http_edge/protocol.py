"""The edge's HTTP/1.1 protocol: uvicorn's httptools protocol with a bound on the request head.

httptools keeps no limit of its own: it grows a header or the URL by concatenation for as long
as the client writes, which lets one request hold the event loop for seconds. This protocol
counts the bytes of each request head (request line and headers) as they arrive and answers
`431 Request Header Fields Too Large` once they pass the limit, then closes the connection.

A request's app may ask to be called back when the client's connection is lost
(`http_edge.streaming.ON_DISCONNECT`), instead of waiting on `receive` in a task of its own.

It also holds each response head back until the body's first bytes are written (or the event
loop's current round ends): a whole JSON response then leaves in one write, one segment that
wakes the client once, instead of a head and a body in two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from http_edge.errors import edge_error, native_body
from http_edge.marshal import encode_json
from http_edge.streaming import ON_DISCONNECT

# A refused client may still be writing its head: reading it on (and dropping it) for a moment
# lets the 431 reach it instead of a connection reset.
_LINGER_SECONDS = 2.0


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""


class _State:
    """How much of the current request head has arrived, whether it was refused, and what to
    call when the connection is lost."""

    __slots__ = ("began", "in_head", "lower", "on_disconnect", "read", "refused", "upper")

    def __init__(self) -> None:
        self.on_disconnect: Callable[[], None] | None = None
        self.in_head = False
        self.began = False
        self.read = 0
        # Whole reads received while the current head was incomplete: all of them (an upper
        # bound on its size) and those after the read it began in (a lower bound).
        self.upper = 0
        self.lower = 0
        self.refused = False


class BoundedHeadProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` refusing request heads larger than `max_head_bytes`."""

    max_head_bytes = 65_536
    _refusal = b""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One attribute more, not six: past uvicorn's own, each costs the whole instance
        # dictionary its key sharing, about 1.3 KB per connection.
        self._count = _State()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Wraps the transport so that a response head waits for its body."""
        super().connection_made(transport)
        self.transport = _HeadWithBody(transport)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's handling, then the callback the request asked for (`ON_DISCONNECT`)."""
        super().connection_lost(exc)
        callback, self._count.on_disconnect = self._count.on_disconnect, None
        if callback is not None:
            callback()

    def follow_disconnect(self, callback: Callable[[], None] | None) -> None:
        """Calls `callback()` once the connection is lost; None stops following it."""
        self._count.on_disconnect = callback

    def data_received(self, data: bytes) -> None:
        """Feeds the parser, refusing the head once the reads it spans pass the limit."""
        if self._count.refused:
            return
        self._count.read = len(data)
        self._count.began = False
        super().data_received(data)
        if self._count.in_head and not self._count.refused:
            self._count.upper += self._count.read
            if not self._count.began:
                self._count.lower += self._count.read
                if self._count.lower > self.max_head_bytes:
                    self._refuse()

    def on_message_begin(self) -> None:
        """Starts counting a new request head."""
        super().on_message_begin()
        self.scope[ON_DISCONNECT] = self.follow_disconnect  # type: ignore[literal-required]
        self._count.in_head = True
        self._count.began = True
        self._count.upper = self._count.lower = 0

    def on_headers_complete(self) -> None:
        """Refuses the head when its exact size is over the limit."""
        self._count.in_head = False
        # The exact size is summed only when the reads could hold a head over the limit.
        if self._count.upper + self._count.read > self.max_head_bytes and (
            self._head_size() > self.max_head_bytes
        ):
            self._count.refused = True
            raise _HeadTooLarge
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's 400 for a parser error, or the 431 for a head too large."""
        # uvicorn answers a parser error with 400; the error raised above is a head too large.
        if self._count.refused:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _refuse(self) -> None:
        self._count.refused = True
        self._count.in_head = False
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A response is still being written on this connection: a 431 would land inside it.
            self.transport.close()
            return
        head = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        self.transport.write(b"".join([*head, self._refusal]))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_SECONDS, self.transport.close)


class _HeadWithBody:
    """The connection's transport, holding a response head until the next write (or the end of
    the loop's round, or a close) so that the two leave together. Every write goes through it,
    so bytes keep their order."""

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n"):
            self._head = data
            asyncio.get_running_loop().call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def bounded_head_protocol(limit: int) -> type[BoundedHeadProtocol]:
    """The protocol class for uvicorn's `http` setting, refusing heads over `limit` bytes."""
    message = f"the request line and headers must not exceed {limit} bytes"
    error = edge_error(grpc.StatusCode.RESOURCE_EXHAUSTED, 431, "HEADERS_TOO_LARGE", message)
    body = encode_json(native_body(error))
    refusal = b"".join(
        [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )

    class Protocol(BoundedHeadProtocol):
        max_head_bytes = limit
        _refusal = refusal

    return Protocol
