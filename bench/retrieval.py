"""`python -m bench.retrieval`: knowledge retrieval at scale, on SQLite and PostgreSQL.

For each engine and corpus size, a fresh `switchboard serve` is given a generated corpus
(`bench.corpus`) through `BatchCreateKnowledgeDocuments`, then one client asks every planted
question as a non-streaming completion through the HTTP edge, each question once (so the
ranking cache never answers). Reported: how fast the corpus loaded, hit@1 (the reply is the
planted passage), hit@3 (it is among the reply's three sources, read back from the stored
message) and the p50/p99 latency of the whole completion, as one table. Each planted
question alternates with one to the demo agent of the same server (five passages, each
question made unique so the cache never answers), whose latency shows what a completion
costs there without a large knowledge base: the machines are shared and noisy, so compare
within a row. Last, the search alone is timed in this process for each planted question."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
from sqlalchemy.engine import make_url
from switchboard.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc

from bench.corpus import Corpus, generate
from server.knowledge import search_terms
from server.store import Store
from server.store.database import create_engine
from tests.conftest import POSTGRES_URL, RunningServer, run_server

_BATCH = 500
_DEMO_QUESTIONS = ("Do you ship to Canada?", "How do returns work?", "When are you open?")


@dataclass
class Row:
    engine: str
    passages: int
    load_seconds: float
    documents_per_second: float
    hit1: float
    hit3: float
    p50_ms: float
    p99_ms: float
    demo_p50_ms: float
    demo_p99_ms: float
    search_p50_ms: float
    search_p99_ms: float


@contextlib.contextmanager
def _database(engine: str, workdir: Path) -> Iterator[str | None]:
    """None (the server's own SQLite file), or a fresh PostgreSQL database dropped after."""
    if engine == "sqlite":
        yield None
        return
    name = f"switchboard_bench_{uuid.uuid4().hex[:10]}"
    admin_url = make_url(POSTGRES_URL).set(drivername="postgresql")
    with psycopg.connect(admin_url.render_as_string(hide_password=False), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(POSTGRES_URL).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _load(server: RunningServer, corpus: Corpus) -> tuple[str, float]:
    """Creates and publishes an agent holding the corpus; returns its id and the seconds
    the documents took."""
    metadata = (("authorization", f"Bearer {server.api_key}"),)
    with grpc.insecure_channel(server.grpc_target) as channel:
        agents = agent_service_pb2_grpc.AgentServiceStub(channel)
        agent = agents.CreateAgent(
            agent_service_pb2.CreateAgentRequest(
                agent=agent_pb2.Agent(
                    slug="retrieval-bench",
                    fallback_reply="No idea.",
                    knowledge=agent_pb2.KnowledgeSettings(top_k=3),
                )
            ),
            metadata=metadata,
        )
        started = time.perf_counter()
        for start in range(0, len(corpus.documents), _BATCH):
            agents.BatchCreateKnowledgeDocuments(
                agent_service_pb2.BatchCreateKnowledgeDocumentsRequest(
                    parent=agent.name,
                    requests=[
                        agent_service_pb2.CreateKnowledgeDocumentRequest(
                            parent=agent.name,
                            document=agent_pb2.KnowledgeDocument(
                                title=d.title, content=d.content, source=f"{d.title}.md"
                            ),
                        )
                        for d in corpus.documents[start : start + _BATCH]
                    ],
                ),
                metadata=metadata,
                timeout=600,
            )
        elapsed = time.perf_counter() - started
        agents.PublishAgent(
            agent_service_pb2.PublishAgentRequest(name=agent.name), metadata=metadata
        )
    return agent.id, elapsed


def _ask(
    connection: http.client.HTTPConnection, key: str, agent_id: str, question: str
) -> tuple[float, str, str]:
    """One completion; returns its latency, the reply and the session id."""
    body = json.dumps({"model": agent_id, "messages": [{"role": "user", "content": question}]})
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    started = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"completion answered {response.status}: {payload[:200]!r}")
    reply = json.loads(payload)
    return elapsed, reply["choices"][0]["message"]["content"], reply["session_id"]


def _sources(connection: http.client.HTTPConnection, key: str, session: str) -> list[str]:
    connection.request(
        "GET", f"/v1/sessions/{session}/messages", headers={"authorization": f"Bearer {key}"}
    )
    messages = json.loads(connection.getresponse().read())["messages"]
    return [source["text"] for source in messages[-1].get("sources", [])]


async def _time_searches(database_url: str, agent_id: str, corpus: Corpus) -> list[float]:
    """The search alone: each planted question ranked by a store of this process on the
    server's database (a new store, so no ranking is cached)."""
    store = Store(create_engine(database_url))
    timings = []
    try:
        for planted in corpus.questions:
            started = time.perf_counter()
            terms = search_terms(planted.question)
            await store.knowledge.search_passages(agent_id, terms, limit=3)
            timings.append(time.perf_counter() - started)
    finally:
        await store.close()
    return sorted(timings)


def measure(engine: str, passages: int, questions: int) -> Row:
    corpus = generate(passages, questions=questions)
    with (
        tempfile.TemporaryDirectory() as workdir,
        _database(engine, Path(workdir)) as database_url,
        run_server(Path(workdir), database_url=database_url) as server,
    ):
        agent_id, load_seconds = _load(server, corpus)
        host, port = server.http_url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        for warm in corpus.questions[:20]:
            _ask(connection, server.api_key, agent_id, warm.question + " please")
        latencies, demo, hits1, sessions = [], [], 0, []
        for n, planted in enumerate(corpus.questions):
            elapsed, reply, session = _ask(connection, server.api_key, agent_id, planted.question)
            latencies.append(elapsed)
            hits1 += reply == planted.answer
            sessions.append(session)
            baseline = f"{_DEMO_QUESTIONS[n % len(_DEMO_QUESTIONS)]} (ticket {n})"
            demo.append(_ask(connection, server.api_key, "support-bot", baseline)[0])
        hits3 = sum(
            planted.answer in _sources(connection, server.api_key, session)[:3]
            for planted, session in zip(corpus.questions, sessions, strict=True)
        )
        connection.close()
        searches = asyncio.run(_time_searches(server.database_url, agent_id, corpus))
    latencies.sort()
    demo.sort()
    count = len(corpus.questions)
    p99 = min(count - 1, int(count * 0.99))
    return Row(
        engine=engine,
        passages=corpus.passage_count,
        load_seconds=load_seconds,
        documents_per_second=len(corpus.documents) / load_seconds,
        hit1=hits1 / count,
        hit3=hits3 / count,
        p50_ms=latencies[count // 2] * 1000,
        p99_ms=latencies[p99] * 1000,
        demo_p50_ms=demo[count // 2] * 1000,
        demo_p99_ms=demo[p99] * 1000,
        search_p50_ms=searches[count // 2] * 1000,
        search_p99_ms=searches[p99] * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--questions", type=int, default=1000, help="planted questions")
    args = parser.parse_args()
    rows = [measure(engine, size, args.questions) for size in args.sizes for engine in args.engines]
    print(
        f"\nRetrieval: {args.questions} planted questions, one client, non-streaming "
        "completions through the HTTP edge, builtin backend\n"
    )
    header = (
        f"{'engine':<10} {'passages':>8} | {'load s':>7} {'docs/s':>7} | "
        f"{'hit@1':>6} {'hit@3':>6} | {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'demo p50':>8} {'demo p99':>8} | {'search p50':>10} {'search p99':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.engine:<10} {row.passages:>8} | {row.load_seconds:>7.1f} "
            f"{row.documents_per_second:>7.0f} | {row.hit1:>6.3f} {row.hit3:>6.3f} | "
            f"{row.p50_ms:>7.2f} {row.p99_ms:>7.2f} | {row.demo_p50_ms:>8.2f} "
            f"{row.demo_p99_ms:>8.2f} | {row.search_p50_ms:>10.2f} {row.search_p99_ms:>10.2f}"
        )


if __name__ == "__main__":
    main()
