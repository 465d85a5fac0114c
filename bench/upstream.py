"""`python -m bench.upstream` (`make bench-upstream`): what Switchboard adds in front of a model.

One run starts an instant OpenAI-compatible upstream (`bench.fake_upstream`, its own process)
and `switchboard serve` on a fresh SQLite file, creates and publishes an agent whose backend is
that upstream, then drives completions, non-streaming and streaming, at 1 and 16 connections:
the upstream called directly, through the HTTP edge (`/v1/chat/completions`) and through the
gRPC door (CompletionService). Each measurement runs the load generator (`bench.load`) in its
own process; rounds alternate the paths, and the table shows each one's median round.

Added latency is the path's p50 minus the direct call's p50 at the same connections; for
streams it compares the time to the first content delta (TTFT). The resident memory of the
`serve` process is read once the agent is published and again after the last round. The
table ends with the performance targets and whether this run met them."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.load import QUESTIONS
from tests.conftest import free_port, run_server

PATHS = ("upstream direct", "HTTP edge", "gRPC")
AGENT = "bench-upstream"
# The upstream's reply, which every path must bring back.
REPLY = "Parcels to Canada arrive within nine days."
MAX_ADDED_MS = 1.5
MIN_HTTP_PER_SECOND = 1300
MAX_RSS_MB = 120


@contextlib.contextmanager
def _upstream() -> Iterator[str]:
    """Runs the instant upstream; yields its host:port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_upstream", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        if not process.stdout.readline().startswith("listening"):
            raise RuntimeError("the benchmark upstream did not start")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _publish_agent(http_url: str, key: str, upstream: str) -> None:
    headers = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url=http_url, headers=headers, timeout=10) as client:
        created = client.post(
            "/v1/agents",
            json={
                "slug": AGENT,
                "display_name": "Benchmark upstream",
                "backend": {
                    "openai_compatible": {"base_url": f"http://{upstream}/v1", "model": "bench"}
                },
            },
        )
        created.raise_for_status()
        agent_id = created.json()["id"]
        client.post(f"/v1/agents/{agent_id}:publish", json={}).raise_for_status()
        answer = client.post(
            "/v1/chat/completions",
            json={"model": AGENT, "messages": [{"role": "user", "content": QUESTIONS[0]}]},
        )
        answer.raise_for_status()
        content = answer.json()["choices"][0]["message"]["content"]
        if content != REPLY:
            raise RuntimeError(f"the agent did not answer through the upstream: {content!r}")


def _load(
    door: str, target: str, key: str, model: str, seconds: float, clients: int, stream: bool
) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "bench.load",
        door,
        target,
        key,
        "--model",
        model,
        "--seconds",
        str(seconds),
        "--clients",
        str(clients),
    ]
    if stream:
        command.append("--stream")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _rss_mb(pid: int) -> tuple[float, float]:
    """The resident memory of a process now and at its peak, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()
    return int(fields["VmRSS"][0]) / 1024, int(fields["VmHWM"][0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per path")
    parser.add_argument(
        "--connections", default="1,16", help="comma-separated numbers of connections"
    )
    args = parser.parse_args()
    connections = [int(n) for n in args.connections.split(",")]

    results: dict[tuple[int, bool, str], list[dict[str, float]]] = {}
    with (
        tempfile.TemporaryDirectory() as workdir,
        _upstream() as upstream,
        run_server(Path(workdir)) as server,
    ):
        _publish_agent(server.http_url, server.api_key, upstream)
        rss_at_start, _ = _rss_mb(server.process.pid)
        targets = {
            "upstream direct": ("http", upstream, "bench"),
            "HTTP edge": ("http", server.http_url.removeprefix("http://"), AGENT),
            "gRPC": ("grpc", server.grpc_target, AGENT),
        }
        for _ in range(args.rounds):
            for clients in connections:
                for stream in (False, True):
                    for path in PATHS:
                        door, target, model = targets[path]
                        result = _load(
                            door, target, server.api_key, model, args.seconds, clients, stream
                        )
                        results.setdefault((clients, stream, path), []).append(result)
        rss, peak = _rss_mb(server.process.pid)

    print(
        f"\nCompletions against an instant OpenAI-compatible upstream, SQLite; median of "
        f"{args.rounds} rounds of {args.seconds:g} s per row\n"
    )
    added_at_one: list[float] = []
    header = (
        f"{'path':<16} {'mode':<7} {'conns':>5} | {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'TTFT p50':>8} | {'added p50 ms':>12}"
    )
    print(header)
    print("-" * len(header))
    for clients in connections:
        for stream in (False, True):
            base = _first_ms(results[(clients, stream, "upstream direct")], stream)
            for path in PATHS:
                rounds = results[(clients, stream, path)]
                first = _first_ms(rounds, stream)
                ttft = f"{first:>8.2f}" if stream else f"{'':>8}"
                added = f"{first - base:>12.2f}" if path != "upstream direct" else f"{'':>12}"
                if path != "upstream direct" and clients == 1:
                    added_at_one.append(first - base)
                line = (
                    f"{path:<16} {'stream' if stream else 'unary':<7} {clients:>5} | "
                    f"{_median(rounds, 'per_second'):>7.0f} {_median(rounds, 'p50_ms'):>7.2f} "
                    f"{_median(rounds, 'p99_ms'):>7.2f} {ttft} | {added}"
                )
                print(line.rstrip())
    print(
        f"\nserve RSS: {rss_at_start:.0f} MB once started, {rss:.0f} MB after the run "
        f"(peak {peak:.0f} MB)"
    )
    checks: list[tuple[str, str, bool]] = []
    if added_at_one:
        worst = max(added_at_one)
        checks.append(
            (
                f"added p50 at 1 connection <= {MAX_ADDED_MS} ms (TTFT for streams)",
                f"{worst:.2f} ms at worst",
                worst <= MAX_ADDED_MS,
            )
        )
    if 16 in connections:
        http = _median(results[(16, False, "HTTP edge")], "per_second")
        checks.append(
            (
                f"non-streaming completions through the HTTP edge at 16 connections "
                f">= {MIN_HTTP_PER_SECOND:,}/s",
                f"{http:,.0f}/s",
                http >= MIN_HTTP_PER_SECOND,
            )
        )
    checks.append(
        (f"serve RSS after the run <= {MAX_RSS_MB} MB", f"{rss:.0f} MB", rss <= MAX_RSS_MB)
    )
    print("\ntargets:")
    for target, measured, met in checks:
        print(f"  {'met   ' if met else 'MISSED'} {target}: {measured}")


def _median(rounds: list[dict[str, float]], field: str) -> float:
    return statistics.median(r[field] for r in rounds)


def _first_ms(rounds: list[dict[str, float]], stream: bool) -> float:
    """The p50 that added latency compares: TTFT for streams, the whole reply otherwise."""
    return _median(rounds, "ttft_p50_ms" if stream else "p50_ms")


if __name__ == "__main__":
    main()
