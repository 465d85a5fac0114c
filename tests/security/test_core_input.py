"""Input the core cannot store or read answers 400 / INVALID_ARGUMENT naming the field, never a
500: NUL characters, questions of thousands of words, forged page tokens, unknown enum values,
undecodable protobuf and huge values echoed back."""

from __future__ import annotations

import base64

import grpc
import httpx
import pytest
from switchboard.v1 import completion_service_pb2 as cpb
from switchboard.v1 import key_service_pb2

from tests.conftest import RunningServer
from tests.grpc.conftest import error_reason, field_violations


def _client(server: RunningServer) -> httpx.Client:
    headers = {"authorization": f"Bearer {server.api_key}"}
    return httpx.Client(base_url=server.http_url, headers=headers, timeout=30)


def _violation(response: httpx.Response) -> str:
    body = response.json()
    details = body["details"] if "details" in body else []
    for detail in details:
        if "field_violations" in detail:
            return str(detail["field_violations"][0]["field"])
    return str(body.get("error", {}).get("param"))


def test_nul_characters_are_refused_naming_the_field(any_server: RunningServer) -> None:
    with _client(any_server) as client:
        session = client.post("/v1/sessions", json={"agent": "agents/support-bot"}).json()["id"]
        cases = [
            (
                client.post(
                    "/v1/chat/completions",
                    json={"model": "support-bot", "messages": [{"role": "user", "content": "a\0"}]},
                ),
                "messages[0].content",
            ),
            (
                client.post(
                    "/v1/chat/completions",
                    json={"model": "support\0bot", "messages": [{"role": "user", "content": "a"}]},
                ),
                "model",
            ),
            (
                client.post(
                    "/v1/agents/support-bot/documents",
                    json={"title": "T", "content": "text\0more"},
                ),
                "document.content",
            ),
            (client.post(f"/v1/sessions/{session}/messages", json={"content": "\0"}), "content"),
            (client.get("/v1/sessions/sess_%00/messages"), "parent"),
            (client.post("/v1/agents", json={"display_name": "x\0"}), "agent.display_name"),
            (
                client.post(
                    "/v1/sessions", json={"agent": "agents/support-bot", "labels": {"a": "\0"}}
                ),
                "session.labels['a']",
            ),
        ]
        for response, field in cases:
            assert response.status_code == 400, response.text
            assert _violation(response) == field
            assert "NUL" in response.text
        # Nothing of the refused message reached the session.
        assert client.get(f"/v1/sessions/{session}/messages").json()["messages"] == []


def test_a_question_of_thousands_of_words_is_answered(any_server: RunningServer) -> None:
    words = " ".join(f"word{n}x" for n in range(4000))
    with _client(any_server) as client:
        response = client.post(
            "/v1/chat/completions",
            json={
                "model": "support-bot",
                "messages": [{"role": "user", "content": f"Do you ship to Canada? {words}"}],
            },
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


def test_page_tokens_are_tamper_evident(http: httpx.Client) -> None:
    for _ in range(3):
        http.post("/v1/keys", json={"scopes": ["chat:write"]})
    first = http.get("/v1/keys", params={"page_size": 1}).json()
    token = first["next_page_token"]
    assert http.get("/v1/keys", params={"page_size": 1, "page_token": token}).status_code == 200
    payload, _, signature = token.partition(".")
    forged = [
        "AAAA",
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
        base64.urlsafe_b64encode(b"9" * 400).decode(),
        base64.urlsafe_b64encode(b"key_0").decode().rstrip("=") + "." + signature,
        payload + "." + signature[::-1],
        "x" * 5000,
        token + "A",
    ]
    for page_token in forged:
        response = http.get("/v1/keys", params={"page_token": page_token})
        assert response.status_code == 400, (page_token, response.text)
        assert _violation(response) == "page_token"
    # A token is bound to the query that made it: another collection or filter refuses it.
    sessions = http.get("/v1/sessions", params={"page_size": 1, "agent": "agents/support-bot"})
    session_token = sessions.json()["next_page_token"]
    assert http.get("/v1/sessions", params={"page_token": session_token}).status_code == 400
    assert http.get("/v1/agents", params={"page_token": session_token}).status_code == 400
    for number_route in ("/v1/agents/support-bot/versions", "/v1/sessions/sess_x/messages"):
        response = http.get(number_route, params={"page_token": "99999999999999999999999"})
        assert response.status_code in (400, 404)
        assert response.status_code != 500


async def test_unknown_enum_values_are_refused(async_http: httpx.AsyncClient, stubs, auth) -> None:
    response = await async_http.post("/v1/keys", json={"kind": 99, "scopes": ["chat:write"]})
    assert response.status_code == 400
    assert _violation(response) == "key.kind"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.keys.CreateKey(
            key_service_pb2.CreateKeyRequest(key=key_service_pb2.Key(kind=99, scopes=["x"])),
            metadata=auth,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "key.kind" in field_violations(caught.value)


async def test_undecodable_protobuf_is_invalid_argument(channel: grpc.aio.Channel, auth) -> None:
    call = channel.unary_unary("/switchboard.v1.CompletionService/CreateChatCompletion")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(b"\xff\xff\xff\xff\x0f", metadata=auth)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "class" not in (caught.value.details() or "")
    assert "protobuf" in (caught.value.details() or "")
    # Without a key the same bytes are refused for the key first.
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await call(b"\xff\xff\xff\xff\x0f")
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_errors_quote_at_most_a_little_of_the_input(
    async_http: httpx.AsyncClient, stubs, auth
) -> None:
    huge = "m" * 1_000_000
    # Just under the HTTP body limit; gRPC takes the whole megabyte.
    response = await async_http.post(
        "/v1/chat/completions",
        json={"model": huge[:900_000], "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert response.status_code == 404
    assert len(response.text) < 1000
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.completions.CreateChatCompletion(
            cpb.CreateChatCompletionRequest(
                model=huge, messages=[cpb.ChatMessage(role="user", content="Hi")]
            ),
            metadata=auth,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "AGENT_NOT_FOUND"
    assert len(caught.value.details() or "") < 300
