"""Agent lifecycle, errors and auth through a grpc.aio client."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from switchboard.v1 import agent_pb2, agent_service_pb2
from switchboard.v1 import completion_service_pb2 as cpb

from tests.grpc.conftest import error_reason, field_violations


def ask(model: str, text: str, role: str = "user") -> cpb.CreateChatCompletionRequest:
    return cpb.CreateChatCompletionRequest(
        model=model, messages=[cpb.ChatMessage(role=role, content=text)]
    )


async def test_published_version_answers_until_the_next_publish(stubs, auth, make_agent):
    agent = await make_agent(fallback_reply="Version one does not know.")
    first = await stubs.completions.CreateChatCompletion(
        ask(agent.slug, "Tell me a joke"), metadata=auth
    )
    assert first.choices[0].message.content == "Version one does not know."

    updated = await stubs.agents.UpdateAgent(
        agent_service_pb2.UpdateAgentRequest(
            agent=agent_pb2.Agent(name=agent.name, fallback_reply="Version two does not know."),
            update_mask=field_mask_pb2.FieldMask(paths=["fallback_reply"]),
        ),
        metadata=auth,
    )
    assert updated.fallback_reply == "Version two does not know."
    assert updated.latest_version == 1
    still = await stubs.completions.CreateChatCompletion(
        ask(agent.slug, "Tell me a joke"), metadata=auth
    )
    assert still.choices[0].message.content == "Version one does not know."

    version = await stubs.agents.PublishAgent(
        agent_service_pb2.PublishAgentRequest(name=agent.name), metadata=auth
    )
    assert version.version == 2
    assert version.agent.fallback_reply == "Version two does not know."
    now = await stubs.completions.CreateChatCompletion(
        ask(agent.id, "Tell me a joke"), metadata=auth
    )
    assert now.choices[0].message.content == "Version two does not know."

    versions = await stubs.agents.ListAgentVersions(
        agent_service_pb2.ListAgentVersionsRequest(parent=agent.name), metadata=auth
    )
    assert [v.version for v in versions.versions] == [2, 1]
    assert versions.versions[1].agent.fallback_reply == "Version one does not know."


async def test_builtin_answers_from_knowledge_and_streams_it(stubs, auth, make_agent):
    agent = await make_agent()
    reply = await stubs.completions.CreateChatCompletion(
        ask(agent.slug, "How long do parcels to Norway take?"), metadata=auth
    )
    text = reply.choices[0].message.content
    assert text == "Parcels to Norway travel by ferry and arrive within nine days of dispatch."
    assert reply.system_fingerprint == "switchboard-builtin"
    assert reply.usage.completion_tokens == 14
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 14

    chunks = [
        c
        async for c in stubs.completions.StreamChatCompletion(
            ask(agent.slug, "How long do parcels to Norway take?"), metadata=auth
        )
    ]
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(deltas) > 1
    assert "".join(deltas) == text
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert not any(c.choices[0].HasField("finish_reason") for c in chunks[:-1])


async def test_update_without_mask_changes_only_populated_fields(stubs, auth, make_agent):
    agent = await make_agent(display_name="Keeps its name", description="old")
    updated = await stubs.agents.UpdateAgent(
        agent_service_pb2.UpdateAgentRequest(
            agent=agent_pb2.Agent(name=agent.name, description="new")
        ),
        metadata=auth,
    )
    assert (updated.display_name, updated.description) == ("Keeps its name", "new")


async def test_list_agents_pages(stubs, auth, make_agent):
    for _ in range(3):
        await make_agent(publish=False)
    seen: list[str] = []
    token = ""
    while True:
        page = await stubs.agents.ListAgents(
            agent_service_pb2.ListAgentsRequest(page_size=2, page_token=token), metadata=auth
        )
        assert len(page.agents) <= 2
        seen.extend(a.id for a in page.agents)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) >= 3
    assert seen == sorted(seen)


async def test_unknown_agent_is_not_found(stubs, auth):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.completions.CreateChatCompletion(ask("no-such-agent", "hi"), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "AGENT_NOT_FOUND"
    assert "no-such-agent" in caught.value.details()


async def test_unpublished_agent_is_a_failed_precondition(stubs, auth, make_agent):
    agent = await make_agent(publish=False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.completions.CreateChatCompletion(ask(agent.slug, "hi"), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "AGENT_NOT_PUBLISHED"


async def test_missing_key_is_unauthenticated(stubs):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.completions.CreateChatCompletion(ask("support-bot", "hi"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(caught.value) == "API_KEY_MISSING"


async def test_invalid_key_is_unauthenticated(stubs):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.completions.CreateChatCompletion(
            ask("support-bot", "hi"), metadata=(("authorization", "Bearer sk_not_a_key"),)
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(caught.value) == "API_KEY_INVALID"


async def test_missing_scope_is_permission_denied(stubs, key_with_scopes):
    reader = await key_with_scopes("agents:read")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.completions.CreateChatCompletion(ask("support-bot", "hi"), metadata=reader)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "chat:write" in caught.value.details()
    listed = await stubs.agents.ListAgents(agent_service_pb2.ListAgentsRequest(), metadata=reader)
    assert any(a.slug == "support-bot" for a in listed.agents)


async def test_revoked_key_stops_working(stubs, auth, key_with_scopes):
    from switchboard.v1 import key_service_pb2

    created = await stubs.keys.CreateKey(
        key_service_pb2.CreateKeyRequest(key=key_service_pb2.Key(scopes=["chat:write"])),
        metadata=auth,
    )
    assert created.secret.startswith("sk_") and created.prefix == created.secret[:7]
    mine = (("authorization", f"Bearer {created.secret}"),)
    await stubs.completions.CreateChatCompletion(ask("support-bot", "hi"), metadata=mine)
    await stubs.keys.RevokeKey(key_service_pb2.RevokeKeyRequest(name=created.name), metadata=auth)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.completions.CreateChatCompletion(ask("support-bot", "hi"), metadata=mine)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    listed = await stubs.keys.ListKeys(key_service_pb2.ListKeysRequest(), metadata=auth)
    assert all(k.secret == "" for k in listed.keys)


async def test_empty_messages_is_invalid_argument(stubs, auth):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.completions.CreateChatCompletion(
            cpb.CreateChatCompletionRequest(model="support-bot"), metadata=auth
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "messages" in field_violations(caught.value)


async def test_unknown_role_is_invalid_argument_naming_the_field(stubs, auth):
    request = ask("support-bot", "hi")
    request.messages.append(cpb.ChatMessage(role="wizard", content="abracadabra"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.completions.CreateChatCompletion(request, metadata=auth)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(caught.value)
    assert "wizard" in violations["messages[1].role"]


async def test_bad_slug_is_invalid_argument(stubs, auth):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.agents.CreateAgent(
            agent_service_pb2.CreateAgentRequest(agent=agent_pb2.Agent(slug="Not A Slug!")),
            metadata=auth,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "agent.slug" in field_violations(caught.value)


async def test_taken_slug_already_exists(stubs, auth, make_agent):
    agent = await make_agent(publish=False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.agents.CreateAgent(
            agent_service_pb2.CreateAgentRequest(agent=agent_pb2.Agent(slug=agent.slug)),
            metadata=auth,
        )
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_knowledge_documents_add_list_delete(stubs, auth, make_agent):
    agent = await make_agent()
    listed = await stubs.agents.ListKnowledgeDocuments(
        agent_service_pb2.ListKnowledgeDocumentsRequest(parent=agent.name), metadata=auth
    )
    assert [d.title for d in listed.documents] == ["Store facts"]
    assert listed.documents[0].passage_count == 2
    await stubs.agents.DeleteKnowledgeDocument(
        agent_service_pb2.DeleteKnowledgeDocumentRequest(name=listed.documents[0].name),
        metadata=auth,
    )
    reply = await stubs.completions.CreateChatCompletion(
        ask(agent.slug, "How long do parcels to Norway take?"), metadata=auth
    )
    assert reply.choices[0].message.content == "I only know about parcels and gift cards."


async def test_deleted_agent_is_gone(stubs, auth, make_agent):
    agent = await make_agent()
    await stubs.agents.DeleteAgent(
        agent_service_pb2.DeleteAgentRequest(name=agent.name), metadata=auth
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.agents.GetAgent(
            agent_service_pb2.GetAgentRequest(name=agent.name), metadata=auth
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
