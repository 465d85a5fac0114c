"""`python -m bench.session_depth`: does a turn cost more late in a long session?

One client talks to `switchboard serve` through the HTTP edge (native
`POST /v1/sessions/{id}/messages`). For each agent (the builtin demo agent, which reads only the
new question, and an agent on an instant OpenAI-compatible upstream, whose prompt carries the
history that fits its context budget), a deep session is first filled to `--depth` turns. Then
rounds alternate one turn into a shallow session (turns 5 to 14 of a session made for the
round) with one turn into the deep one, so both see the same machine at the same moments; the
table gives the median of each and their ratio. A turn reads only the messages it needs, so the
ratio should stay near 1."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.upstream import AGENT, _publish_agent, _upstream
from tests.conftest import run_server

QUESTIONS = ("Do you ship to Canada?", "How do returns work?", "When are you open?")
# A shallow session's measured turns are its 5th to 14th: the first ones warm it up.
SHALLOW_FROM = 5
SHALLOW_TURNS = 10
MAX_RATIO = 1.2


def _turn(client: httpx.Client, session: str, turn: int) -> float:
    started = time.perf_counter()
    sent = client.post(
        f"/v1/sessions/{session}/messages", json={"content": QUESTIONS[turn % len(QUESTIONS)]}
    )
    elapsed = (time.perf_counter() - started) * 1000
    assert sent.status_code == 200, sent.text
    return elapsed


def _session(client: httpx.Client, agent: str) -> str:
    created = client.post("/v1/sessions", json={"agent": f"agents/{agent}"})
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def _measure(client: httpx.Client, agent: str, depth: int, rounds: int) -> tuple[float, float]:
    """The median turn of shallow and of deep sessions, alternated."""
    deep = _session(client, agent)
    for turn in range(depth):
        _turn(client, deep, turn)
    shallow_ms: list[float] = []
    deep_ms: list[float] = []
    for _ in range(rounds):
        shallow = _session(client, agent)
        for turn in range(SHALLOW_FROM - 1):
            _turn(client, shallow, turn)
        for turn in range(SHALLOW_TURNS):
            shallow_ms.append(_turn(client, shallow, turn))
            deep_ms.append(_turn(client, deep, turn))
    return statistics.median(shallow_ms), statistics.median(deep_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depth", type=int, default=500, help="turns in the deep session")
    parser.add_argument("--rounds", type=int, default=10, help="shallow sessions, 10 turns each")
    args = parser.parse_args()
    rows = []
    with (
        tempfile.TemporaryDirectory() as workdir,
        _upstream() as upstream,
        run_server(Path(workdir)) as server,
    ):
        _publish_agent(server.http_url, server.api_key, upstream)
        headers = {"authorization": f"Bearer {server.api_key}"}
        with httpx.Client(base_url=server.http_url, headers=headers, timeout=30) as client:
            for label, agent in (("builtin", "support-bot"), ("upstream", AGENT)):
                shallow, deep = _measure(client, agent, args.depth, args.rounds)
                rows.append((label, shallow, deep))
    last = SHALLOW_FROM + SHALLOW_TURNS - 1
    print(f"{'agent':<10} | turns {SHALLOW_FROM}-{last} ms | turns {args.depth}+ ms | deep/shallow")
    print("-" * 62)
    for label, shallow, deep in rows:
        print(f"{label:<10} | {shallow:15.2f} | {deep:13.2f} | {deep / shallow:11.2f}x")
    worst = max(deep / shallow for _, shallow, deep in rows)
    verdict = "met   " if worst <= MAX_RATIO else "MISSED"
    print(f"\ntarget:\n  {verdict} a deep turn costs <= {MAX_RATIO}x a shallow one: {worst:.2f}x")


if __name__ == "__main__":
    main()
