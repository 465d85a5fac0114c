"""The official OpenAI Python SDK (async client) against the edge."""

from __future__ import annotations

import httpx
import openai
import pytest

CANADA = [{"role": "user", "content": "Do you ship to Canada?"}]


async def test_create_answers_from_the_agents_knowledge(async_client: openai.AsyncOpenAI) -> None:
    completion = await async_client.chat.completions.create(model="support-bot", messages=CANADA)

    assert "Canada" in completion.choices[0].message.content
    assert completion.choices[0].message.refusal is None
    assert isinstance(completion.created, int)


async def test_stream_without_usage(async_client: openai.AsyncOpenAI) -> None:
    stream = await async_client.chat.completions.create(
        model="support-bot", messages=CANADA, stream=True
    )
    chunks = [chunk async for chunk in stream]

    assert "Canada" in "".join(c.choices[0].delta.content or "" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.usage is None for c in chunks)


async def test_stream_with_usage(async_client: openai.AsyncOpenAI) -> None:
    stream = await async_client.chat.completions.create(
        model="support-bot",
        messages=CANADA,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


async def test_session_id_extension_continues_a_conversation(
    async_client: openai.AsyncOpenAI, async_rest: httpx.AsyncClient
) -> None:
    first = await async_client.chat.completions.create(model="support-bot", messages=CANADA)
    session_id = (first.model_extra or {})["session_id"]
    stream = await async_client.chat.completions.create(
        model="support-bot",
        messages=[{"role": "user", "content": "How do returns work?"}],
        stream=True,
        extra_body={"session_id": session_id},
    )
    reply = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    listed = await async_rest.get(f"/v1/sessions/{session_id}/messages")
    messages = listed.json()["messages"]
    assert len(messages) == 4
    assert messages[2]["content"] == "How do returns work?"
    assert messages[3]["content"] == reply


async def test_models_list_and_retrieve(async_client: openai.AsyncOpenAI) -> None:
    ids = [m.id async for m in async_client.models.list()]

    assert "support-bot" in ids
    assert (await async_client.models.retrieve("support-bot")).owned_by == "switchboard"


async def test_errors_raise_the_sdk_exception_classes(
    async_client: openai.AsyncOpenAI, base_url: str, read_only_key: str
) -> None:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sk_wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.chat.completions.create(model="support-bot", messages=CANADA)
    async with openai.AsyncOpenAI(base_url=base_url, api_key=read_only_key, max_retries=0) as ro:
        with pytest.raises(openai.PermissionDeniedError):
            await ro.chat.completions.create(model="support-bot", messages=CANADA)
    with pytest.raises(openai.NotFoundError) as missing:
        await async_client.chat.completions.create(model="no-such-agent", messages=CANADA)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad_request:
        await async_client.chat.completions.create(
            model="support-bot", messages=[{"role": "narrator", "content": "hi"}]
        )
    assert bad_request.value.param == "messages[0].role"
