"""A load generator, run in its own process: closed-loop clients send non-streaming
completions over HTTP/1.1 keep-alive or gRPC for a fixed time and report throughput and
latency percentiles as JSON on stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

QUESTIONS = (
    "Do you ship to Canada?",
    "How do returns work?",
    "When are you open on Saturday?",
    "Is express shipping available?",
    "Can I get a refund?",
    "What is the meaning of life?",
)


def _http_request(host: str, key: str, question: str) -> bytes:
    body = json.dumps(
        {"model": "support-bot", "messages": [{"role": "user", "content": question}]}
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _http_client(
    host: str, port: int, key: str, stop_at: float, latencies: list[float], index: int
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    requests = [_http_request(f"{host}:{port}", key, q) for q in QUESTIONS]
    n = index
    while time.perf_counter() < stop_at:
        request = requests[n % len(requests)]
        n += 1
        started = time.perf_counter()
        writer.write(request)
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        if not status.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected response {status!r}")
        latencies.append(time.perf_counter() - started)
    writer.close()


async def _grpc_client(
    stub: object, key: str, stop_at: float, latencies: list[float], index: int
) -> None:
    from switchboard.v1 import completion_service_pb2 as pb

    requests = [
        pb.CreateChatCompletionRequest(
            model="support-bot", messages=[pb.ChatMessage(role="user", content=q)]
        )
        for q in QUESTIONS
    ]
    metadata = (("authorization", f"Bearer {key}"),)
    n = index
    while time.perf_counter() < stop_at:
        request = requests[n % len(requests)]
        n += 1
        started = time.perf_counter()
        await stub.CreateChatCompletion(request, metadata=metadata)  # type: ignore[attr-defined]
        latencies.append(time.perf_counter() - started)


async def run(door: str, target: str, key: str, seconds: float, clients: int) -> dict[str, float]:
    host, port = target.rsplit(":", 1)
    latencies: list[float] = []
    if door == "http":
        warm = time.perf_counter() + 1
        await asyncio.gather(*(_http_client(host, int(port), key, warm, [], i) for i in range(4)))
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(
            *(_http_client(host, int(port), key, stop_at, latencies, i) for i in range(clients))
        )
    else:
        import grpc
        from switchboard.v1 import completion_service_pb2_grpc

        async with grpc.aio.insecure_channel(target) as channel:
            stub = completion_service_pb2_grpc.CompletionServiceStub(channel)
            warm = time.perf_counter() + 1
            await asyncio.gather(*(_grpc_client(stub, key, warm, [], i) for i in range(4)))
            started = time.perf_counter()
            stop_at = started + seconds
            await asyncio.gather(
                *(_grpc_client(stub, key, stop_at, latencies, i) for i in range(clients))
            )
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("door", choices=["http", "grpc"])
    parser.add_argument("target")
    parser.add_argument("key")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    print(
        json.dumps(asyncio.run(run(args.door, args.target, args.key, args.seconds, args.clients)))
    )


if __name__ == "__main__":
    main()
