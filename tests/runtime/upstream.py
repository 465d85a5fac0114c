"""A scriptable OpenAI-compatible upstream, served for real over HTTP by uvicorn in a thread.

Each model name gets a script: the replies to give to its next requests, in order. A reply
sets its chunks (and so the chunk boundaries), tool calls, usage, status code, headers, pauses
and faults. The upstream records every request body and header it received, and notices when
a client closes its connection mid-reply."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from tests.conftest import free_port


@dataclass
class Reply:
    chunks: list[str] = field(default_factory=lambda: ["Hello", " there"])
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    usage: dict[str, int] | None = field(
        default_factory=lambda: {"prompt_tokens": 11, "completion_tokens": 7}
    )
    finish_reason: str = "stop"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error_body: str = '{"error": {"message": "upstream failure"}}'
    # Seconds before the response headers, and between two chunks.
    first_delay: float = 0.0
    delay: float = 0.0
    # After this many chunks: stop sending and hold the connection open (a stall)...
    stall_after: int | None = None
    # ...or drop the connection without finishing the body.
    break_after: int | None = None
    # Answer one whole JSON document even though the request asked for a stream.
    whole_json: bool = False


@dataclass
class Received:
    body: dict[str, Any]
    headers: dict[str, str]


class Upstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.received: dict[str, list[Received]] = defaultdict(list)
        self.disconnects: dict[str, int] = defaultdict(int)
        self._server: uvicorn.Server | None = None

    def script(self, model: str, *replies: Reply) -> None:
        self._scripts[model].extend(replies)

    def wait_for_disconnect(self, model: str, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.disconnects[model]:
                return True
            time.sleep(0.02)
        return False

    def start(self) -> None:
        self._server = _serve_in_thread(self._app, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = await _read_body(receive)
        body = json.loads(raw or b"{}")
        model = str(body.get("model", ""))
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.received[model].append(Received(body, headers))
        script = self._scripts[model]
        reply = script.popleft() if script else Reply()
        if reply.first_delay:
            await asyncio.sleep(reply.first_delay)
        if reply.status != 200:
            await _send_whole(send, reply.status, reply.error_body.encode(), reply.headers)
            return
        if reply.whole_json or not body.get("stream"):
            await _send_whole(send, 200, json.dumps(_whole(reply, model)).encode(), reply.headers)
            return
        watcher = asyncio.ensure_future(_watch_disconnect(receive))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]
                    + [(k.encode(), v.encode()) for k, v in reply.headers.items()],
                }
            )
            for index, event in enumerate(_events(reply, model)):
                if reply.break_after is not None and index >= reply.break_after:
                    raise ConnectionAbortedError("the script breaks the connection here")
                if reply.stall_after is not None and index >= reply.stall_after:
                    await watcher
                    break
                if index and reply.delay:
                    done, _ = await asyncio.wait({watcher}, timeout=reply.delay)
                    if done:
                        break
                if watcher.done():
                    break
                await send({"type": "http.response.body", "body": event, "more_body": True})
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if watcher.done():
                self.disconnects[model] += 1
            watcher.cancel()


def _serve_in_thread(app: Any, port: int) -> uvicorn.Server:
    """`app` served on 127.0.0.1:`port` by uvicorn in a daemon thread, once it listens."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        interface="asgi3",
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    return server


async def _read_body(receive: Any) -> bytes:
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            return raw


async def _watch_disconnect(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _send_whole(send: Any, status: int, body: bytes, headers: dict[str, str]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")]
            + [(k.encode(), v.encode()) for k, v in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _events(reply: Reply, model: str) -> list[bytes]:
    chunks: list[dict[str, Any]] = [_chunk(model, {"role": "assistant", "content": ""})]
    chunks += [_chunk(model, {"content": text}) for text in reply.chunks]
    for index, call in enumerate(reply.tool_calls):
        arguments = call["arguments"]
        half = len(arguments) // 2
        chunks.append(
            _chunk(
                model,
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["name"], "arguments": arguments[:half]},
                        }
                    ]
                },
            )
        )
        chunks.append(
            _chunk(
                model,
                {"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]},
            )
        )
    finish = "tool_calls" if reply.tool_calls else reply.finish_reason
    chunks.append(_chunk(model, {}, finish))
    if reply.usage is not None:
        chunks.append({**_chunk(model, {}), "choices": [], "usage": reply.usage})
    events = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
    return [*events, b"data: [DONE]\n\n"]


def _whole(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.chunks)}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in reply.tool_calls
        ]
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": reply.usage,
    }


@dataclass
class ToolReply:
    status: int = 200
    body: str = '{"ok": true}'
    delay: float = 0.0


class ToolReceiver:
    """Webhook tools: each path answers its scripted reply and records what it was sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.replies: dict[str, ToolReply] = {}
        self.received: dict[str, list[tuple[bytes, dict[str, str]]]] = defaultdict(list)
        self._server: uvicorn.Server | None = None

    def start(self) -> None:
        self._server = _serve_in_thread(self._app, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = await _read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.received[scope["path"]].append((raw, headers))
        reply = self.replies.get(scope["path"], ToolReply())
        if reply.delay:
            await asyncio.sleep(reply.delay)
        await _send_whole(send, reply.status, reply.body.encode(), {})
