"""Nothing of one workspace is visible to another: every route that takes an id, given another
workspace's id, answers 404 (never 403, never data), and changes nothing."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest
from switchboard.v1 import completion_service_pb2 as cpb
from switchboard.v1 import completion_service_pb2_grpc

from tests.conftest import RunningServer
from tests.tenancy.conftest import Tenant, make_tenant

QUESTION = [{"role": "user", "content": "When do parcels to Norway arrive?"}]


@pytest.fixture(scope="module")
def tenants(server: RunningServer) -> tuple[Tenant, Tenant, dict[str, str]]:
    """Two workspaces; the ids of the second one's agent, session, document and key."""
    ours, theirs = make_tenant(server), make_tenant(server)
    agent = theirs.http.get("/v1/agents/helper").json()["id"]
    session = theirs.http.post("/v1/sessions", json={"agent": "agents/helper"}).json()["id"]
    theirs.http.post(f"/v1/sessions/{session}/messages", json={"content": "Norway?"})
    document = theirs.http.get(f"/v1/agents/{agent}/documents").json()["documents"][0]["id"]
    key = theirs.http.post("/v1/keys", json={"scopes": ["chat:write"]}).json()["id"]
    return ours, theirs, {"agent": agent, "session": session, "document": document, "key": key}


def _routes(ids: dict[str, str]) -> list[tuple[str, str, dict[str, object] | None]]:
    agent, session, document, key = ids["agent"], ids["session"], ids["document"], ids["key"]
    return [
        ("GET", f"/v1/agents/{agent}", None),
        ("PATCH", f"/v1/agents/{agent}", {"display_name": "taken over"}),
        ("POST", f"/v1/agents/{agent}:publish", {}),
        ("GET", f"/v1/agents/{agent}/versions", None),
        ("GET", f"/v1/agents/{agent}/documents", None),
        ("POST", f"/v1/agents/{agent}/documents", {"title": "x", "content": "planted"}),
        ("DELETE", f"/v1/agents/{agent}/documents/{document}", None),
        ("DELETE", f"/v1/agents/{agent}", None),
        ("GET", f"/v1/models/{agent}", None),
        ("POST", "/v1/sessions", {"agent": f"agents/{agent}"}),
        ("GET", f"/v1/sessions/{session}", None),
        ("GET", f"/v1/sessions/{session}/messages", None),
        ("POST", f"/v1/sessions/{session}/messages", {"content": "hello"}),
        ("POST", f"/v1/sessions/{session}/messages:stream", {"content": "hello"}),
        ("POST", f"/v1/sessions/{session}:cancel", {}),
        ("DELETE", f"/v1/sessions/{session}", None),
        ("GET", "/v1/sessions", {"agent": f"agents/{agent}"}),
        ("POST", f"/v1/keys/{key}:revoke", {}),
        ("POST", "/v1/chat/completions", {"model": agent, "messages": QUESTION}),
        (
            "POST",
            "/v1/chat/completions",
            {"model": "helper", "session_id": session, "messages": QUESTION},
        ),
    ]


def test_every_id_of_another_workspace_is_not_found(tenants) -> None:
    ours, theirs, ids = tenants
    for method, path, body in _routes(ids):
        if method == "GET" and body is not None:
            response = ours.http.get(path, params=body)
        else:
            response = ours.http.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.status_code, response.text)
        assert ids["session"] not in response.text or "does not exist" in response.text
    # Nothing changed on their side.
    agent = theirs.http.get(f"/v1/agents/{ids['agent']}").json()
    assert agent["display_name"] == "" and agent["latest_version"] == 1
    messages = theirs.http.get(f"/v1/sessions/{ids['session']}/messages").json()["messages"]
    assert len(messages) == 2
    documents = theirs.http.get(f"/v1/agents/{ids['agent']}/documents").json()["documents"]
    assert [d["id"] for d in documents] == [ids["document"]]
    keys = theirs.http.get("/v1/keys").json()["keys"]
    assert all("revoke_time" not in k for k in keys)


def test_lists_show_only_the_callers_own(tenants) -> None:
    ours, _, ids = tenants
    assert ids["agent"] not in ours.http.get("/v1/agents").text
    assert ids["session"] not in ours.http.get("/v1/sessions").text
    assert ids["key"] not in ours.http.get("/v1/keys").text
    assert ids["agent"] not in ours.http.get("/v1/models").text
    usage = ours.http.get("/v1/usage:summarize", params={"group_by": "USAGE_GROUPING_SESSION"})
    assert ids["session"] not in usage.text


def test_grpc_answers_not_found_too(server: RunningServer, tenants) -> None:
    ours, _, ids = tenants
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = completion_service_pb2_grpc.CompletionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateChatCompletion(
                cpb.CreateChatCompletionRequest(
                    model=ids["agent"],
                    messages=[cpb.ChatMessage(role="user", content=f"hi {uuid.uuid4()}")],
                ),
                metadata=(("authorization", f"Bearer {ours.key}"),),
            )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_slugs_are_per_workspace(tenants) -> None:
    ours, theirs, _ = tenants
    # Both have an agent `helper`; each key reaches its own.
    mine = ours.http.get("/v1/agents/helper").json()["id"]
    other = theirs.http.get("/v1/agents/helper").json()["id"]
    assert mine != other
    reply = httpx.post(
        f"{ours.http.base_url}/v1/chat/completions",
        json={"model": "helper", "messages": QUESTION},
        headers={"authorization": f"Bearer {ours.key}"},
    ).json()
    assert reply["agent_id"] == mine
