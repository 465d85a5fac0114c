"""Publishable keys see and use only their listed agents, and only the chat routes: anything
else answers as if it did not exist, or is refused."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.conftest import RunningServer
from tests.grpc.conftest import KNOWLEDGE

QUESTION = {"role": "user", "content": "Do you ship to Canada?"}


@pytest.fixture(scope="module")
def secret_agent(http: httpx.Client) -> str:
    """A published agent that the publishable key does not list."""
    slug = f"secret-{uuid.uuid4().hex[:8]}"
    assert http.post("/v1/agents", json={"slug": slug}).status_code == 200
    document = {"title": "Plans", "content": KNOWLEDGE}
    assert http.post(f"/v1/agents/{slug}/documents", json=document).status_code == 200
    assert http.post(f"/v1/agents/{slug}:publish").status_code == 200
    return slug


@pytest.fixture(scope="module")
def widget(server: RunningServer, http: httpx.Client) -> httpx.Client:
    """A client holding a publishable key limited to `support-bot`."""
    created = http.post(
        "/v1/keys", json={"kind": "KEY_KIND_PUBLISHABLE", "allowed_agents": ["support-bot"]}
    )
    assert created.status_code == 200, created.text
    key = created.json()
    assert key["allowed_agents"] == [_agent_id(http, "support-bot")]
    headers = {"authorization": f"Bearer {key['secret']}"}
    return httpx.Client(base_url=server.http_url, headers=headers, timeout=30)


def _agent_id(http: httpx.Client, slug: str) -> str:
    return str(http.get(f"/v1/agents/{slug}").json()["id"])


def test_models_show_only_the_listed_agents(widget: httpx.Client, secret_agent: str) -> None:
    assert widget.get("/v1/models/support-bot").status_code == 200
    hidden = widget.get(f"/v1/models/{secret_agent}")
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "model_not_found"
    listed = [model["id"] for model in widget.get("/v1/models").json()["data"]]
    assert listed == ["support-bot"]


def test_sessions_only_with_the_listed_agents(widget: httpx.Client, secret_agent: str) -> None:
    own = widget.post("/v1/sessions", json={"agent": "agents/support-bot"})
    assert own.status_code == 200
    foreign = widget.post("/v1/sessions", json={"agent": f"agents/{secret_agent}"})
    assert foreign.status_code == 404
    chat = widget.post("/v1/chat/completions", json={"model": secret_agent, "messages": [QUESTION]})
    assert chat.status_code == 404


def test_an_unpublished_foreign_agent_is_not_found_either(
    http: httpx.Client, widget: httpx.Client
) -> None:
    slug = f"draft-{uuid.uuid4().hex[:8]}"
    assert http.post("/v1/agents", json={"slug": slug}).status_code == 200
    for response in (
        widget.get(f"/v1/models/{slug}"),
        widget.post("/v1/chat/completions", json={"model": slug, "messages": [QUESTION]}),
        widget.post("/v1/sessions", json={"agent": f"agents/{slug}"}),
    ):
        assert response.status_code == 404, response.text


def test_foreign_sessions_are_not_found(
    http: httpx.Client, widget: httpx.Client, secret_agent: str
) -> None:
    theirs = http.post("/v1/sessions", json={"agent": f"agents/{secret_agent}"}).json()["id"]
    said = http.post(f"/v1/sessions/{theirs}/messages", json={"content": "Gift cards?"})
    assert said.status_code == 200
    assert widget.get(f"/v1/sessions/{theirs}/messages").status_code == 404
    assert widget.post(f"/v1/sessions/{theirs}/messages", json={"content": "Hi"}).status_code == 404
    streamed = widget.post(f"/v1/sessions/{theirs}/messages:stream", json={"content": "Hi"})
    assert streamed.status_code == 404
    continued = widget.post(
        "/v1/chat/completions",
        json={"model": "support-bot", "session_id": theirs, "messages": [QUESTION]},
    )
    assert continued.status_code == 404
    # Nothing reached the session.
    assert len(http.get(f"/v1/sessions/{theirs}/messages").json()["messages"]) == 2


def test_only_chat_routes_are_open(
    http: httpx.Client, widget: httpx.Client, secret_agent: str
) -> None:
    theirs = http.post("/v1/sessions", json={"agent": f"agents/{secret_agent}"}).json()["id"]
    own = widget.post("/v1/sessions", json={"agent": "agents/support-bot"}).json()["id"]
    for session in (theirs, own):
        assert widget.delete(f"/v1/sessions/{session}").status_code == 403
        assert widget.get(f"/v1/sessions/{session}").status_code == 403
    assert widget.get("/v1/sessions").status_code == 403
    assert widget.get("/v1/keys").status_code == 403
    assert widget.get("/v1/agents").status_code == 403
    assert http.get(f"/v1/sessions/{theirs}").status_code == 200


def test_chat_in_a_session_it_names(widget: httpx.Client) -> None:
    session = widget.post("/v1/sessions", json={"agent": "agents/support-bot"}).json()["id"]
    sent = widget.post(f"/v1/sessions/{session}/messages", json={"content": "Returns?"})
    assert sent.status_code == 200
    with widget.stream(
        "POST",
        f"/v1/sessions/{session}/messages:stream",
        json={"content": "When are you open?"},
        headers={"accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        events = [
            json.loads(line.removeprefix("data: "))["result"]
            for line in response.iter_lines()
            if line.startswith("data: ")
        ]
    assert "done" in events[-1]
    read = widget.get(f"/v1/sessions/{session}/messages")
    assert read.status_code == 200
    assert [m["role"] for m in read.json()["messages"]] == ["ROLE_USER", "ROLE_ASSISTANT"] * 2


def test_another_keys_idempotent_result_is_not_replayed(
    http: httpx.Client, widget: httpx.Client, secret_agent: str
) -> None:
    key = f"order-{uuid.uuid4().hex}"
    secret_answer = http.post(
        "/v1/chat/completions",
        json={"model": secret_agent, "messages": [{"role": "user", "content": "Gift cards?"}]},
        headers={"idempotency-key": key},
    )
    assert secret_answer.status_code == 200
    replayed = widget.post(
        "/v1/chat/completions",
        json={"model": secret_agent, "messages": [{"role": "user", "content": "Gift cards?"}]},
        headers={"idempotency-key": key},
    )
    assert replayed.status_code == 404
    assert "expire" not in replayed.text


def test_a_publishable_key_must_list_existing_agents(http: httpx.Client) -> None:
    refused = http.post(
        "/v1/keys",
        json={"kind": "KEY_KIND_PUBLISHABLE", "allowed_agents": ["support-bot", "no-such-bot"]},
    )
    assert refused.status_code == 400
    violation = refused.json()["details"][1]["field_violations"][0]
    assert violation["field"] == "key.allowed_agents[1]"
    assert "no-such-bot" in violation["description"]
