"""Publishable keys: chat only, only with their agents, only from their browser origins."""

from __future__ import annotations

import grpc
import httpx
import pytest
from switchboard.v1 import agent_service_pb2, key_service_pb2
from switchboard.v1 import completion_service_pb2 as cpb

from tests.grpc.conftest import error_reason

SHOP = "https://shop.example"


@pytest.fixture
async def publishable(stubs, auth) -> key_service_pb2.Key:
    return await stubs.keys.CreateKey(
        key_service_pb2.CreateKeyRequest(
            key=key_service_pb2.Key(
                kind=key_service_pb2.KEY_KIND_PUBLISHABLE,
                allowed_agents=["support-bot"],
                allowed_origins=[SHOP],
            )
        ),
        metadata=auth,
    )


def ask(model: str) -> cpb.CreateChatCompletionRequest:
    return cpb.CreateChatCompletionRequest(
        model=model, messages=[cpb.ChatMessage(role="user", content="Do you ship to Canada?")]
    )


async def test_chats_with_its_agent_from_its_origin(stubs, publishable, make_agent):
    assert publishable.secret.startswith("pk_")
    assert list(publishable.scopes) == ["chat:write"]
    browser = (("authorization", f"Bearer {publishable.secret}"), ("origin", SHOP))
    reply = await stubs.completions.CreateChatCompletion(ask("support-bot"), metadata=browser)
    assert "Canada" in reply.choices[0].message.content

    other = await make_agent()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.completions.CreateChatCompletion(ask(other.slug), metadata=browser)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.agents.ListAgents(agent_service_pb2.ListAgentsRequest(), metadata=browser)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_other_origins_are_refused(stubs, publishable):
    for origin in (("origin", "https://evil.example"),), ():
        metadata = (("authorization", f"Bearer {publishable.secret}"), *origin)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.completions.CreateChatCompletion(ask("support-bot"), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(caught.value) == "ORIGIN_NOT_ALLOWED"


async def test_the_edge_forwards_the_browser_origin(server, publishable):
    body = {"model": "support-bot", "messages": [{"role": "user", "content": "Do you ship?"}]}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        headers = {"authorization": f"Bearer {publishable.secret}"}
        allowed = await client.post(
            "/v1/chat/completions", json=body, headers={**headers, "origin": SHOP}
        )
        refused = await client.post(
            "/v1/chat/completions", json=body, headers={**headers, "origin": "https://x.example"}
        )
    assert allowed.status_code == 200
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"
