"""A load generator, run in its own process on uvloop: closed-loop clients send completions
over HTTP/1.1 keep-alive or gRPC for a fixed time and report throughput and latency percentiles
as JSON on stdout. With `--stream`, each request streams its reply (SSE over HTTP, the
streaming RPC over gRPC), and the time to its first content delta is reported too."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import Coroutine
from typing import Any

import uvloop

QUESTIONS = (
    "Do you ship to Canada?",
    "How do returns work?",
    "When are you open on Saturday?",
    "Is express shipping available?",
    "Can I get a refund?",
    "What is the meaning of life?",
)
# An SSE chunk carrying reply text: a delta with non-empty `content`.
_CONTENT_DELTA = re.compile(rb'"content":\s*"[^"]')


def _http_request(host: str, key: str, model: str, question: str, stream: bool) -> bytes:
    document: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
    }
    if stream:
        document["stream"] = True
        document["stream_options"] = {"include_usage": True}
    body = json.dumps(document).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_chunked(reader: asyncio.StreamReader, started: float) -> float | None:
    """Reads a chunked body to its end; returns when its first content delta arrived."""
    first: float | None = None
    while True:
        size = int((await reader.readline()).split(b";", 1)[0], 16)
        data = await reader.readexactly(size + 2)
        if first is None and _CONTENT_DELTA.search(data):
            first = time.perf_counter() - started
        if size == 0:
            return first


async def _http_client(
    host: str,
    port: int,
    key: str,
    model: str,
    stream: bool,
    stop_at: float,
    latencies: list[float],
    firsts: list[float],
    index: int,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    requests = [_http_request(f"{host}:{port}", key, model, q, stream) for q in QUESTIONS]
    n = index
    while time.perf_counter() < stop_at:
        request = requests[n % len(requests)]
        n += 1
        started = time.perf_counter()
        writer.write(request)
        status = await reader.readline()
        length = 0
        chunked = False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            first = await _read_chunked(reader, started)
        else:
            body = await reader.readexactly(length)
            first = time.perf_counter() - started if _CONTENT_DELTA.search(body) else None
        if not status.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected response {status!r}")
        latencies.append(time.perf_counter() - started)
        if stream:
            if first is None:
                raise RuntimeError("a streamed reply carried no content")
            firsts.append(first)
    writer.close()


async def _grpc_client(
    stub: object,
    key: str,
    model: str,
    stream: bool,
    stop_at: float,
    latencies: list[float],
    firsts: list[float],
    index: int,
) -> None:
    from switchboard.v1 import completion_service_pb2 as pb

    requests = [
        pb.CreateChatCompletionRequest(
            model=model,
            messages=[pb.ChatMessage(role="user", content=q)],
            stream=stream,
            stream_options=pb.StreamOptions(include_usage=stream),
        )
        for q in QUESTIONS
    ]
    metadata = (("authorization", f"Bearer {key}"),)
    n = index
    while time.perf_counter() < stop_at:
        request = requests[n % len(requests)]
        n += 1
        started = time.perf_counter()
        if not stream:
            await stub.CreateChatCompletion(request, metadata=metadata)  # type: ignore[attr-defined]
            latencies.append(time.perf_counter() - started)
            continue
        first: float | None = None
        call = stub.StreamChatCompletion(request, metadata=metadata)  # type: ignore[attr-defined]
        async for chunk in call:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
        latencies.append(time.perf_counter() - started)
        if first is None:
            raise RuntimeError("a streamed reply carried no content")
        firsts.append(first)


def _percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))] * 1000


async def run(
    door: str,
    target: str,
    key: str,
    seconds: float,
    clients: int,
    model: str = "support-bot",
    stream: bool = False,
) -> dict[str, float]:
    host, port = target.rsplit(":", 1)
    latencies: list[float] = []
    firsts: list[float] = []
    if door == "http":

        def client(
            stop_at: float, into: list[float], firsts: list[float], i: int
        ) -> Coroutine[Any, Any, None]:
            return _http_client(host, int(port), key, model, stream, stop_at, into, firsts, i)

        warm = time.perf_counter() + 1
        await asyncio.gather(*(client(warm, [], [], i) for i in range(4)))
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(client(stop_at, latencies, firsts, i) for i in range(clients)))
    else:
        import grpc
        from switchboard.v1 import completion_service_pb2_grpc

        async with grpc.aio.insecure_channel(target) as channel:
            stub = completion_service_pb2_grpc.CompletionServiceStub(channel)
            warm = time.perf_counter() + 1
            await asyncio.gather(
                *(_grpc_client(stub, key, model, stream, warm, [], [], i) for i in range(4))
            )
            started = time.perf_counter()
            stop_at = started + seconds
            await asyncio.gather(
                *(
                    _grpc_client(stub, key, model, stream, stop_at, latencies, firsts, i)
                    for i in range(clients)
                )
            )
    elapsed = time.perf_counter() - started
    latencies.sort()
    firsts.sort()
    result = {
        "requests": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 0.5),
        "p99_ms": _percentile(latencies, 0.99),
    }
    if firsts:
        result["ttft_p50_ms"] = _percentile(firsts, 0.5)
        result["ttft_p99_ms"] = _percentile(firsts, 0.99)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("door", choices=["http", "grpc"])
    parser.add_argument("target")
    parser.add_argument("key")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--model", default="support-bot", help="the agent (or upstream model)")
    parser.add_argument("--stream", action="store_true", help="stream each reply")
    args = parser.parse_args()
    result = uvloop.run(
        run(
            args.door,
            args.target,
            args.key,
            args.seconds,
            args.clients,
            model=args.model,
            stream=args.stream,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
