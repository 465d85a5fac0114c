"""`make bench-streams`: many SSE replies held open at once, and what each costs the server.

`switchboard serve` (one worker) gets a builtin agent paced by `backend.builtin.delta_interval_ms`
so that a reply streams for tens of seconds; N clients each open one streamed chat completion
at once and read it to its end. The load comes from `hey` when it is installed (a Go tool;
`apt-get install hey`), since a Python client saturates first; otherwise from an asyncio client
on raw sockets spread over several processes. The run reports how many replies completed or
failed (from the server's own turn counts too), how many streams were open at the peak
(`switchboard_active_streams`) and the server's resident memory then, per open stream above
its resident memory before the run."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningServer, run_server

CHAT = "/v1/chat/completions"
# Words of the paced reply: streamed four per delta.
_REPLY = " ".join(
    f"Step {n} of descaling the espresso machine takes care and patience." for n in range(1, 9)
)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _serving_pid(server: RunningServer) -> int:
    """The process that serves: `serve` with one worker runs it in its own process."""
    return server.process.pid


def _samples(http_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{http_url}/metrics", timeout=30).text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _turns(http_url: str, outcome: str) -> float:
    labels = frozenset({("backend", "builtin"), ("outcome", outcome)})
    return _samples(http_url).get(("switchboard_turn_duration_seconds_count", labels), 0.0)


def _paced_agent(server: RunningServer, interval_ms: int) -> str:
    headers = {"authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.http_url, headers=headers, timeout=30) as http:
        slug = f"paced-{uuid.uuid4().hex[:8]}"
        agent = {
            "slug": slug,
            "backend": {"builtin": {"delta_interval_ms": interval_ms}},
            "knowledge": {"top_k": 1},
        }
        http.post("/v1/agents", json=agent).raise_for_status()
        document = {"title": "Descaling", "content": _REPLY}
        http.post(f"/v1/agents/{slug}/documents", json=document).raise_for_status()
        http.post(f"/v1/agents/{slug}:publish").raise_for_status()
        # Warm the server's caches and paths before measuring its memory.
        body = {"model": "support-bot", "messages": [{"role": "user", "content": "Hours?"}]}
        for _ in range(20):
            http.post(CHAT, json={**body, "stream": True}).raise_for_status()
    return slug


def _body(slug: str) -> bytes:
    return json.dumps(
        {
            "model": slug,
            "stream": True,
            "messages": [{"role": "user", "content": "How do I descale the espresso machine?"}],
        }
    ).encode()


def _run_hey(url: str, key: str, body: bytes, streams: int, timeout: int) -> tuple[int, int]:
    result = subprocess.run(
        [
            "hey",
            "-n",
            str(streams),
            "-c",
            str(streams),
            "-t",
            str(timeout),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-H",
            f"Authorization: Bearer {key}",
            "-d",
            body.decode(),
            url + CHAT,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    ok = 0
    in_codes = False
    for line in result.stdout.splitlines():
        if line.startswith("Status code distribution"):
            in_codes = True
        elif in_codes and "[200]" in line:
            ok = int(line.split("]")[1].split()[0])
    return ok, streams - ok


async def _raw_streams(
    host: str, port: int, request: bytes, count: int, limit_seconds: float
) -> int:
    """Opens `count` connections, sends the request on each, reads each reply to its
    `[DONE]`; returns how many got one."""

    async def one() -> bool:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return False
        try:
            writer.write(request)
            seen = b""
            async with asyncio.timeout(limit_seconds):
                while chunk := await reader.read(65536):
                    seen = (seen + chunk)[-64:]
                    if b"data: [DONE]" in seen:
                        return True
            return False
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    results = await asyncio.gather(*(one() for _ in range(count)))
    return sum(results)


def _raw_worker(args: tuple[str, int, bytes, int, float]) -> int:
    return asyncio.run(_raw_streams(*args))


def _run_raw(url: str, key: str, body: bytes, streams: int, timeout: int) -> tuple[int, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    request = (
        f"POST {CHAT} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body
    processes = max(1, min(8, streams // 500))
    shares = [streams // processes + (i < streams % processes) for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        done = pool.map(_raw_worker, [(host, int(port), request, n, timeout) for n in shares])
    ok = sum(done)
    return ok, streams - ok


def measure(streams: int, interval_ms: int, client: str, timeout: int = 180) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory() as workdir,
        run_server(Path(workdir), extra_args=("--log-level", "warning")) as server,
    ):
        slug = _paced_agent(server, interval_ms)
        pid = _serving_pid(server)
        time.sleep(1)
        before_kib = _rss_kib(pid)
        completed_before = _turns(server.http_url, "complete")
        peak = {"streams": 0.0, "rss_kib": float(before_kib)}
        running = True

        def watch() -> None:
            while running:
                try:
                    open_now = _samples(server.http_url).get(
                        ("switchboard_active_streams", frozenset({("door", "openai")})), 0.0
                    )
                except httpx.HTTPError:
                    open_now = 0.0
                rss = _rss_kib(pid)
                if open_now > peak["streams"] or (
                    open_now == peak["streams"] and rss > peak["rss_kib"]
                ):
                    peak["streams"], peak["rss_kib"] = open_now, float(rss)
                time.sleep(0.5)

        watcher = threading.Thread(target=watch)
        watcher.start()
        started = time.monotonic()
        run = _run_hey if client == "hey" else _run_raw
        ok, failed = run(server.http_url, server.api_key, _body(slug), streams, timeout)
        elapsed = time.monotonic() - started
        running = False
        watcher.join()
        completed_turns = _turns(server.http_url, "complete") - completed_before
        return {
            "streams": streams,
            "completed": ok,
            "failed": failed,
            "completed_turns": completed_turns,
            "peak_open": peak["streams"],
            "rss_before_mib": before_kib / 1024,
            "rss_peak_mib": peak["rss_kib"] / 1024,
            "kib_per_stream": (peak["rss_kib"] - before_kib) / max(peak["streams"], 1),
            "seconds": elapsed,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--delta-interval-ms", type=int, default=2000)
    parser.add_argument("--client", choices=("auto", "hey", "asyncio"), default="auto")
    args = parser.parse_args()
    client = args.client
    if client == "auto":
        client = "hey" if shutil.which("hey") else "asyncio"
    print(f"client: {client}; builtin agent pacing {args.delta_interval_ms} ms per delta")
    header = (
        f"{'streams':>8} {'completed':>9} {'failed':>6} {'turns':>6} {'peak open':>9} "
        f"{'RSS before':>10} {'RSS peak':>9} {'KiB/stream':>10} {'seconds':>7}"
    )
    print(header)
    print("-" * len(header))
    for streams in args.streams:
        r = measure(streams, args.delta_interval_ms, client)
        print(
            f"{r['streams']:>8} {r['completed']:>9} {r['failed']:>6} {r['completed_turns']:>6.0f} "
            f"{r['peak_open']:>9.0f} {r['rss_before_mib']:>8.1f}Mi {r['rss_peak_mib']:>7.1f}Mi "
            f"{r['kib_per_stream']:>10.1f} {r['seconds']:>7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
