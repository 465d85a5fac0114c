"""`POST /v1/chat/completions` over raw HTTP: the exact JSON shape and the SSE bytes."""

from __future__ import annotations

import json

import httpx

CANADA = [{"role": "user", "content": "Do you ship to Canada?"}]


def _events(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n\n"), raw[-200:]
    return raw[:-2].split(b"\n\n")


def _chunks(events: list[bytes]) -> list[dict]:
    return [json.loads(e.removeprefix(b"data: ")) for e in events if e != b"data: [DONE]"]


def test_completion_has_the_exact_openai_shape(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": "support-bot", "messages": CANADA})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "system_fingerprint",
        "agent_id",
        "session_id",
        "content",
    }
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert type(body["created"]) is int
    assert body["model"] == "support-bot"
    assert body["agent_id"].startswith("agt_")
    assert body["session_id"].startswith("sess_")
    assert response.headers["x-session-id"] == body["session_id"]
    [choice] = body["choices"]
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": body["content"], "refusal": None},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert "Canada" in body["content"]
    usage = body["usage"]
    assert all(type(usage[k]) is int for k in ("prompt_tokens", "completion_tokens"))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # The literal bytes carry the nulls, not just a parser's defaults.
    assert b'"logprobs":null' in response.content
    assert b'"refusal":null' in response.content


def test_sse_stream_is_framed_as_openai_sends_it(http: httpx.Client) -> None:
    request = {
        "model": "support-bot",
        "messages": CANADA,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with http.stream("POST", "/v1/chat/completions", json=request) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read()

    assert b"event:" not in raw
    events = _events(raw)
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events)
    assert events[-1] == b"data: [DONE]"
    chunks = _chunks(events)
    assert len({c["id"] for c in chunks}) == 1
    assert len({c["created"] for c in chunks}) == 1
    assert all(type(c["created"]) is int and c["object"] == "chat.completion.chunk" for c in chunks)
    assert response.headers["x-session-id"] == chunks[0]["session_id"]

    *choice_chunks, usage_chunk = chunks
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in choice_chunks)
    deltas = [c["choices"][0]["delta"] for c in choice_chunks]
    assert deltas[0]["role"] == "assistant"
    assert all("role" not in d for d in deltas[1:])
    assert deltas[-1] == {}
    finish = [c["choices"][0]["finish_reason"] for c in choice_chunks]
    assert finish[:-1] == [None] * (len(finish) - 1)
    assert finish[-1] == "stop"
    assert all(c["choices"][0]["logprobs"] is None for c in choice_chunks)
    assert b'"finish_reason":null' in raw
    text = "".join(d.get("content", "") for d in deltas)
    assert "Canada" in text


def test_sse_stream_without_usage_has_no_usage_chunk(http: httpx.Client) -> None:
    request = {"model": "support-bot", "messages": CANADA, "stream": True}
    raw = http.post("/v1/chat/completions", json=request).content

    chunks = _chunks(_events(raw))
    assert raw.endswith(b"data: [DONE]\n\n")
    assert all(c["choices"] for c in chunks)
    assert all(c["usage"] is None for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_text_parts_alias_and_unknown_fields_are_accepted(http: httpx.Client) -> None:
    request = {
        "agent_id": "support-bot",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Do you ship "},
                    {"type": "text", "text": "to Canada?"},
                ],
            },
        ],
        "temperature": 1.7,
        "max_tokens": 3,
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    response = http.post("/v1/chat/completions", json=request)

    assert response.status_code == 200, response.text
    assert "Canada" in response.json()["choices"][0]["message"]["content"]
    # The agent governs sampling and tools; what was ignored is said, not hidden.
    assert response.headers["x-ignored-params"] == "max_tokens, temperature, tools"


def test_session_id_continues_the_conversation(http: httpx.Client) -> None:
    first = http.post("/v1/chat/completions", json={"model": "support-bot", "messages": CANADA})
    session_id = first.json()["session_id"]
    follow_up = [{"role": "user", "content": "How do returns work?"}]
    second = http.post(
        "/v1/chat/completions",
        json={"model": "support-bot", "messages": follow_up, "session_id": session_id},
    )

    assert second.json()["session_id"] == session_id
    messages = http.get(f"/v1/sessions/{session_id}/messages").json()["messages"]
    assert [m["role"] for m in messages] == ["ROLE_USER", "ROLE_ASSISTANT"] * 2
    assert messages[0]["content"] == "Do you ship to Canada?"
    assert messages[2]["content"] == "How do returns work?"


def test_v2_redirect_keeps_method_body_and_query(http: httpx.Client) -> None:
    request = {"model": "support-bot", "messages": CANADA}
    redirect = http.post("/v2/chats/openai?trace=1", json=request, follow_redirects=False)

    assert redirect.status_code == 307
    assert redirect.headers["location"] == "/v1/chat/completions?trace=1"
    followed = http.post("/v2/chats/openai", json=request, follow_redirects=True)
    assert followed.status_code == 200
    assert [r.status_code for r in followed.history] == [307]
    assert followed.request.method == "POST"
    assert "Canada" in followed.json()["content"]
