"""Sessions and turns through a grpc.aio client: history, typed events, cancellation,
concurrency and idempotency."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from switchboard.v1 import agent_pb2, session_pb2
from switchboard.v1 import completion_service_pb2 as cpb
from switchboard.v1 import session_service_pb2 as spb

from tests.grpc.conftest import error_reason, field_violations

LONG_KNOWLEDGE_ANSWER = " ".join(f"word{i}" for i in range(60))


async def new_session(stubs, auth, agent: str = "agents/support-bot") -> session_pb2.Session:
    return await stubs.sessions.CreateSession(
        spb.CreateSessionRequest(session=session_pb2.Session(agent=agent)), metadata=auth
    )


async def messages_of(stubs, auth, session: str) -> list[session_pb2.Message]:
    listed = await stubs.sessions.ListMessages(
        spb.ListMessagesRequest(parent=session), metadata=auth
    )
    return list(listed.messages)


async def test_second_completion_in_a_session_sees_the_first(stubs, auth):
    first = await stubs.completions.CreateChatCompletion(
        cpb.CreateChatCompletionRequest(
            model="support-bot",
            messages=[cpb.ChatMessage(role="user", content="Do you ship to Canada?")],
        ),
        metadata=auth,
    )
    assert "Canada" in first.choices[0].message.content
    second = await stubs.completions.CreateChatCompletion(
        cpb.CreateChatCompletionRequest(
            model="support-bot",
            session_id=first.session_id,
            messages=[cpb.ChatMessage(role="user", content="How do returns work?")],
        ),
        metadata=auth,
    )
    assert second.session_id == first.session_id
    assert "30 days" in second.choices[0].message.content
    # The builtin responder reads only the new question, so its prompt does not grow with
    # the session (models are sent the history: see tests/runtime).
    assert second.usage.prompt_tokens < first.usage.total_tokens
    stored = await messages_of(stubs, auth, f"sessions/{first.session_id}")
    assert [(m.position, m.role) for m in stored] == [
        (1, session_pb2.ROLE_USER),
        (2, session_pb2.ROLE_ASSISTANT),
        (3, session_pb2.ROLE_USER),
        (4, session_pb2.ROLE_ASSISTANT),
    ]
    assert stored[1].content == first.choices[0].message.content
    assert stored[3].metrics.backend == "builtin"
    assert stored[3].metrics.agent_version >= 1
    assert stored[3].usage.total_tokens == second.usage.total_tokens


async def test_stream_message_sends_typed_events(stubs, auth):
    session = await new_session(stubs, auth)
    events = [
        e
        async for e in stubs.sessions.StreamMessage(
            spb.SendMessageRequest(parent=session.name, content="When are you open on Saturday?"),
            metadata=auth,
        )
    ]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-2:] == ["quick_replies", "done"]
    assert set(kinds[:-2]) == {"content"} and len(kinds) > 3
    text = "".join(e.content.text for e in events if e.HasField("content"))
    assert text.startswith("Our support team is available Monday to Friday")
    done = events[-1].done
    assert done.session == session.name
    assert done.sources and done.sources[0].title == "Opening hours"
    assert 0 < done.sources[0].score <= 1
    assert done.metrics.backend == "builtin" and done.metrics.agent_version >= 1
    assert done.usage.completion_tokens > 0
    assert list(events[-2].quick_replies.replies) == [
        "Do you ship to Canada?",
        "How do returns work?",
        "When are you open?",
    ]
    stored = await messages_of(stubs, auth, session.name)
    assert stored[-1].name == done.message and stored[-1].content == text


async def test_send_message_returns_both_stored_messages(stubs, auth):
    session = await new_session(stubs, auth)
    sent = await stubs.sessions.SendMessage(
        spb.SendMessageRequest(parent=session.name, content="Do you ship to Canada?"), metadata=auth
    )
    assert sent.message.role == session_pb2.ROLE_USER
    assert sent.message.content == "Do you ship to Canada?"
    assert sent.reply.position == sent.message.position + 1
    assert sent.reply.status == session_pb2.MESSAGE_STATUS_COMPLETE
    got = await stubs.sessions.GetSession(spb.GetSessionRequest(name=session.name), metadata=auth)
    assert got.message_count == 2


async def test_cancelled_stream_keeps_the_partial_reply_marked_incomplete(stubs, auth, make_agent):
    agent = await make_agent(
        backend=agent_pb2.ModelBackend(builtin=agent_pb2.BuiltinBackend(delta_interval_ms=100)),
        fallback_reply=LONG_KNOWLEDGE_ANSWER,
    )
    session = await new_session(stubs, auth, agent.name)
    call = stubs.sessions.StreamMessage(
        spb.SendMessageRequest(parent=session.name, content="Tell me everything"), metadata=auth
    )
    received = ""
    async for event in call:
        received += event.content.text
        if len(received.split()) >= 8:
            break
    call.cancel()
    stored: list[session_pb2.Message] = []
    for _ in range(50):
        stored = await messages_of(stubs, auth, session.name)
        if len(stored) == 2:
            break
        await asyncio.sleep(0.1)
    user, reply = stored
    assert user.content == "Tell me everything"
    assert reply.status == session_pb2.MESSAGE_STATUS_INCOMPLETE
    assert reply.content.startswith(received)
    assert 0 < len(reply.content) < len(LONG_KNOWLEDGE_ANSWER)


async def test_concurrent_turns_never_interleave(stubs, auth):
    session = await new_session(stubs, auth)
    questions = [f"Do you ship to Canada? (asking {i})" for i in range(12)]
    await asyncio.gather(
        *(
            stubs.sessions.SendMessage(
                spb.SendMessageRequest(parent=session.name, content=q), metadata=auth
            )
            for q in questions
        )
    )
    stored = await messages_of(stubs, auth, session.name)
    assert [m.position for m in stored] == list(range(1, 25))
    users = stored[0::2]
    assert all(m.role == session_pb2.ROLE_USER for m in users)
    assert all(m.role == session_pb2.ROLE_ASSISTANT for m in stored[1::2])
    assert sorted(m.content for m in users) == sorted(questions)


async def test_idempotency_key_returns_the_first_result(stubs, auth):
    session = await new_session(stubs, auth)
    request = spb.SendMessageRequest(parent=session.name, content="Do you ship to Canada?")
    key = (*auth, ("idempotency-key", f"retry-{session.id}"))
    first = await stubs.sessions.SendMessage(request, metadata=key)
    again = await stubs.sessions.SendMessage(request, metadata=key)
    assert again.reply.id == first.reply.id
    assert len(await messages_of(stubs, auth, session.name)) == 2
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.sessions.SendMessage(
            spb.SendMessageRequest(parent=session.name, content="Something else"), metadata=key
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert error_reason(caught.value) == "IDEMPOTENCY_CONFLICT"


async def test_unknown_session_is_not_found(stubs, auth):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.sessions.SendMessage(
            spb.SendMessageRequest(parent="sessions/sess_missing", content="hi"), metadata=auth
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "SESSION_NOT_FOUND"


async def test_empty_message_is_invalid_argument(stubs, auth):
    session = await new_session(stubs, auth)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.sessions.SendMessage(
            spb.SendMessageRequest(parent=session.name, content="  "), metadata=auth
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_messages_pages_in_order(stubs, auth):
    session = await new_session(stubs, auth)
    for question in ("Do you ship to Canada?", "How do returns work?", "When are you open?"):
        await stubs.sessions.SendMessage(
            spb.SendMessageRequest(parent=session.name, content=question), metadata=auth
        )
    positions: list[int] = []
    token = ""
    while True:
        page = await stubs.sessions.ListMessages(
            spb.ListMessagesRequest(parent=session.name, page_size=4, page_token=token),
            metadata=auth,
        )
        positions.extend(m.position for m in page.messages)
        token = page.next_page_token
        if not token:
            break
    assert positions == [1, 2, 3, 4, 5, 6]


async def test_models_lists_published_agents(stubs, auth, make_agent):
    from switchboard.v1 import model_service_pb2 as mpb

    hidden = await make_agent(publish=False)
    listed = await stubs.models.ListModels(mpb.ListModelsRequest(), metadata=auth)
    ids = {m.id for m in listed.data}
    assert listed.object == "list"
    assert "support-bot" in ids and hidden.slug not in ids
    model = await stubs.models.GetModel(mpb.GetModelRequest(model="support-bot"), metadata=auth)
    assert (model.object, model.owned_by) == ("model", "switchboard")
    assert model.created > 1_700_000_000


async def test_over_long_input_is_invalid_argument_naming_the_field(stubs, auth, make_agent):
    agent = await make_agent(guardrails=agent_pb2.Guardrails(max_input_chars=20))
    session = await new_session(stubs, auth, agent.name)
    long_question = "How long do parcels to Norway take to arrive?"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.sessions.SendMessage(
            spb.SendMessageRequest(parent=session.name, content=long_question), metadata=auth
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 20" in field_violations(caught.value)["content"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.completions.CreateChatCompletion(
            cpb.CreateChatCompletionRequest(
                model=agent.slug, messages=[cpb.ChatMessage(role="user", content=long_question)]
            ),
            metadata=auth,
        )
    assert "messages[0].content" in field_violations(caught.value)
    # Nothing of a refused turn is stored.
    assert await messages_of(stubs, auth, session.name) == []
