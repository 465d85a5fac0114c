"""Long streams: client disconnects cancel the turn, silence is filled with pings."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from tests.conftest import RunningServer
from tests.http.conftest import MANUAL, SlowAgent
from tests.operating.conftest import samples, value


async def _messages(client: httpx.AsyncClient, session: str) -> list[dict]:
    """The session's messages; none while a new session's first turn is still unwritten."""
    response = await client.get(f"/v1/sessions/{session}/messages")
    if response.status_code == 404:
        return []
    return response.json()["messages"]


async def _open_streams(client: httpx.AsyncClient, door: str) -> float:
    scraped = samples((await client.get("/metrics")).text)
    return value(scraped, "switchboard_active_streams", door=door)


async def _until_no_longer_open(client: httpx.AsyncClient, door: str, before: float) -> None:
    """The edge stops serving a stream whose client left: it counts as open no longer."""
    deadline = time.monotonic() + 3
    while await _open_streams(client, door) > before:
        assert time.monotonic() < deadline, "the stream is still open after its client left"
        await asyncio.sleep(0.05)


async def test_disconnect_mid_stream_keeps_the_partial_reply_incomplete(
    async_http: httpx.AsyncClient, slow_agent: SlowAgent
) -> None:
    created = await async_http.post("/v1/sessions", json={"agent": f"agents/{slow_agent.id}"})
    session = created.json()["id"]
    open_before = await _open_streams(async_http, "native")
    received: list[str] = []
    async with httpx.AsyncClient(
        base_url=async_http.base_url, headers=async_http.headers, timeout=30
    ) as client:
        async with client.stream(
            "POST",
            f"/v1/sessions/{session}/messages:stream",
            json={"content": slow_agent.question},
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                event = json.loads(line)["result"]
                if "content" in event:
                    received.append(event["content"]["text"])
                if len(received) == 3:
                    break
    started = time.monotonic()

    reply = None
    while time.monotonic() - started < 10:
        messages = await _messages(async_http, session)
        if len(messages) == 2 and messages[1]["status"] != "MESSAGE_STATUS_UNSPECIFIED":
            reply = messages[1]
            break
        await asyncio.sleep(0.05)
    assert reply is not None, "the cancelled turn was not recorded"
    assert reply["role"] == "ROLE_ASSISTANT"
    assert reply["status"] == "MESSAGE_STATUS_INCOMPLETE"
    assert reply["content"].startswith("".join(received))
    assert 0 < len(reply["content"]) < len(MANUAL) // 2
    # At 40 ms per delta the whole reply takes seconds; cancellation must be prompt.
    assert time.monotonic() - started < 3
    await _until_no_longer_open(async_http, "native", open_before)


async def test_openai_stream_disconnect_cancels_the_turn(
    async_http: httpx.AsyncClient, slow_agent: SlowAgent
) -> None:
    request = {
        "model": slow_agent.slug,
        "stream": True,
        "messages": [{"role": "user", "content": slow_agent.question}],
    }
    open_before = await _open_streams(async_http, "openai")
    async with httpx.AsyncClient(
        base_url=async_http.base_url, headers=async_http.headers, timeout=30
    ) as client:
        async with client.stream("POST", "/v1/chat/completions", json=request) as response:
            session = response.headers["x-session-id"]
            seen = 0
            async for line in response.aiter_lines():
                seen += line.startswith("data: ")
                if seen == 3:
                    break

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        messages = await _messages(async_http, session)
        if len(messages) == 2 and messages[1]["status"] == "MESSAGE_STATUS_INCOMPLETE":
            assert messages[1]["content"]
            await _until_no_longer_open(async_http, "openai", open_before)
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not incomplete: {await _messages(async_http, session)}")


def test_silent_streams_carry_ping_comments(
    server: RunningServer, http: httpx.Client, paced_agent: SlowAgent, pinging_edge: str
) -> None:
    headers = {"authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=pinging_edge, headers=headers, timeout=30) as client:
        request = {
            "model": paced_agent.slug,
            "stream": True,
            "messages": [{"role": "user", "content": paced_agent.question}],
        }
        with client.stream("POST", "/v1/chat/completions", json=request) as response:
            frames: list[bytes] = []
            buffer = b""
            for data in response.iter_bytes():
                buffer += data
                while b"\n\n" in buffer:
                    frame, buffer = buffer.split(b"\n\n", 1)
                    frames.append(frame)
                if sum(f.startswith(b"data: {") for f in frames) >= 4:
                    break
        assert b": ping" in frames
        assert all(f == b": ping" or f.startswith(b"data: ") for f in frames)

        session = http.post("/v1/sessions", json={"agent": f"agents/{paced_agent.id}"}).json()["id"]
        with client.stream(
            "POST",
            f"/v1/sessions/{session}/messages:stream",
            json={"content": paced_agent.question},
            headers={"accept": "text/event-stream"},
        ) as response:
            buffer = b""
            for data in response.iter_bytes():
                buffer += data
                if buffer.count(b"data: ") >= 3:
                    break
        assert b": ping\n\n" in buffer


def test_second_edge_applies_its_own_body_limit(server: RunningServer, pinging_edge: str) -> None:
    headers = {"authorization": f"Bearer {server.api_key}"}
    body = {"model": "support-bot", "messages": [{"role": "user", "content": "x" * 70_000}]}
    response = httpx.post(f"{pinging_edge}/v1/chat/completions", json=body, headers=headers)

    assert response.status_code == 413
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_disconnect_during_a_unary_call_cancels_the_turn(
    async_http: httpx.AsyncClient, slow_agent: SlowAgent
) -> None:
    created = await async_http.post("/v1/sessions", json={"agent": f"agents/{slow_agent.id}"})
    session = created.json()["id"]
    async with httpx.AsyncClient(
        base_url=async_http.base_url, headers=async_http.headers, timeout=30
    ) as client:
        send = client.post(
            f"/v1/sessions/{session}/messages", json={"content": slow_agent.question}
        )
        # The whole reply takes seconds at 40 ms per delta; the client gives up long before.
        try:
            async with asyncio.timeout(0.5):
                response = await send
        except TimeoutError:
            pass
        else:
            raise AssertionError(f"answered too fast: {response.status_code} {response.text}")

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        messages = await _messages(async_http, session)
        if len(messages) == 2 and messages[1]["status"] == "MESSAGE_STATUS_INCOMPLETE":
            assert 0 < len(messages[1]["content"]) < len(MANUAL) // 2
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not incomplete: {await _messages(async_http, session)}")
