"""Two `switchboard serve` replicas on one PostgreSQL database and one Redis behave as one
server: sessions, idempotency, rate limits, cancels and publishing cross between them."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningServer
from tests.http.conftest import MANUAL
from tests.security.conftest import count_rows
from tests.tenancy.conftest import REDIS_URL

QUESTION = [{"role": "user", "content": "Do you ship to Canada?"}]


@pytest.fixture(scope="module")
def replicas(server_factory, postgresql_url) -> Iterator[tuple[RunningServer, RunningServer]]:
    args = ("--redis-url", REDIS_URL)
    with server_factory(database_url=postgresql_url, extra_args=args) as a:
        with server_factory(database_url=postgresql_url, extra_args=args) as b:
            yield a, b


def _client(server: RunningServer, key: str | None = None) -> httpx.Client:
    headers = {"authorization": f"Bearer {key or server.api_key}"}
    return httpx.Client(base_url=server.http_url, headers=headers, timeout=30)


def test_a_session_continues_on_the_other_replica(replicas):
    a, b = replicas
    with _client(a) as on_a, _client(b) as on_b:
        session = on_a.post("/v1/sessions", json={"agent": "agents/support-bot"}).json()["id"]
        assert on_a.post(f"/v1/sessions/{session}/messages", json={"content": "Returns?"})
        assert on_b.post(f"/v1/sessions/{session}/messages", json={"content": "Canada?"})
        messages = on_b.get(f"/v1/sessions/{session}/messages").json()["messages"]
    assert [m["position"] for m in messages] == [1, 2, 3, 4]
    assert messages[0]["content"] == "Returns?" and messages[2]["content"] == "Canada?"


async def test_one_idempotent_request_sent_to_both_runs_once(replicas):
    a, b = replicas
    key = f"both-{uuid.uuid4().hex}"
    body = {"model": "support-bot", "messages": QUESTION}
    headers = {"authorization": f"Bearer {a.api_key}", "idempotency-key": key}
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        answers = await asyncio.gather(
            *(
                client.post(f"{server.http_url}/v1/chat/completions", json=body)
                for server in (a, b, a, b, a, b)
            )
        )
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.json()["id"] for answer in answers}) == 1
    session = answers[0].json()["session_id"]
    assert count_rows(a, "usage_records", session_id=session) == 1


def test_a_rate_limit_is_shared(replicas):
    a, b = replicas
    with _client(a) as admin:
        key = admin.post(
            "/v1/keys", json={"scopes": ["chat:write"], "rate_limit": {"requests_per_minute": 3}}
        ).json()["secret"]
    statuses = []
    for server in (a, a, b, b):
        with _client(server, key) as client:
            answer = client.post(
                "/v1/chat/completions", json={"model": "support-bot", "messages": QUESTION}
            )
            statuses.append(answer.status_code)
    assert statuses == [200, 200, 200, 429]


def test_a_cancel_sent_to_one_replica_stops_the_turn_on_the_other(replicas):
    a, b = replicas
    slug = f"slow-{uuid.uuid4().hex[:8]}"
    with _client(a) as on_a, _client(b) as on_b:
        agent = {"slug": slug, "backend": {"builtin": {"delta_interval_ms": 100}}}
        assert on_a.post("/v1/agents", json=agent).status_code == 200
        document = {"title": "Manual", "content": MANUAL}
        assert on_a.post(f"/v1/agents/{slug}/documents", json=document).status_code == 200
        assert on_a.post(f"/v1/agents/{slug}:publish").status_code == 200
        session = on_a.post("/v1/sessions", json={"agent": f"agents/{slug}"}).json()["id"]
        events: list[dict[str, object]] = []
        started = threading.Event()

        def stream() -> None:
            with (
                _client(a) as client,
                client.stream(
                    "POST",
                    f"/v1/sessions/{session}/messages:stream",
                    json={"content": "What does the warranty of the espresso machine cover?"},
                ) as response,
            ):
                for line in response.iter_lines():
                    if line.strip():
                        events.append(json.loads(line)["result"])
                        started.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert started.wait(10)
        cancelled = on_b.post(f"/v1/sessions/{session}:cancel", json={})
        reader.join(timeout=20)
    assert cancelled.json() == {"cancelled_turns": 1}
    assert events[-1]["error"]["reason"] == "TURN_CANCELLED"  # type: ignore[index]


def test_an_agent_published_on_one_replica_is_served_by_the_other_within_a_second(replicas):
    a, b = replicas
    slug = f"fresh-{uuid.uuid4().hex[:8]}"
    with _client(a) as on_a, _client(b) as on_b:
        assert (
            on_a.post("/v1/agents", json={"slug": slug, "fallback_reply": "v1"}).status_code == 200
        )
        assert on_a.post(f"/v1/agents/{slug}:publish").status_code == 200
        body = {"model": slug, "messages": QUESTION}
        assert on_b.post("/v1/chat/completions", json=body).json()["content"] == "v1"
        assert on_a.patch(f"/v1/agents/{slug}", json={"fallback_reply": "v2"}).status_code == 200
        assert on_a.post(f"/v1/agents/{slug}:publish").status_code == 200
        published = time.monotonic()
        while on_b.post("/v1/chat/completions", json=body).json()["content"] != "v2":
            assert time.monotonic() - published < 1.5
            time.sleep(0.05)
