"""The official OpenAI Python SDK (sync client) against the edge, by swapping the base URL."""

from __future__ import annotations

import httpx
import openai
import pytest

CANADA = [{"role": "user", "content": "Do you ship to Canada?"}]


def test_create_answers_from_the_agents_knowledge(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="support-bot", messages=CANADA)

    assert completion.object == "chat.completion"
    assert "Canada" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    extras = completion.model_extra or {}
    assert extras["session_id"].startswith("sess_")
    assert extras["content"] == completion.choices[0].message.content


def test_stream_without_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="support-bot", messages=CANADA, stream=True)
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Canada" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert len({c.id for c in chunks}) == 1


def test_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="support-bot",
        messages=CANADA,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    *choice_chunks, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert choice_chunks[-1].choices[0].finish_reason == "stop"


def test_session_id_extension_continues_a_conversation(
    client: openai.OpenAI, rest: httpx.Client
) -> None:
    first = client.chat.completions.create(model="support-bot", messages=CANADA)
    session_id = (first.model_extra or {})["session_id"]
    second = client.chat.completions.create(
        model="support-bot",
        messages=[{"role": "user", "content": "When are you open?"}],
        extra_body={"session_id": session_id},
    )

    assert (second.model_extra or {})["session_id"] == session_id
    messages = rest.get(f"/v1/sessions/{session_id}/messages").json()["messages"]
    assert [m["content"] for m in messages[::2]] == ["Do you ship to Canada?", "When are you open?"]
    assert messages[1]["content"] == first.choices[0].message.content
    assert messages[3]["content"] == second.choices[0].message.content
    assert "Monday" in second.choices[0].message.content


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = client.models.list()

    ids = [m.id for m in models]
    assert "support-bot" in ids
    model = client.models.retrieve("support-bot")
    assert model.id == "support-bot"
    assert model.object == "model"
    assert model.owned_by == "switchboard"
    assert isinstance(model.created, int)


def test_bad_key_raises_authentication_error(base_url: str) -> None:
    with openai.OpenAI(base_url=base_url, api_key="sk_not_a_key", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError) as raised:
            sdk.chat.completions.create(model="support-bot", messages=CANADA)
    assert raised.value.status_code == 401


def test_key_without_chat_scope_raises_permission_denied(base_url: str, read_only_key: str) -> None:
    with openai.OpenAI(base_url=base_url, api_key=read_only_key, max_retries=0) as sdk:
        with pytest.raises(openai.PermissionDeniedError) as raised:
            sdk.chat.completions.create(model="support-bot", messages=CANADA)
        assert sdk.models.retrieve("support-bot").id == "support-bot"
    assert raised.value.status_code == 403
    assert raised.value.code == "scope_missing"


def test_unknown_agent_raises_not_found_with_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-agent", messages=CANADA)
    assert raised.value.status_code == 404
    assert raised.value.code == "model_not_found"

    with pytest.raises(openai.NotFoundError) as retrieved:
        client.models.retrieve("no-such-agent")
    assert retrieved.value.code == "model_not_found"


def test_bad_request_raises_bad_request_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="support-bot",
            messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
        )
    assert raised.value.status_code == 400
    assert raised.value.param == "messages[0].content[0].type"
    assert raised.value.type == "invalid_request_error"
