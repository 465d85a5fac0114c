"""The edge as its own process (`switchboard edge --core`), reaching the core over gRPC: the
layout for scaling edges apart from cores answers like the in-process one."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningServer, run_edge
from tests.http.conftest import SlowAgent


@pytest.fixture(scope="module")
def edge_url(server: RunningServer) -> Iterator[str]:
    with run_edge(server) as url:
        yield url


@pytest.fixture
def edge(edge_url: str, server: RunningServer) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=edge_url, headers=headers, timeout=30) as client:
        yield client


CANADA = {
    "model": "support-bot",
    "messages": [{"role": "user", "content": "Do you ship to Canada?"}],
}


def test_completion_matches_the_in_process_edge(edge: httpx.Client, http: httpx.Client):
    apart = edge.post("/v1/chat/completions", json=CANADA, headers={"x-request-id": "apart-1"})
    together = http.post("/v1/chat/completions", json=CANADA)
    assert apart.status_code == together.status_code == 200
    assert apart.headers["x-request-id"] == "apart-1"
    assert apart.json()["choices"] == together.json()["choices"]
    assert apart.json()["usage"] == together.json()["usage"]
    assert apart.headers["x-session-id"] == apart.json()["session_id"]


def test_stream_is_framed_the_same_way(edge: httpx.Client):
    with edge.stream("POST", "/v1/chat/completions", json={**CANADA, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert "Canada" in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_errors_keep_their_shape(edge: httpx.Client):
    missing = edge.post("/v1/chat/completions", json={**CANADA, "model": "nobody"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    native = edge.get("/v1/agents/nobody")
    assert native.status_code == 404
    assert native.json()["code"] == 5


async def test_leaving_mid_stream_keeps_the_partial_reply(
    edge_url: str, server: RunningServer, slow_agent: SlowAgent
):
    headers = {"authorization": f"Bearer {server.api_key}"}
    async with httpx.AsyncClient(base_url=edge_url, headers=headers, timeout=30) as client:
        created = await client.post("/v1/sessions", json={"agent": f"agents/{slow_agent.id}"})
        session = created.json()["id"]
        async with client.stream(
            "POST", f"/v1/sessions/{session}/messages:stream", json={"content": slow_agent.question}
        ) as response:
            lines = 0
            async for line in response.aiter_lines():
                lines += bool(line)
                if lines == 3:
                    break
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listed = (await client.get(f"/v1/sessions/{session}/messages")).json()["messages"]
            if len(listed) == 2:
                assert listed[1]["status"] == "MESSAGE_STATUS_INCOMPLETE"
                assert listed[1]["content"]
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the partial reply was not stored")
