"""`python -m bench.session_depth`: does a turn cost more late in a long session?

One client sends 500 turns into one session of the demo agent through the HTTP edge (native
`POST /v1/sessions/{id}/messages`) and reports the median latency of turns 5-14 against turns
491-500, in the same run (the first turns warm the server up, so the early window starts at
turn 5). A turn reads only the messages it needs, so the ratio should stay near 1."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.conftest import run_server

QUESTIONS = ("Do you ship to Canada?", "How do returns work?", "When are you open?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--from-turn", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, run_server(Path(workdir)) as server:
        headers = {"authorization": f"Bearer {server.api_key}"}
        with httpx.Client(base_url=server.http_url, headers=headers, timeout=30) as client:
            session = client.post("/v1/sessions", json={"agent": "agents/support-bot"}).json()
            path = f"/v1/sessions/{session['id']}/messages"
            latencies = []
            for turn in range(args.turns):
                started = time.perf_counter()
                sent = client.post(path, json={"content": QUESTIONS[turn % len(QUESTIONS)]})
                latencies.append((time.perf_counter() - started) * 1000)
                assert sent.status_code == 200, sent.text
    first = args.from_turn - 1
    early = statistics.median(latencies[first : first + args.window])
    late = statistics.median(latencies[-args.window :])
    print(f"{'turns':<16} | median ms")
    print("-" * 30)
    print(f"{f'{args.from_turn}-{args.from_turn + args.window - 1}':<16} | {early:9.2f}")
    print(f"{f'{args.turns - args.window + 1}-{args.turns}':<16} | {late:9.2f}")
    print(f"late / early: {late / early:.2f}x")


if __name__ == "__main__":
    main()
