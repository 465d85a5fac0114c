"""`make bench`: non-streaming completions with the builtin backend through each door, for each
way of laying out the server, measured in one run so that the ratios compare like with like.

Layouts: `switchboard serve` with the edge calling the servicers in-process (1 and 2 workers),
and the edge as a second process reaching the core over gRPC (`serve --grpc-only` plus
`switchboard edge`). For each, the HTTP and gRPC doors are measured in alternating rounds with
the load generator in its own process; the table shows each door's median round. p50 at one
client shows the edge's own cost per request (HTTP p50 minus gRPC p50)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import SWITCHBOARD, free_port, run_server

LAYOUTS = ("in-process, 1 worker", "in-process, 2 workers", "edge + core, 2 processes")


@contextlib.contextmanager
def _layout(name: str, workdir: Path) -> Iterator[tuple[str, str, str]]:
    """Yields (HTTP host:port, gRPC host:port, key) of a running server laid out as `name`."""
    if name.startswith("in-process"):
        workers = name.split(", ")[1].split()[0]
        with run_server(workdir, extra_args=("--workers", workers)) as server:
            yield server.http_url.removeprefix("http://"), server.grpc_target, server.api_key
        return
    with run_server(workdir, grpc_only=True) as core:
        http_target = f"127.0.0.1:{free_port()}"
        edge = subprocess.Popen(
            [str(SWITCHBOARD), "edge", "--core", core.grpc_target, "--http-addr", http_target],
            env=os.environ,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://{http_target}/readyz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("the edge did not become ready")
                time.sleep(0.1)
            yield http_target, core.grpc_target, core.api_key
        finally:
            edge.terminate()
            edge.wait(timeout=15)


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

    rows = []
    for layout in LAYOUTS:
        with tempfile.TemporaryDirectory() as workdir, _layout(layout, Path(workdir)) as target:
            http_target, grpc_target, key = target
            for clients in (args.clients, 1):
                results: dict[str, list[dict[str, float]]] = {"http": [], "grpc": []}
                for _ in range(args.rounds):
                    for door, where in (("http", http_target), ("grpc", grpc_target)):
                        results[door].append(_load(door, where, key, args.seconds, clients))
                http, grpc = results["http"], results["grpc"]
                rows.append(
                    (
                        layout,
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
        f"{'layout':<26} {'clients':>7} | {'HTTP /s':>8} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'gRPC /s':>8} {'p50 ms':>7} {'p99 ms':>7} | {'HTTP/gRPC':>9} {'edge p50 +ms':>12}"
    )
    print(header)
    print("-" * len(header))
    for layout, clients, h_rps, h50, h99, g_rps, g50, g99 in rows:
        print(
            f"{layout:<26} {clients:>7} | {h_rps:>8.0f} {h50:>7.2f} {h99:>7.2f} | "
            f"{g_rps:>8.0f} {g50:>7.2f} {g99:>7.2f} | {h_rps / g_rps:>9.2f} {h50 - g50:>12.2f}"
        )


if __name__ == "__main__":
    main()
