"""The edge's HTTP/1.1 protocol for uvicorn: httptools parsing, with the per-connection state a
server holding thousands of streams can afford.

uvicorn serves the edge (sockets, lifespan, signals, graceful shutdown) and takes this class as
its `http` protocol in place of its own httptools protocol, whose connections each carry four
`asyncio.Event`/`deque` pairs and two attribute dictionaries. Here a connection and each request
on it are objects with slots; waiting for a request body or for a paused socket uses a future
made only when needed. Behaviour follows uvicorn's: keep-alive with its timeout, pipelined
requests answered in order, `Expect: 100-continue`, HEAD, chunked responses when no length is
given, `Connection: close`, and the 500 or closed connection for an app that fails.

What it adds:
- The request head (request line and headers) is bounded: past the limit the request answers
  `431 Request Header Fields Too Large` and the connection closes (httptools keeps no limit of
  its own and would grow a header for as long as a client writes).
- A request's app may ask to be called back when the client's connection is lost
  (`http_edge.streaming.ON_DISCONNECT`), instead of waiting on `receive` in a task of its own.
- A response head is held back until the body's first bytes (or the end of the event loop's
  round): a whole JSON response leaves in one write, one segment that wakes the client once.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

import grpc
import httptools

from http_edge.errors import edge_error, native_body
from http_edge.marshal import encode_json
from http_edge.streaming import ON_DISCONNECT

log = logging.getLogger("uvicorn.error")

# A refused client may still be writing its head: reading it on (and dropping it) for a moment
# lets the 431 reach it instead of a connection reset.
_LINGER_SECONDS = 2.0
# Request body bytes buffered before reading from the socket pauses.
_HIGH_WATER = 65_536
_INVALID_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_INVALID_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_REQUEST = b"Invalid HTTP request received."
_SERVER_ERROR = b"Internal Server Error"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ASGI = {"version": "3.0", "spec_version": "2.3"}
_METHODS = {
    name.encode(): name for name in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
}
_VERSIONS = {version: version for version in ("1.1", "1.0")}


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


_STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""


class _Exchange:
    """One request on a connection and the response written to it: the request's `receive`
    and `send`."""

    __slots__ = (
        "body",
        "chunked",
        "complete",
        "connection",
        "disconnected",
        "expect_continue",
        "head",
        "keep_alive",
        "length_left",
        "more_body",
        "on_disconnect",
        "readable",
        "scope",
        "started",
    )

    def __init__(self, connection: EdgeProtocol, keep_alive: bool, expect_continue: bool) -> None:
        self.connection = connection
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.scope: dict[str, Any] = {}
        self.body = b""
        self.more_body = True
        # Set while `receive` waits for body bytes.
        self.readable: asyncio.Future[None] | None = None
        self.disconnected = False
        self.on_disconnect: Callable[[], None] | None = None
        self.started = False
        self.complete = False
        # The response head, until the body's first bytes go out with it.
        self.head: bytes | None = None
        self.chunked = False
        self.length_left = 0

    def follow(self, callback: Callable[[], None]) -> None:
        """Calls `callback()` once the connection is lost (`ON_DISCONNECT`)."""
        self.on_disconnect = callback

    def unfollow(self) -> None:
        """Forgets the callback given to `follow`."""
        self.on_disconnect = None

    def lost(self) -> None:
        """The connection is gone: `receive` answers `http.disconnect`, writes stop."""
        self.disconnected = not self.complete
        self.wake_reader()
        callback, self.on_disconnect = self.on_disconnect, None
        if callback is not None:
            callback()

    def wake_reader(self) -> None:
        """Wakes a `receive` waiting for body bytes."""
        readable, self.readable = self.readable, None
        _wake(readable)

    async def run(self, app: Any) -> None:
        """Runs the app on this request, answering 500 (or closing the connection) when it
        fails or leaves the response unfinished."""
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as error:
            log.error("Exception in ASGI application\n", exc_info=error)
            if not self.started:
                await self._send_server_error()
            else:
                self.connection.close()
        else:
            if not self.disconnected:
                if not self.started:
                    log.error("ASGI callable returned without starting response.")
                    await self._send_server_error()
                elif not self.complete:
                    log.error("ASGI callable returned without completing response.")
                    self.connection.close()
        finally:
            self.on_disconnect = None

    async def receive(self) -> dict[str, Any]:
        """The ASGI `receive`: body bytes as they arrive, then `http.disconnect`."""
        connection = self.connection
        if self.expect_continue:
            connection.write(_CONTINUE)
            self.expect_continue = False
        if self.disconnected or self.complete:
            return {"type": "http.disconnect"}
        if self.more_body and not self.body:
            connection.resume_reading()
            self.readable = connection.loop.create_future()
            await self.readable
            if self.disconnected or self.complete:
                return {"type": "http.disconnect"}
        body, self.body = self.body, b""
        connection.resume_reading()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: dict[str, Any]) -> None:
        """The ASGI `send`: the response head, then its body, waiting while the socket's
        buffer is full."""
        if not self.disconnected:
            await self.connection.drained()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got {kind!r}."
                )
            self._start(message["status"], message.get("headers", ()))
        elif not self.complete:
            if kind != "http.response.body":
                raise RuntimeError(f"Expected 'http.response.body', but got {kind!r}.")
            self._write(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} after the response completed.")

    def _start(self, status: int, headers: Any) -> None:
        self.started = True
        self.expect_continue = False
        content = [_STATUS_LINES[status]]
        length: int | None = None
        chunked = False
        closes = False
        for name, value in (*self.connection.default_headers, *headers):
            if _INVALID_NAME.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if _INVALID_VALUE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            name = name.lower()
            if name == b"content-length" and length is None and not chunked:
                length = int(value.decode())
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                chunked, length = True, None
            elif name == b"connection" and b"close" in [
                token.strip().lower() for token in value.split(b",")
            ]:
                self.keep_alive = False
                closes = True
            content.extend((name, b": ", value, b"\r\n"))
        if not self.keep_alive and not closes:
            content.append(b"connection: close\r\n")
        if length is None and not chunked and not self._is_head() and status not in (204, 304):
            chunked = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.chunked = chunked
        self.length_left = length or 0
        self.head = b"".join(content)
        # Written with the body's first bytes, or at the end of this round of the loop.
        self.connection.loop.call_soon(self._flush_head)

    def _write(self, body: bytes, more_body: bool) -> None:
        if self._is_head():
            data = b""
            self.length_left = 0
        elif self.chunked:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self.length_left:
                raise RuntimeError("Response content longer than Content-Length")
            self.length_left -= len(body)
            data = body
        head, self.head = self.head, None
        if head is not None:
            data = head + data
        if data:
            self.connection.write(data)
        if more_body:
            return
        if self.length_left:
            raise RuntimeError("Response content shorter than Content-Length")
        self.complete = True
        self.wake_reader()
        self.connection.response_complete(self)

    def _is_head(self) -> bool:
        return bool(self.scope["method"] == "HEAD")

    def _flush_head(self) -> None:
        head, self.head = self.head, None
        if head is not None:
            self.connection.write(head)

    async def _send_server_error(self) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(_SERVER_ERROR)).encode()),
            (b"connection", b"close"),
        ]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": _SERVER_ERROR})


class EdgeProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection of the edge: parses requests, runs the ASGI app for each in a
    task of its own, writes the responses in order."""

    __slots__ = (
        "_app",
        "_between",
        "_current",
        "_drained",
        "_exchange",
        "_head_began",
        "_head_read",
        "_head_size",
        "_headers",
        "_idle",
        "_in_head",
        "_pending",
        "_read_paused",
        "_refused",
        "_state",
        "_timeout_keep_alive",
        "_too_large",
        "_transport",
        "_url",
        "_write_paused",
        "loop",
        "parser",
    )

    # Set by `edge_protocol` for a given limit.
    max_head_bytes = 65_536
    _refusal = b""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self._app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self._state = server_state
        self._timeout_keep_alive = config.timeout_keep_alive
        self._transport: asyncio.Transport = None  # type: ignore[assignment]
        # Made when bytes arrive, and dropped between requests: a parser and the callbacks it
        # binds cost about a kilobyte, which a connection holding a stream has no use for.
        self.parser: httptools.HttpRequestParser | None = None
        self._between = True
        self._idle: asyncio.TimerHandle | None = None
        self._read_paused = False
        self._write_paused = False
        # Set while writes wait for the paused socket to drain.
        self._drained: asyncio.Future[None] | None = None
        # The exchange being parsed, the one being answered, and those parsed but waiting
        # their turn (pipelined), oldest first.
        self._exchange: _Exchange | None = None
        self._current: _Exchange | None = None
        self._pending: list[_Exchange] | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        # The current head: its size as parsed, and the bytes read while it was incomplete
        # after the read it began in (a lower bound on its size, counted even while httptools
        # gathers one long header without a callback).
        self._in_head = False
        self._head_began = False
        self._head_size = 0
        self._head_read = 0
        self._too_large = False
        self._refused = False

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers of every response (`date`, `server`), kept current by uvicorn."""
        return self._state.default_headers  # type: ignore[no-any-return]

    # asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Counts the connection among the server's."""
        self._state.connections.add(self)
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        """Ends every exchange on the connection (see `_Exchange.lost`)."""
        self._state.connections.discard(self)
        self._write_paused = False
        drained, self._drained = self._drained, None
        _wake(drained)
        self._cancel_idle()
        if exc is None:
            self._transport.close()
        self.parser = None
        pending, self._pending = self._pending or [], None
        for exchange in (self._current, *pending):
            if exchange is not None:
                exchange.lost()

    def data_received(self, data: bytes) -> None:
        """Feeds the parser; a malformed request answers 400, a head too large 431."""
        if self._refused:
            return
        self._cancel_idle()
        self._head_began = False
        parser = self.parser
        if parser is None:
            parser = self.parser = httptools.HttpRequestParser(self)
            parser.set_dangerous_leniencies(lenient_data_after_close=True)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol to upgrade to: the request is answered as it is.
            pass
        except httptools.HttpParserError:
            if self._too_large:
                self._refuse()
            else:
                log.warning("Invalid HTTP request received.")
                self._bad_request()
            return
        if self._between:
            # No request is part-way through the parser: the next one gets a new parser.
            self.parser = None
        elif self._in_head and not self._head_began:
            self._head_read += len(data)
            if self._head_read > self.max_head_bytes:
                self._refuse()

    def eof_received(self) -> None:
        """The client closed its side; responses in flight are still written."""

    def pause_writing(self) -> None:
        """The socket's buffer is full: writes wait for it to drain."""
        self._write_paused = True

    def resume_writing(self) -> None:
        """The socket's buffer drained: waiting writes go on."""
        self._write_paused = False
        drained, self._drained = self._drained, None
        _wake(drained)

    def shutdown(self) -> None:
        """The server is stopping: an idle connection closes, a busy one after its response."""
        current = self._current
        if current is None or current.complete:
            self._transport.close()
            return
        current.keep_alive = False
        for exchange in self._pending or ():
            exchange.keep_alive = False

    # httptools callbacks

    def on_message_begin(self) -> None:
        """A new request: its head is counted from here."""
        self._url = b""
        self._headers = []
        self._between = False
        self._in_head = self._head_began = True
        self._head_size = self._head_read = 0

    def on_url(self, url: bytes) -> None:
        """Part of the request target."""
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        """One request header."""
        self._headers.append((name.lower(), value))
        self._count_head(len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        """The head is in: the request's scope is built and, unless another response is still
        being written, its app starts."""
        self._in_head = False
        parser = self.parser
        assert parser is not None
        raw_method = parser.get_method()
        # The usual methods and versions as shared strings, not new ones for every request.
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        version = parser.get_http_version()
        version = _VERSIONS.get(version, version)
        url = httptools.parse_url(self._url)
        raw_path = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        headers = self._headers
        expect_continue = any(
            name == b"expect" and value.lower() == b"100-continue" for name, value in headers
        )
        keep_alive = version != "1.0" and parser.should_keep_alive()
        exchange = _Exchange(self, keep_alive, expect_continue)
        exchange.scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": version,
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": headers,
            ON_DISCONNECT: exchange,
        }
        self._exchange = exchange
        current = self._current
        if current is None or current.complete:
            self._begin(exchange)
        else:
            # Pipelined behind a response still being written: it waits its turn.
            self.pause_reading()
            if self._pending is None:
                self._pending = []
            self._pending.append(exchange)

    def on_body(self, body: bytes) -> None:
        """Request body bytes, for `receive`."""
        exchange = self._exchange
        if exchange is None or exchange.complete:
            return
        exchange.body += body
        if len(exchange.body) > _HIGH_WATER:
            self.pause_reading()
        exchange.wake_reader()

    def on_message_complete(self) -> None:
        """The request's body is all in."""
        self._between = True
        exchange = self._exchange
        if exchange is None or exchange.complete:
            return
        exchange.more_body = False
        exchange.wake_reader()

    # For the exchanges

    def write(self, data: bytes) -> None:
        """Writes to the client, unless the connection is closing."""
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        """Closes the connection."""
        self._transport.close()

    async def drained(self) -> None:
        """Returns once the socket's buffer has room."""
        if self._write_paused:
            if self._drained is None:
                self._drained = self.loop.create_future()
            # Shielded: several writers may wait on the one future, and a cancelled writer
            # must not cancel it for the others.
            await asyncio.shield(self._drained)

    def pause_reading(self) -> None:
        """Stops reading from the socket."""
        if not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Reads from the socket again."""
        if self._read_paused:
            self._read_paused = False
            self._transport.resume_reading()

    def response_complete(self, exchange: _Exchange) -> None:
        """The response of `exchange` is written: the next pipelined request starts, or the
        connection waits, idle, for the keep-alive timeout."""
        self._state.total_requests += 1
        if not exchange.keep_alive:
            self._transport.close()
        if self._transport.is_closing():
            return
        self._cancel_idle()
        self.resume_reading()
        if self._pending:
            self._begin(self._pending.pop(0))
        else:
            self._idle = self.loop.call_later(self._timeout_keep_alive, self._close_idle)

    # Connection upkeep

    def _begin(self, exchange: _Exchange) -> None:
        self._current = exchange
        task = self.loop.create_task(exchange.run(self._app))
        tasks = self._state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _close_idle(self) -> None:
        self._idle = None
        self._transport.close()

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.max_head_bytes:
            # Raised through httptools, which answers with an `HttpParserError`.
            self._too_large = True
            raise _HeadTooLarge

    def _refuse(self) -> None:
        self._refused = True
        self._in_head = False
        if self._transport.is_closing():
            return
        current = self._current
        if current is not None and not current.complete:
            # A response is still being written on this connection: a 431 would land inside it.
            self._transport.close()
            return
        head = [_STATUS_LINES[431]]
        for name, value in self.default_headers:
            head.extend((name, b": ", value, b"\r\n"))
        self._transport.write(b"".join([*head, self._refusal]))
        if self._transport.can_write_eof():
            self._transport.write_eof()
        self.loop.call_later(_LINGER_SECONDS, self._transport.close)

    def _bad_request(self) -> None:
        content = [_STATUS_LINES[400]]
        for name, value in self.default_headers:
            content.extend((name, b": ", value, b"\r\n"))
        content.extend(
            (
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: %d\r\n" % len(_BAD_REQUEST),
                b"connection: close\r\n\r\n",
                _BAD_REQUEST,
            )
        )
        self._transport.write(b"".join(content))
        self._transport.close()


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def edge_protocol(limit: int) -> type[EdgeProtocol]:
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

    class Protocol(EdgeProtocol):
        __slots__ = ()
        max_head_bytes = limit
        _refusal = refusal

    return Protocol
