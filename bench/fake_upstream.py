"""An instant OpenAI-compatible upstream for benchmarks, run in its own process.

`POST …/chat/completions` answers at once: a `chat.completion` JSON document, or, when the body
asks for `"stream": true`, an SSE stream of a role chunk, a few content chunks, a finish chunk, a
usage chunk and `[DONE]` (chunked transfer encoding, one write). It is written on raw asyncio
protocols over uvloop with HTTP/1.1 keep-alive and just enough parsing (the head's end, its
`Content-Length`, whether the body streams), so that it costs far less per request than
anything measured through it.

    python -m bench.fake_upstream --port 8099
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
from typing import cast

import uvloop

MODEL = "bench"
REPLY_WORDS = ("Parcels ", "to Canada ", "arrive within ", "nine days.")
PROMPT_TOKENS, COMPLETION_TOKENS = 24, 8
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_STREAMS = re.compile(rb'"stream"\s*:\s*true')
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)
_MAX_HEAD = 65_536


def _usage() -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


def _json_response() -> bytes:
    body = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(REPLY_WORDS)},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(),
        },
        separators=(",", ":"),
    ).encode()
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _chunk(choices: list[dict[str, object]], usage: dict[str, int] | None = None) -> bytes:
    document = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": choices,
        "usage": usage,
    }
    return b"data: " + json.dumps(document, separators=(",", ":")).encode() + b"\n\n"


def _sse_response() -> bytes:
    events = [_chunk([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}])]
    events += [
        _chunk([{"index": 0, "delta": {"content": word}, "finish_reason": None}])
        for word in REPLY_WORDS
    ]
    events.append(_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    events.append(_chunk([], _usage()))
    events.append(b"data: [DONE]\n\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in events) + b"0\r\n\r\n"
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    return head + body


JSON_RESPONSE = _json_response()
SSE_RESPONSE = _sse_response()
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


class UpstreamProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive; requests on one connection are answered in order."""

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        buffer = self._buffer + data if self._buffer else data
        out = []
        close = False
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    self._transport.close()
                    return
                break
            head = buffer[:end]
            found = _CONTENT_LENGTH.search(head)
            length = int(found.group(1)) if found else 0
            if len(buffer) < end + 4 + length:
                break
            body = buffer[end + 4 : end + 4 + length]
            buffer = buffer[end + 4 + length :]
            if not head.startswith(b"POST ") or b"/chat/completions " not in head[:200]:
                out.append(_NOT_FOUND)
            else:
                out.append(SSE_RESPONSE if _STREAMS.search(body) else JSON_RESPONSE)
            if _CLOSE.search(head):
                close = True
                break
        self._buffer = buffer
        if out:
            self._transport.write(b"".join(out))
        if close:
            self._transport.close()


async def serve(port: int, host: str = "127.0.0.1") -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    server = await loop.create_server(UpstreamProtocol, sock=sock)
    print(f"listening on {host}:{sock.getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
