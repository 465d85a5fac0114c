"""`make bench`: non-streaming completions with the builtin backend through each door of one
running server, measured in one run so that the ratios compare like with like.

Each door is measured in alternating rounds (HTTP, gRPC, HTTP, gRPC, ...) against the same
`switchboard serve --demo`, with the load generator in its own process; the table shows the
median round of each door. Latency at a fixed concurrency is the closed-loop latency of
`--clients` clients; p50 at one client shows the edge's own cost per request."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import run_server


def _load(door: str, target: str, key: str, seconds: float, clients: int) -> dict[str, float]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            door,
            target,
            key,
            "--seconds",
            str(seconds),
            "--clients",
            str(clients),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _median(rounds: list[dict[str, float]], field: str) -> float:
    return statistics.median(r[field] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per door")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir, run_server(Path(workdir)) as server:
        http_target = server.http_url.removeprefix("http://")
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for clients in (args.clients, 1):
            for _ in range(args.rounds):
                for door, target in (("http", http_target), ("grpc", server.grpc_target)):
                    round_ = _load(door, target, server.api_key, args.seconds, clients)
                    results.setdefault((door, clients), []).append(round_)

    rows = []
    for clients in (args.clients, 1):
        http, grpc = results[("http", clients)], results[("grpc", clients)]
        rows.append(
            (
                clients,
                _median(http, "per_second"),
                _median(http, "p50_ms"),
                _median(http, "p99_ms"),
                _median(grpc, "per_second"),
                _median(grpc, "p50_ms"),
                _median(grpc, "p99_ms"),
            )
        )
    print(
        f"\nNon-streaming completions, builtin backend, SQLite; median of {args.rounds} "
        f"rounds of {args.seconds:g} s per door\n"
    )
    header = (
        f"{'clients':>7} | {'HTTP /s':>8} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'gRPC /s':>8} {'p50 ms':>7} {'p99 ms':>7} | {'HTTP/gRPC':>9} {'edge p50 +ms':>12}"
    )
    print(header)
    print("-" * len(header))
    for clients, h_rps, h50, h99, g_rps, g50, g99 in rows:
        print(
            f"{clients:>7} | {h_rps:>8.0f} {h50:>7.2f} {h99:>7.2f} | "
            f"{g_rps:>8.0f} {g50:>7.2f} {g99:>7.2f} | {h_rps / g_rps:>9.2f} {h50 - g50:>12.2f}"
        )


if __name__ == "__main__":
    main()
