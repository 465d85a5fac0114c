"""Idempotency is exact: concurrent duplicates run one turn, on SQLite and on PostgreSQL, on
every route that takes the header, streams included."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx

from tests.conftest import RunningServer
from tests.security.conftest import count_rows

QUESTION = {"role": "user", "content": "How do returns work?"}


def _client(server: RunningServer) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {server.api_key}"}
    return httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=60)


async def test_twenty_concurrent_duplicates_run_one_turn(any_server: RunningServer) -> None:
    key = f"checkout-{uuid.uuid4().hex}"
    body = {"model": "support-bot", "messages": [QUESTION]}
    async with _client(any_server) as client:
        answers = await asyncio.gather(
            *(
                client.post("/v1/chat/completions", json=body, headers={"idempotency-key": key})
                for _ in range(20)
            )
        )
    assert [a.status_code for a in answers] == [200] * 20
    bodies = [a.json() for a in answers]
    assert len({b["id"] for b in bodies}) == 1
    session = bodies[0]["session_id"]
    assert count_rows(any_server, "messages", session_id=session) == 2
    assert count_rows(any_server, "usage_records", session_id=session) == 1


async def test_twenty_concurrent_sends_into_one_session_append_one_turn(
    any_server: RunningServer,
) -> None:
    key = f"send-{uuid.uuid4().hex}"
    async with _client(any_server) as client:
        session = (await client.post("/v1/sessions", json={"agent": "agents/support-bot"})).json()
        path = f"/v1/sessions/{session['id']}/messages"
        answers = await asyncio.gather(
            *(
                client.post(path, json={"content": "Returns?"}, headers={"idempotency-key": key})
                for _ in range(20)
            )
        )
        assert [a.status_code for a in answers] == [200] * 20
        assert len({a.json()["reply"]["id"] for a in answers}) == 1
        messages = (await client.get(path)).json()["messages"]
    assert len(messages) == 2
    assert count_rows(any_server, "usage_records", session_id=session["id"]) == 1


async def test_concurrent_streams_with_one_key_replay_the_first(
    any_server: RunningServer,
) -> None:
    key = f"stream-{uuid.uuid4().hex}"
    body = {
        "model": "support-bot",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [QUESTION],
    }

    async def stream(client: httpx.AsyncClient) -> list[dict[str, object]]:
        headers = {"idempotency-key": key}
        async with client.stream(
            "POST", "/v1/chat/completions", json=body, headers=headers
        ) as response:
            assert response.status_code == 200
            lines = [line async for line in response.aiter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]

    async with _client(any_server) as client:
        streams = await asyncio.gather(*(stream(client) for _ in range(5)))
    texts = {
        "".join(c["choices"][0]["delta"].get("content") or "" for c in s if c["choices"])
        for s in streams
    }
    assert len(texts) == 1 and "30 days" in texts.pop()
    assert len({s[0]["id"] for s in streams}) == 1
    for chunks in streams:
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["usage"]["total_tokens"] > 0
    session = streams[0][0]["session_id"]
    assert count_rows(any_server, "messages", session_id=session) == 2
    assert count_rows(any_server, "usage_records", session_id=session) == 1


async def test_native_stream_replays_its_events(server: RunningServer) -> None:
    key = f"native-{uuid.uuid4().hex}"
    async with _client(server) as client:
        session = (await client.post("/v1/sessions", json={"agent": "agents/support-bot"})).json()
        path = f"/v1/sessions/{session['id']}/messages:stream"

        async def events() -> list[dict[str, object]]:
            response = await client.post(
                path, json={"content": "When are you open?"}, headers={"idempotency-key": key}
            )
            assert response.status_code == 200
            return [json.loads(line)["result"] for line in response.text.splitlines() if line]

        first, again = await events(), await events()
    text = "".join(e["content"]["text"] for e in first if "content" in e)  # type: ignore[index]
    replayed = "".join(e["content"]["text"] for e in again if "content" in e)  # type: ignore[index]
    assert text == replayed and "Monday" in text
    assert first[-1]["done"]["message"] == again[-1]["done"]["message"]  # type: ignore[index]
    assert "quick_replies" in again[-2]
    assert count_rows(server, "messages", session_id=session["id"]) == 2


async def test_keys_belong_to_the_api_key_that_sent_them(server: RunningServer) -> None:
    key = f"shared-{uuid.uuid4().hex}"
    body = {"model": "support-bot", "messages": [QUESTION]}
    async with _client(server) as client:
        other = await client.post("/v1/keys", json={"scopes": ["chat:write"]})
        mine = await client.post(
            "/v1/chat/completions", json=body, headers={"idempotency-key": key}
        )
        theirs = await client.post(
            "/v1/chat/completions",
            json=body,
            headers={"idempotency-key": key, "authorization": f"Bearer {other.json()['secret']}"},
        )
        changed = await client.post(
            "/v1/chat/completions",
            json={**body, "messages": [{"role": "user", "content": "Something else"}]},
            headers={"idempotency-key": key},
        )
    assert mine.status_code == theirs.status_code == 200
    assert mine.json()["id"] != theirs.json()["id"]
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "idempotency_conflict"


async def test_a_failed_turn_frees_its_key(server: RunningServer) -> None:
    key = f"retry-{uuid.uuid4().hex}"
    async with _client(server) as client:
        session = (await client.post("/v1/sessions", json={"agent": "agents/support-bot"})).json()
        path = f"/v1/sessions/{session['id']}/messages"
        body = {"content": "Returns?"}
        deleted = await client.delete(f"/v1/sessions/{session['id']}")
        assert deleted.status_code == 200
        missing = await client.post(path, json=body, headers={"idempotency-key": key})
        assert missing.status_code == 404
    assert count_rows(server, "idempotency_keys", key=key) == 0
