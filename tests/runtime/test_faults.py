"""Cancel and upstream faults: the upstream connection closes at once, partial replies are kept
as incomplete, and every fault maps to a clear error in bounded time."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import free_port
from tests.runtime.upstream import Reply, Upstream

QUESTION = {"role": "user", "content": "When do parcels to Norway arrive?"}
SLOW = Reply(chunks=[f"word{n} " for n in range(60)], delay=0.1)


def _sdk(server) -> OpenAI:
    return OpenAI(base_url=f"{server.http_url}/v1", api_key=server.api_key, max_retries=0)


def _stored_reply(client: httpx.Client, session: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        messages = client.get(f"/v1/sessions/{session}/messages").json().get("messages", [])
        if messages and messages[-1]["role"] == "ROLE_ASSISTANT":
            return messages[-1]
        assert time.monotonic() < deadline, "the partial reply was not stored"
        time.sleep(0.05)


def test_cancel_rpc_stops_the_upstream_and_keeps_the_partial_reply(
    client: httpx.Client, upstream: Upstream, upstream_agent
):
    slug, model = upstream_agent()
    upstream.script(model, SLOW)
    session = client.post("/v1/sessions", json={"agent": f"agents/{slug}"}).json()["id"]
    lines: list[str] = []
    with client.stream(
        "POST", f"/v1/sessions/{session}/messages:stream", json={"content": "Tell me all."}
    ) as response:
        for line in response.iter_lines():
            if not line.strip():
                continue
            lines.append(line)
            if len(lines) == 3:
                cancelled = client.post(f"/v1/sessions/{session}:cancel", json={})
                assert cancelled.json() == {"cancelled_turns": 1}
    events = [json.loads(line)["result"] for line in lines]
    assert events[-1]["error"] == {
        "code": "CANCELLED",
        "message": "the turn was cancelled",
        "reason": "TURN_CANCELLED",
    }
    assert upstream.wait_for_disconnect(model)
    reply = _stored_reply(client, session)
    assert reply["status"] == "MESSAGE_STATUS_INCOMPLETE"
    assert reply["content"].startswith("word0 word1 ")
    assert len(reply["content"].split()) < 60
    assert reply["usage"]["completion_tokens"] > 0
    # Nothing runs any more.
    assert client.post(f"/v1/sessions/{session}:cancel", json={}).json() == {"cancelled_turns": 0}


def test_a_client_that_leaves_closes_the_upstream_connection(
    runtime_server, client: httpx.Client, upstream: Upstream, upstream_agent
):
    slug, model = upstream_agent()
    upstream.script(model, SLOW)
    stream = _sdk(runtime_server).chat.completions.create(
        model=slug, messages=[QUESTION], stream=True
    )
    session = ""
    for chunk in stream:
        session = chunk.session_id  # type: ignore[attr-defined]
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    assert upstream.wait_for_disconnect(model)
    reply = _stored_reply(client, session)
    assert reply["status"] == "MESSAGE_STATUS_INCOMPLETE"
    assert reply["content"].startswith("word0")


def _refused_port() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


def test_connection_refused_is_502_after_bounded_retries(runtime_server, upstream_agent):
    slug, _ = upstream_agent(base_url=_refused_port())
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        _sdk(runtime_server).chat.completions.create(model=slug, messages=[QUESTION])
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_error"  # type: ignore[index]
    assert time.monotonic() - started < 5


def test_upstream_5xx_is_retried_then_502(runtime_server, upstream: Upstream, upstream_agent):
    slug, model = upstream_agent()
    upstream.script(model, *[Reply(status=503) for _ in range(3)])
    with pytest.raises(openai.APIStatusError) as caught:
        _sdk(runtime_server).chat.completions.create(model=slug, messages=[QUESTION])
    assert caught.value.status_code == 502
    assert "HTTP 503" in caught.value.message
    assert len(upstream.received[model]) == 3

    upstream.script(model, Reply(status=500), Reply(chunks=["Recovered."]))
    reply = _sdk(runtime_server).chat.completions.create(model=slug, messages=[QUESTION])
    assert reply.choices[0].message.content == "Recovered."


def test_no_first_byte_in_time_is_504(runtime_server, upstream: Upstream, upstream_agent):
    slug, model = upstream_agent(upstream={"timeout_ms": 300})
    upstream.script(model, Reply(first_delay=3))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        _sdk(runtime_server).chat.completions.create(model=slug, messages=[QUESTION])
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "upstream_timeout"  # type: ignore[index]
    assert time.monotonic() - started < 2.5


def test_a_stall_mid_stream_ends_with_an_error_event(
    runtime_server, client: httpx.Client, upstream: Upstream, upstream_agent
):
    slug, model = upstream_agent(upstream={"timeout_ms": 300})
    upstream.script(model, Reply(chunks=["Part one, ", "part two"], stall_after=2))
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": slug, "messages": [QUESTION], "stream": True},
    ) as response:
        events = [line for line in response.iter_lines() if line]
    assert events[-1] != "data: [DONE]"
    error = json.loads(events[-1].removeprefix("data: "))["error"]
    assert error["code"] == "upstream_timeout"
    session = json.loads(events[0].removeprefix("data: "))["session_id"]
    reply = _stored_reply(client, session)
    assert reply["status"] == "MESSAGE_STATUS_INCOMPLETE"
    assert reply["content"] == "Part one, "


def test_a_broken_upstream_stream_keeps_the_partial_reply(
    client: httpx.Client, upstream: Upstream, upstream_agent
):
    slug, model = upstream_agent()
    upstream.script(model, Reply(chunks=["Half an ", "answer", " never ends"], break_after=3))
    session = client.post("/v1/sessions", json={"agent": f"agents/{slug}"}).json()["id"]
    response = client.post(f"/v1/sessions/{session}/messages:stream", json={"content": "Hi"})
    events = [json.loads(line)["result"] for line in response.text.splitlines() if line.strip()]
    assert events[-1]["error"]["reason"] == "UPSTREAM_ERROR"
    assert "broke off" in events[-1]["error"]["message"]
    assert [e["content"]["text"] for e in events[:-1]] == ["Half an ", "answer"]
    reply = _stored_reply(client, session)
    assert reply["status"] == "MESSAGE_STATUS_INCOMPLETE"
    assert reply["content"] == "Half an answer"


def test_upstream_429_passes_its_retry_after(runtime_server, upstream: Upstream, upstream_agent):
    slug, model = upstream_agent()
    upstream.script(model, Reply(status=429, headers={"retry-after": "7"}))
    with pytest.raises(openai.RateLimitError) as caught:
        _sdk(runtime_server).chat.completions.create(model=slug, messages=[QUESTION])
    assert caught.value.response.headers["retry-after"] == "7"
    assert len(upstream.received[model]) == 1


def test_upstream_credentials_refused_is_502(runtime_server, upstream: Upstream, upstream_agent):
    slug, model = upstream_agent()
    upstream.script(model, Reply(status=403))
    with pytest.raises(openai.APIStatusError) as caught:
        _sdk(runtime_server).chat.completions.create(model=slug, messages=[QUESTION])
    assert caught.value.status_code == 502
    assert "upstream credentials were refused" in caught.value.message


def test_a_missing_key_variable_is_named(runtime_server, upstream_agent):
    slug, _ = upstream_agent(upstream={"api_key_env": "SWITCHBOARD_TEST_NOT_SET"})
    with pytest.raises(openai.APIStatusError) as caught:
        _sdk(runtime_server).chat.completions.create(model=slug, messages=[QUESTION])
    assert caught.value.status_code == 502
    assert "SWITCHBOARD_TEST_NOT_SET is not set" in caught.value.message


def test_concurrent_streams_cancel_only_their_own_session(
    client: httpx.Client, upstream: Upstream, upstream_agent
):
    slug, model = upstream_agent()
    upstream.script(model, SLOW, Reply(chunks=["short ", "answer"], delay=0.3))
    sessions = [
        client.post("/v1/sessions", json={"agent": f"agents/{slug}"}).json()["id"] for _ in range(2)
    ]
    finished: dict[str, str] = {}

    def consume(session: str) -> None:
        response = client.post(f"/v1/sessions/{session}/messages:stream", json={"content": "Hi"})
        finished[session] = response.text.splitlines()[-1]

    threads = [threading.Thread(target=consume, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    assert client.post(f"/v1/sessions/{sessions[0]}:cancel", json={}).json() == {
        "cancelled_turns": 1
    }
    for thread in threads:
        thread.join(timeout=20)
    assert "TURN_CANCELLED" in finished[sessions[0]]
    assert "done" in finished[sessions[1]]
