"""The upstream connection pool: keep-alive connections are reused across turns, an idle
connection the upstream closed is replaced without failing the turn, replies framed only by
the connection's end are read whole, and an upstream the environment routes through a proxy
is reached through it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, free_port

QUESTION = {"role": "user", "content": "When do parcels to Norway arrive?"}
REPLY = ["Within ", "nine ", "days."]


def _sse_events() -> list[bytes]:
    events = [{"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]
    events += [
        {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
        for text in REPLY
    ]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
    return [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


class RawUpstream:
    """An OpenAI-compatible upstream on raw sockets, so that a test decides the framing and
    the life of each connection. `mode` is `chunked` (keep-alive), `close_idle` (keep-alive
    promised, but a second request on a connection finds it closed, as when an upstream drops
    an idle connection just as the request goes out), `until_close` (no length, the body
    ends with the connection) or `ragged` (CRLF line ends, comment and `event:` lines, and
    the body written a few bytes at a time, lines cut anywhere). It counts the connections it
    accepted and keeps the request line of each request."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mode = "chunked"
        self.connections = 0
        self.request_lines: list[bytes] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()
        assert self._ready.wait(10), "the raw upstream did not start"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        serving = asyncio.all_tasks() - {asyncio.current_task()}
        for task in serving:
            task.cancel()
        await asyncio.gather(*serving, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.request_lines.append(head.split(b"\r\n", 1)[0])
                if self.mode == "close_idle" and served:
                    break
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                events = _sse_events()
                if self.mode == "until_close":
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
                    writer.write(b"".join(events))
                    await writer.drain()
                    break
                if self.mode == "ragged":
                    body = b": keep-alive\r\n\r\n" + b"".join(
                        b"event: message\r\n" + e.replace(b"\n\n", b"\r\n\r\n") for e in events
                    )
                    events = [body[i : i + 7] for i in range(0, len(body), 7)]
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                        b"transfer-encoding: chunked\r\n\r\n"
                    )
                    for piece in events:
                        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        await writer.drain()
                        await asyncio.sleep(0)
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    served += 1
                    continue
                chunked = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n"
                )
                await writer.drain()
                served += 1
        writer.close()


@pytest.fixture
def raw_upstream() -> Iterator[RawUpstream]:
    running = RawUpstream()
    running.start()
    yield running
    running.stop()


def _ask(client: httpx.Client, slug: str, stream: bool = False) -> str:
    body: dict[str, Any] = {"model": slug, "messages": [QUESTION], "stream": stream}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    if not stream:
        return str(response.json()["choices"][0]["message"]["content"])
    chunks = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: {")
    ]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def test_turns_reuse_one_keep_alive_connection(
    client: httpx.Client, raw_upstream: RawUpstream, upstream_agent: Callable[..., Any]
) -> None:
    slug, _ = upstream_agent(base_url=f"http://127.0.0.1:{raw_upstream.port}/v1")
    for stream in (False, True, False, True, False):
        assert _ask(client, slug, stream) == "".join(REPLY)
    assert raw_upstream.connections == 1


def test_an_idle_connection_the_upstream_closed_is_replaced(
    client: httpx.Client, raw_upstream: RawUpstream, upstream_agent: Callable[..., Any]
) -> None:
    slug, _ = upstream_agent(base_url=f"http://127.0.0.1:{raw_upstream.port}/v1")
    raw_upstream.mode = "close_idle"
    for _ in range(3):
        assert _ask(client, slug) == "".join(REPLY)
    # Turns 2 and 3 each found their pooled connection closed and went on over a new one.
    assert raw_upstream.connections == 3
    assert len(raw_upstream.request_lines) == 5


def test_a_reply_ended_by_the_connection_is_read_whole(
    client: httpx.Client, raw_upstream: RawUpstream, upstream_agent: Callable[..., Any]
) -> None:
    slug, _ = upstream_agent(base_url=f"http://127.0.0.1:{raw_upstream.port}/v1")
    raw_upstream.mode = "until_close"
    assert _ask(client, slug) == "".join(REPLY)
    assert _ask(client, slug, stream=True) == "".join(REPLY)


def test_lines_cut_anywhere_with_crlf_and_comments_are_read(
    client: httpx.Client, raw_upstream: RawUpstream, upstream_agent: Callable[..., Any]
) -> None:
    slug, _ = upstream_agent(base_url=f"http://127.0.0.1:{raw_upstream.port}/v1")
    raw_upstream.mode = "ragged"
    assert _ask(client, slug, stream=True) == "".join(REPLY)
    assert _ask(client, slug) == "".join(REPLY)
    assert raw_upstream.connections == 1


def test_an_upstream_behind_a_proxy_is_reached_through_it(
    server_factory: Callable[..., contextlib.AbstractContextManager[RunningServer]],
    raw_upstream: RawUpstream,
) -> None:
    # The server's environment names the raw upstream as its HTTP proxy; local addresses,
    # which the fixtures use to reach the server, bypass it.
    proxy = {"HTTP_PROXY": f"http://127.0.0.1:{raw_upstream.port}", "NO_PROXY": "127.0.0.1"}
    saved = {name: os.environ.get(name) for name in proxy}
    os.environ.update(proxy)
    try:
        with server_factory() as server:
            for name, value in saved.items():
                if value is None:
                    del os.environ[name]
                else:
                    os.environ[name] = value
            headers = {"authorization": f"Bearer {server.api_key}"}
            with httpx.Client(
                base_url=server.http_url, headers=headers, timeout=30, trust_env=False
            ) as client:
                backend = {"base_url": "http://upstream.invalid:9/v1", "model": "proxied"}
                body = {"slug": "proxied", "backend": {"openai_compatible": backend}}
                assert client.post("/v1/agents", json=body).status_code == 200
                assert client.post("/v1/agents/proxied:publish").status_code == 200
                assert _ask(client, "proxied", stream=True) == "".join(REPLY)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert raw_upstream.request_lines[-1] == (
        b"POST http://upstream.invalid:9/v1/chat/completions HTTP/1.1"
    )
