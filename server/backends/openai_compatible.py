"""The `openai_compatible` backend: any server speaking OpenAI's `/v1/chat/completions` (vLLM,
Ollama, llama.cpp's server, LiteLLM, OpenAI).

The request always streams (`stream: true` with `include_usage`), and deltas are handed on as
they arrive. The key is read from the environment variable the agent names at call time: it is
never stored, logged or echoed. Faults map to clear errors in bounded time: a refused
connection or a 5xx is retried a few times before any reply byte, then answers UPSTREAM_ERROR;
no first byte, or a stall between chunks, within the timeout answers UPSTREAM_TIMEOUT; a 429
passes its `Retry-After` on; a 401/403 says the agent's upstream credentials were refused.

Model calls go over one pool of HTTP/1.1 keep-alive connections per process (`UpstreamPool`),
written on asyncio protocols with httptools parsing the replies: a general HTTP client costs
several times more per call than the whole rest of a turn, and Switchboard must never be the
bottleneck in front of a model. An upstream that the environment routes through a proxy
(`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, minus `NO_PROXY`) is reached through the process's
shared httpx client instead (`SharedClient`), which also serves the webhook tools: httpx is
loaded when one of them first needs it, or to make the TLS context of an `https` upstream."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import httptools
from switchboard.v1 import agent_pb2

from observability import tracing
from server.backends import (
    BackendEvent,
    Finished,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
    TurnContext,
    UsageReported,
)
from server.errors import UpstreamError, UpstreamRateLimited, UpstreamTimeout, clip
from server.telemetry import observed_upstream_call

if TYPE_CHECKING:
    import httpx

DEFAULT_TIMEOUT_MS = 60_000
CONNECT_TIMEOUT_SECONDS = 5.0
# Attempts before any reply byte was received; later failures are never retried.
ATTEMPTS = 3
_BACKOFF_SECONDS = (0.1, 0.4)
_MAX_ERROR_BODY = 300
# Idle keep-alive connections kept per upstream origin, and for how long.
MAX_IDLE_PER_ORIGIN = 128
IDLE_SECONDS = 30.0
# Reply bytes buffered before reading from the upstream pauses until the turn catches up.
_READ_HIGH_WATER = 256 * 1024
# After `[DONE]`, how long the body's end may take before the connection is dropped instead of
# going back to the pool; the reply itself is complete by then.
_AFTER_DONE_SECONDS = 1.0
_USER_AGENT = b"switchboard"
_DATA = b"data:"
_DONE = b"[DONE]"
_SSE = b"text/event-stream"
_JSON = json.JSONDecoder()
_URL_SAFE = "/%:@!$&'()*+,;=-._~"


class SharedClient:
    """The process's httpx client for webhook tools and upstreams reached through a proxy,
    made on first use: until then httpx, its TLS context and its pool are not loaded."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        """The client, made by the first call."""
        if self._client is None:
            import httpx

            # One line per request would flood the log at INFO.
            logging.getLogger("httpx").setLevel(logging.WARNING)
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
                timeout=httpx.Timeout(DEFAULT_TIMEOUT_MS / 1000, connect=CONNECT_TIMEOUT_SECONDS),
                follow_redirects=False,
                event_hooks={"request": [tracing.inject_into_request]},
            )
        return self._client

    async def aclose(self) -> None:
        """Closes the client's connections, if it was made."""
        if self._client is not None:
            await self._client.aclose()


class OpenAICompatibleBackend:
    """Streams replies from an upstream OpenAI-compatible chat completions API."""

    def __init__(self, client: SharedClient) -> None:
        self._client = client
        self._pool = UpstreamPool()

    def name(self, agent: agent_pb2.Agent) -> str:
        """`openai_compatible:` followed by the agent's upstream model."""
        return f"openai_compatible:{agent.backend.openai_compatible.model}"

    @observed_upstream_call
    async def stream(self, turn: TurnContext) -> AsyncGenerator[BackendEvent, None]:
        """One step from the upstream; a refused connection or a 5xx is retried first."""
        upstream = turn.agent.backend.openai_compatible
        try:
            target = _target(upstream.base_url)
        except ValueError:
            raise UpstreamError(
                f"the agent's upstream base_url {clip(upstream.base_url)!r} is not a valid URL"
            ) from None
        key = None
        if upstream.api_key_env:
            key = os.environ.get(upstream.api_key_env)
            if not key:
                raise UpstreamError(
                    f"the agent's upstream key variable {upstream.api_key_env} is not set on "
                    "this server",
                    reason="UPSTREAM_KEY_MISSING",
                )
            if not key.isprintable():
                raise UpstreamError(
                    f"the agent's upstream key variable {upstream.api_key_env} holds characters "
                    "that cannot go in a header",
                    reason="UPSTREAM_KEY_MISSING",
                )
        timeout = (upstream.timeout_ms or DEFAULT_TIMEOUT_MS) / 1000
        body = json.dumps(_request_body(turn), separators=(",", ":")).encode()
        if target.proxied:
            async with aclosing(self._stream_by_httpx(target, key, body, timeout, upstream)) as by:
                async for event in by:
                    yield event
            return
        request = target.head + b"content-length: %d\r\n" % len(body) + tracing.header_lines()
        if key is not None:
            request += b"authorization: Bearer " + key.encode() + b"\r\n"
        request += b"\r\n" + body
        for attempt in range(ATTEMPTS):
            retry = attempt + 1 < ATTEMPTS
            try:
                connection = await self._pool.send(target, request, timeout)
            except _ConnectTimeout:
                if retry:
                    await asyncio.sleep(_BACKOFF_SECONDS[attempt])
                    continue
                raise _timeout(timeout) from None
            except TimeoutError:
                raise _timeout(timeout) from None
            except OSError as error:
                if retry:
                    await asyncio.sleep(_BACKOFF_SECONDS[attempt])
                    continue
                raise _unreachable(upstream, error) from None
            try:
                status = connection.status
                if status >= 500 and retry:
                    connection.close()
                    await asyncio.sleep(_BACKOFF_SECONDS[attempt])
                    continue
                if not 200 <= status < 300:
                    error_body = await connection.read_all(timeout)
                    retry_after = connection.header(b"retry-after")
                    raise _status_error(status, retry_after, error_body, upstream)
                if not connection.header(b"content-type").lower().startswith(_SSE):
                    document = _json_document(await connection.read_all(timeout))
                    for event in _whole_reply(document):
                        yield event
                    return
                # The streamed reply, decoded as its bytes arrive.
                decoder = _ReplyDecoder()
                lines = _Lines()
                while True:
                    data = connection.take_body()
                    if data:
                        for line in lines.feed(data):
                            for event in decoder.line(line):
                                yield event
                    if connection.complete:
                        break
                    if not decoder.done:
                        await connection.wait(timeout)
                        continue
                    # The reply is whole: give the body's end a moment, to keep the
                    # connection for another call.
                    try:
                        await connection.wait(min(timeout, _AFTER_DONE_SECONDS))
                    except OSError:
                        break
                for event in decoder.line(lines.rest()):
                    yield event
                for event in decoder.finish():
                    yield event
                return
            except TimeoutError:
                raise _timeout(timeout) from None
            except OSError as error:
                raise UpstreamError(
                    f"the agent's upstream model broke off its reply ({type(error).__name__})"
                ) from None
            finally:
                self._pool.release(connection)

    async def _stream_by_httpx(
        self,
        target: _Target,
        key: str | None,
        body: bytes,
        timeout_seconds: float,
        upstream: agent_pb2.OpenAICompatibleBackend,
    ) -> AsyncGenerator[BackendEvent, None]:
        import httpx

        client = self._client.get()
        headers = {"accept": "text/event-stream", "content-type": "application/json"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(timeout_seconds, connect=CONNECT_TIMEOUT_SECONDS)
        for attempt in range(ATTEMPTS):
            retry = attempt + 1 < ATTEMPTS
            try:
                request = client.build_request(
                    "POST", target.url, content=body, headers=headers, timeout=timeout
                )
                response = await client.send(request, stream=True)
            except httpx.TimeoutException as error:
                if isinstance(error, httpx.ConnectTimeout) and retry:
                    await asyncio.sleep(_BACKOFF_SECONDS[attempt])
                    continue
                raise _timeout(timeout_seconds) from None
            except httpx.HTTPError as error:
                if retry:
                    await asyncio.sleep(_BACKOFF_SECONDS[attempt])
                    continue
                raise _unreachable(upstream, error) from None
            try:
                if response.status_code >= 500 and retry:
                    await response.aread()
                    await asyncio.sleep(_BACKOFF_SECONDS[attempt])
                    continue
                if not response.is_success:
                    raise _status_error(
                        response.status_code,
                        response.headers.get("retry-after", "").encode(),
                        await response.aread(),
                        upstream,
                    )
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    decoder = _ReplyDecoder()
                    lines = _Lines()
                    async for data in response.aiter_raw():
                        for line in lines.feed(data):
                            for event in decoder.line(line):
                                yield event
                    for event in decoder.line(lines.rest()):
                        yield event
                    for event in decoder.finish():
                        yield event
                else:
                    for event in _whole_reply(_json_document(await response.aread())):
                        yield event
                return
            except httpx.TimeoutException:
                raise _timeout(timeout_seconds) from None
            except httpx.HTTPError as error:
                raise UpstreamError(
                    f"the agent's upstream model broke off its reply ({type(error).__name__})"
                ) from None
            finally:
                await response.aclose()


def _request_body(turn: TurnContext) -> dict[str, Any]:
    agent = turn.agent
    body: dict[str, Any] = {
        "model": agent.backend.openai_compatible.model,
        "messages": list(turn.messages),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sampling = agent.sampling
    if sampling.HasField("temperature"):
        body["temperature"] = sampling.temperature
    if sampling.HasField("top_p"):
        body["top_p"] = sampling.top_p
    if sampling.HasField("max_tokens"):
        body["max_tokens"] = sampling.max_tokens
    if turn.tools:
        body["tools"] = list(turn.tools)
    if turn.response_format is not None:
        body["response_format"] = turn.response_format
    return body


def _unreachable(
    upstream: agent_pb2.OpenAICompatibleBackend, error: BaseException
) -> UpstreamError:
    return UpstreamError(
        f"the agent's upstream model at {clip(upstream.base_url)} could not be reached "
        f"({type(error).__name__})"
    )


def _status_error(
    status: int, retry_after: bytes, body: bytes, upstream: agent_pb2.OpenAICompatibleBackend
) -> UpstreamError | UpstreamRateLimited:
    if status == 429:
        return UpstreamRateLimited(
            "the agent's upstream model is rate limited; retry later",
            retry_after_seconds=_retry_after(retry_after),
        )
    if status in (401, 403):
        return UpstreamError(
            f"the agent's upstream credentials were refused (HTTP {status}); check the key in "
            f"{upstream.api_key_env or 'its key variable'}",
            reason="UPSTREAM_AUTH_REFUSED",
        )
    detail = clip(body.decode(errors="replace").strip(), _MAX_ERROR_BODY)
    return UpstreamError(f"the agent's upstream model answered HTTP {status}: {detail}")


def _retry_after(value: bytes) -> float:
    try:
        return max(0.0, min(float(value), 120.0))
    except ValueError:
        return 1.0


def _timeout(seconds: float) -> UpstreamTimeout:
    return UpstreamTimeout(f"the agent's upstream model sent nothing for {seconds:g} s")


def _json_document(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise UpstreamError(
            "the agent's upstream model answered something other than JSON"
        ) from None


class _Lines:
    """Splits a byte stream into lines and keeps the `data:` ones, the only lines of an SSE
    stream a chat completion needs (blank lines, comments, `event:` and `id:` are dropped)."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._pending:
            data = self._pending + data
        lines = data.split(b"\n")
        self._pending = lines.pop()
        return [line for line in lines if line.startswith(_DATA)]

    def rest(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest


class _ReplyDecoder:
    """Turns the `data:` lines of a streamed chat completion into backend events."""

    __slots__ = ("_calls", "_finish_reason", "done")

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}
        self._finish_reason = ""
        self.done = False

    def line(self, line: bytes) -> Sequence[BackendEvent]:
        if not line.startswith(_DATA) or self.done:
            return ()
        data = line[5:].strip()
        if data == _DONE:
            self.done = True
            return ()
        try:
            # `raw_decode` of the text skips what `json.loads` adds around the C scanner.
            text = data.decode()
            chunk, end = _JSON.raw_decode(text)
            if end != len(text):
                raise ValueError("trailing data")
        except ValueError:
            raise UpstreamError("the agent's upstream model sent a malformed chunk") from None
        if not isinstance(chunk, dict):
            return ()
        if "error" in chunk:
            raise UpstreamError(
                f"the agent's upstream model failed: {clip(json.dumps(chunk['error']))}"
            )
        events: list[BackendEvent] = []
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            events.append(
                UsageReported(
                    int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                )
            )
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                events.append(TextDelta(str(content)))
            for call in delta.get("tool_calls") or ():
                _merge_call(self._calls, call)
            if choice.get("finish_reason"):
                self._finish_reason = str(choice["finish_reason"])
        return events

    def finish(self) -> list[BackendEvent]:
        events: list[BackendEvent] = []
        if self._calls:
            calls = [_tool_call(call) for _, call in sorted(self._calls.items())]
            events.append(ToolCallsRequested(calls))
        if self._finish_reason:
            events.append(Finished(self._finish_reason))
        return events


def _merge_call(calls: dict[int, dict[str, str]], delta: dict[str, Any]) -> None:
    """Tool calls stream as pieces keyed by index: the id and name first, then the arguments."""
    entry = calls.setdefault(int(delta.get("index") or 0), {"id": "", "name": "", "arguments": ""})
    if delta.get("id"):
        entry["id"] = str(delta["id"])
    function = delta.get("function") or {}
    if function.get("name"):
        entry["name"] += str(function["name"])
    if function.get("arguments"):
        entry["arguments"] += str(function["arguments"])


def _tool_call(entry: dict[str, str]) -> ToolCall:
    return ToolCall(id=entry["id"], name=entry["name"], arguments=entry["arguments"])


def _whole_reply(document: Any) -> list[BackendEvent]:
    events: list[BackendEvent] = []
    if not isinstance(document, dict):
        raise UpstreamError("the agent's upstream model answered an unexpected document")
    for choice in document.get("choices") or ():
        message = choice.get("message") or {}
        if message.get("content"):
            events.append(TextDelta(str(message["content"])))
        calls = [
            ToolCall(
                id=str(call.get("id") or ""),
                name=str((call.get("function") or {}).get("name") or ""),
                arguments=str((call.get("function") or {}).get("arguments") or ""),
            )
            for call in message.get("tool_calls") or ()
        ]
        if calls:
            events.append(ToolCallsRequested(calls))
        if choice.get("finish_reason"):
            events.append(Finished(str(choice["finish_reason"])))
        break
    usage = document.get("usage")
    if isinstance(usage, dict):
        events.append(
            UsageReported(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        )
    return events


# The upstream connection pool.


@dataclass(frozen=True)
class _Target:
    """Where an agent's `base_url` sends chat completions."""

    url: str
    # (scheme, host, port): connections are pooled per origin.
    origin: tuple[str, str, int]
    # The request line and the headers every request to it carries.
    head: bytes
    tls: bool
    # The environment routes it through a proxy: go through httpx.
    proxied: bool


@functools.lru_cache(maxsize=1024)
def _target(base_url: str) -> _Target:
    url = base_url.rstrip("/") + "/chat/completions"
    parts = urllib.parse.urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(base_url)
    port = parts.port or (443 if tls else 80)
    authority = f"[{host}]" if ":" in host else host.encode("idna").decode()
    if port != (443 if tls else 80):
        authority += f":{port}"
    target = urllib.parse.quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        target += "?" + urllib.parse.quote(parts.query, safe=_URL_SAFE + "?")
    head = (
        f"POST {target} HTTP/1.1\r\nhost: {authority}\r\n".encode()
        + b"user-agent: "
        + _USER_AGENT
        + b"\r\naccept: text/event-stream\r\ncontent-type: application/json\r\n"
    )
    return _Target(url, (parts.scheme, host, port), head, tls, _proxied(parts.scheme, host, port))


def _proxied(scheme: str, host: str, port: int) -> bool:
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(f"{host}:{port}")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context()


class UpstreamPool:
    """HTTP/1.1 keep-alive connections to upstream models, pooled per origin. A connection
    carries one request at a time; a reply read to its end puts it back, anything else
    (a cancelled turn, an error) closes it, so the upstream sees the client go away."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def send(self, target: _Target, request: bytes, stall_seconds: float) -> _Connection:
        """Sends `request` and waits for the response head; returns the connection, whose
        `status` and headers are read and whose body follows. Raises `_ConnectTimeout` or
        another OSError when the upstream cannot be reached, TimeoutError when it sends no
        head within `stall_seconds`."""
        while True:
            connection = self._take(target.origin)
            reused = connection is not None
            if connection is None:
                connection = await self._connect(target)
            connection.start(request)
            try:
                await connection.wait_head(stall_seconds)
            except TimeoutError:
                connection.close()
                raise
            except OSError:
                connection.close()
                if reused and not connection.received:
                    # The upstream had closed this idle connection: take a fresh one.
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            return connection

    def release(self, connection: _Connection) -> None:
        """Keeps `connection` if its reply was read whole and there is room; else closes it."""
        if not connection.reusable():
            connection.close()
            return
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) >= MAX_IDLE_PER_ORIGIN:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    def close(self) -> None:
        """Closes every idle connection."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    def _take(self, origin: tuple[str, str, int]) -> _Connection | None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Connections belong to the loop that made them.
            self._idle.clear()
            self._loop = loop
        idle = self._idle.get(origin)
        if not idle:
            return None
        expired = time.monotonic() - IDLE_SECONDS
        while idle:
            connection = idle.pop()
            if connection.idle_since >= expired and connection.reusable():
                return connection
            connection.close()
        return None

    async def _connect(self, target: _Target) -> _Connection:
        _, host, port = target.origin
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                _, connection = await loop.create_connection(
                    lambda: _Connection(target.origin),
                    host,
                    port,
                    ssl=_tls_context() if target.tls else None,
                    server_hostname=host if target.tls else None,
                )
        except TimeoutError:
            raise _ConnectTimeout() from None
        return connection


class _ConnectTimeout(TimeoutError):
    """No connection to the upstream within `CONNECT_TIMEOUT_SECONDS`."""


class _Connection(asyncio.Protocol):
    """One upstream connection and the response it is reading."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin
        self.idle_since = 0.0
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._lost = False
        self._start_response()

    def _start_response(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self._headers: dict[bytes, bytes] = {}
        self._framed = False
        self._keep_alive = False
        self.head_done = False
        self.complete = False
        self.received = False
        self._error: OSError | None = None
        self._body: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    # The consumer's side.

    def start(self, request: bytes) -> None:
        """Sends a request on this (idle or new) connection."""
        self._start_response()
        assert self._transport is not None
        self._transport.write(request)

    def header(self, name: bytes) -> bytes:
        return self._headers.get(name, b"")

    def reusable(self) -> bool:
        """Whether the connection may carry another request: its last reply was read to the
        end, both sides keep it alive, and nothing else arrived on it since."""
        return (
            self.complete
            and not self._lost
            and self._error is None
            and self._keep_alive
            and self._transport is not None
            and not self._transport.is_closing()
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def wait_head(self, stall_seconds: float) -> None:
        while not self.head_done:
            await self.wait(stall_seconds)

    async def wait(self, stall_seconds: float) -> None:
        """Waits until more of the response arrived, or it ended. Raises the connection's
        error (OSError), or TimeoutError after `stall_seconds` without news."""
        if self._error is not None:
            raise self._error
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(stall_seconds, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._error is not None:
            raise self._error

    def take_body(self) -> bytes:
        """The body bytes received since the last call."""
        if not self._body:
            return b""
        data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def read_all(self, stall_seconds: float) -> bytes:
        parts = []
        while True:
            parts.append(self.take_body())
            if self.complete:
                return b"".join(parts)
            await self.wait(stall_seconds)

    # The protocol's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.complete:
            # Bytes on an idle connection: nothing may follow a reply, so drop it.
            self._fail(ConnectionError("unexpected bytes after a reply"))
            self.close()
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionError(f"malformed HTTP response: {error}"))
            self.close()
            return
        if self._body:
            self._buffered += len(data)
            if self._buffered > _READ_HIGH_WATER and not self._paused and self._transport:
                self._paused = True
                self._transport.pause_reading()
        # One wake-up for whatever this read completed: the head, body bytes, the end.
        self._wake()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self.head_done and not self.complete and not self._framed and self._error is None:
            # A body delimited by the connection's end.
            self.complete = True
        if not self.complete:
            self._fail(exc if isinstance(exc, OSError) else ConnectionResetError("closed"))
        self._wake()

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in (b"content-length", b"transfer-encoding"):
            self._framed = True
        self._headers[name] = value

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self.status < 200:
            # An interim response (100 Continue): the real head follows.
            self._headers = {}
            self._framed = False
            return
        self.head_done = True
        # llhttp answers this only until the message ends.
        self._keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self.status < 200:
            return
        self.complete = True

    def _fail(self, error: OSError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
