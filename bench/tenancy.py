"""`python -m bench.tenancy`: replicas and rate limits on PostgreSQL and Redis, in one run.

Rows: completions/s through the HTTP edge of one `serve` replica, then of two replicas on the
same PostgreSQL database (half the clients on each, as a round-robin balancer would spread
them); and the p50 of a client with an unlimited key beside a client, running at the same
time, with a key whose rate limit is checked in Redis on every request (limits high enough
never to refuse).
The load generator runs in its own processes."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_URL, run_server

REDIS_URL = "redis://127.0.0.1:6379/0"


@contextlib.contextmanager
def _database() -> Iterator[str]:
    name = f"switchboard_bench_{uuid.uuid4().hex[:10]}"
    admin_url = make_url(POSTGRES_URL).set(drivername="postgresql")
    with psycopg.connect(admin_url.render_as_string(hide_password=False), autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _load(target: str, key: str, seconds: float, clients: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.load",
            "http",
            target,
            key,
            "--seconds",
            str(seconds),
            "--clients",
            str(clients),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def _results(*loads: subprocess.Popen[str]) -> list[dict[str, float]]:
    outputs = [load.communicate()[0] for load in loads]
    return [json.loads(output) for output in outputs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, float, float, float]] = []
    with _database() as database, tempfile.TemporaryDirectory() as workdir:
        extra = ("--redis-url", REDIS_URL)
        with (
            run_server(Path(workdir) / "a", database_url=database, extra_args=extra) as a,
            run_server(Path(workdir) / "b", database_url=database, extra_args=extra) as b,
        ):
            targets = [s.http_url.removeprefix("http://") for s in (a, b)]
            with httpx.Client(
                base_url=a.http_url, headers={"authorization": f"Bearer {a.api_key}"}
            ) as admin:
                limited = admin.post(
                    "/v1/keys",
                    json={
                        "scopes": ["chat:write"],
                        "rate_limit": {
                            "requests_per_minute": 10_000_000,
                            "tokens_per_minute": 100_000_000,
                        },
                    },
                ).json()["secret"]
            one, two, free, capped = [], [], [], []
            for _ in range(args.rounds):
                [alone] = _results(_load(targets[0], a.api_key, args.seconds, args.clients))
                one.append(alone)
                half = args.clients // 2
                pair = _results(
                    _load(targets[0], a.api_key, args.seconds, half),
                    _load(targets[1], b.api_key, args.seconds, args.clients - half),
                )
                two.append(
                    {
                        "per_second": sum(r["per_second"] for r in pair),
                        "p50_ms": statistics.median(r["p50_ms"] for r in pair),
                        "p99_ms": max(r["p99_ms"] for r in pair),
                    }
                )
                # Side by side: both keys' clients run at once, so they share every hiccup.
                unlimited, limited_round = _results(
                    _load(targets[0], a.api_key, args.seconds, 1),
                    _load(targets[0], limited, args.seconds, 1),
                )
                free.append(unlimited)
                capped.append(limited_round)

    def median(rounds: list[dict[str, float]], field: str) -> float:
        return statistics.median(r[field] for r in rounds)

    for label, rounds in (
        (f"1 replica, {args.clients} clients", one),
        (f"2 replicas, {args.clients} clients", two),
        ("unlimited key, 1 client beside", free),
        ("rate-limited key (Redis), 1 client", capped),
    ):
        rows.append(
            (
                label,
                median(rounds, "per_second"),
                median(rounds, "p50_ms"),
                median(rounds, "p99_ms"),
            )
        )
    print(f"{'run':<38} | {'HTTP /s':>8} {'p50 ms':>7} {'p99 ms':>7}")
    print("-" * 66)
    for label, per_second, p50, p99 in rows:
        print(f"{label:<38} | {per_second:>8.0f} {p50:>7.2f} {p99:>7.2f}")
    print(f"two replicas / one: {rows[1][1] / rows[0][1]:.2f}x")
    print(f"rate-limit check adds {rows[3][2] - rows[2][2]:+.2f} ms at p50")


if __name__ == "__main__":
    main()
