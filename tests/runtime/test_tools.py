"""Webhook tools: offered to the model, executed by Switchboard with signed requests, looped
until the final answer, streamed as typed events and stored in the session."""

from __future__ import annotations

import json

import httpx
from openai import OpenAI

from server.tools import sign
from tests.runtime.conftest import HOOK_SECRET
from tests.runtime.upstream import Reply, ToolReceiver, ToolReply, Upstream

ARGS = '{"order": "A1"}'
SCHEMA = json.dumps({"type": "object", "properties": {"order": {"type": "string"}}})


def _tool(receiver: ToolReceiver, name: str, path: str, **webhook: object) -> dict[str, object]:
    return {
        "name": name,
        "description": f"The {name} tool.",
        "parameters_json": SCHEMA,
        "webhook": {
            "url": receiver.url + path,
            "secret_env": "SWITCHBOARD_TEST_HOOK_SECRET",
            **webhook,
        },
    }


def _events(response: httpx.Response) -> list[dict[str, object]]:
    return [
        json.loads(line.removeprefix("data: "))["result"]
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


def test_a_tool_loop_of_two_steps(
    client: httpx.Client, upstream: Upstream, tool_receiver: ToolReceiver, upstream_agent
):
    tool_receiver.replies["/orders"] = ToolReply(body='{"status": "shipped"}')
    tool_receiver.replies["/tracking"] = ToolReply(body='{"eta": "Friday"}')
    slug, model = upstream_agent(
        tools=[
            _tool(tool_receiver, "lookup_order", "/orders"),
            _tool(tool_receiver, "track_parcel", "/tracking"),
        ]
    )
    upstream.script(
        model,
        Reply(
            chunks=[],
            tool_calls=[{"id": "call_1", "name": "lookup_order", "arguments": '{"order": "A1"}'}],
        ),
        Reply(
            chunks=[],
            tool_calls=[{"id": "call_2", "name": "track_parcel", "arguments": '{"order": "A1"}'}],
        ),
        Reply(chunks=["Order A1 shipped; ", "it arrives Friday."]),
    )
    session = client.post("/v1/sessions", json={"agent": f"agents/{slug}"}).json()["id"]
    response = client.post(
        f"/v1/sessions/{session}/messages:stream",
        json={"content": "Where is order A1?"},
        headers={"accept": "text/event-stream"},
    )
    events = _events(response)
    kinds = [next(iter(e)) for e in events]
    assert kinds == [
        "tool_call",
        "tool_result",
        "tool_call",
        "tool_result",
        "content",
        "content",
        "done",
    ]
    assert events[0]["tool_call"] == {
        "id": "call_1",
        "name": "lookup_order",
        "arguments_json": '{"order": "A1"}',
    }
    assert events[1]["tool_result"]["content"] == '{"status": "shipped"}'
    assert events[1]["tool_result"]["is_error"] is False

    # Each webhook got the arguments, signed with the agent's secret.
    for path in ("/orders", "/tracking"):
        body, headers = tool_receiver.received[path][-1]
        assert json.loads(body) == {"order": "A1"}
        timestamp = headers["x-switchboard-timestamp"]
        assert headers["x-switchboard-signature"] == sign(HOOK_SECRET.encode(), timestamp, body)

    # The model was offered the tools, and saw each result before its next step.
    first, second, third = (r.body for r in upstream.received[model][-3:])
    assert [t["function"]["name"] for t in first["tools"]] == ["lookup_order", "track_parcel"]
    assert first["tools"][0]["function"]["parameters"] == json.loads(SCHEMA)
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_1"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"status": "shipped"}',
    }
    assert third["messages"][-1]["tool_call_id"] == "call_2"

    stored = client.get(f"/v1/sessions/{session}/messages").json()["messages"]
    assert [m["role"] for m in stored] == [
        "ROLE_USER",
        "ROLE_ASSISTANT",
        "ROLE_TOOL",
        "ROLE_ASSISTANT",
        "ROLE_TOOL",
        "ROLE_ASSISTANT",
    ]
    assert stored[1]["tool_calls"] == [
        {"id": "call_1", "name": "lookup_order", "arguments_json": '{"order": "A1"}'}
    ]
    assert stored[2]["tool_call_id"] == "call_1"
    assert stored[-1]["content"] == "Order A1 shipped; it arrives Friday."


def test_the_openai_surface_shows_only_the_final_answer(
    runtime_server, upstream: Upstream, tool_receiver: ToolReceiver, upstream_agent
):
    slug, model = upstream_agent(tools=[_tool(tool_receiver, "lookup_order", "/orders")])
    upstream.script(
        model,
        Reply(chunks=[], tool_calls=[{"id": "c1", "name": "lookup_order", "arguments": "{}"}]),
        Reply(chunks=["Shipped."]),
    )
    sdk = OpenAI(base_url=f"{runtime_server.http_url}/v1", api_key=runtime_server.api_key)
    reply = sdk.chat.completions.create(model=slug, messages=[{"role": "user", "content": "A1?"}])
    assert reply.choices[0].message.content == "Shipped."
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason == "stop"


def test_failing_tools_become_error_results(
    client: httpx.Client, upstream: Upstream, tool_receiver: ToolReceiver, upstream_agent
):
    tool_receiver.replies["/broken"] = ToolReply(status=500, body="database down")
    tool_receiver.replies["/slow"] = ToolReply(delay=2.0)
    slug, model = upstream_agent(
        tools=[
            _tool(tool_receiver, "broken", "/broken"),
            _tool(tool_receiver, "slow", "/slow", timeout_ms=200),
            {
                "name": "unreachable",
                "webhook": {"url": "http://127.0.0.1:9/hook"},
            },
        ]
    )
    upstream.script(
        model,
        Reply(
            chunks=[],
            tool_calls=[
                {"id": "b", "name": "broken", "arguments": "{}"},
                {"id": "s", "name": "slow", "arguments": "{}"},
                {"id": "u", "name": "unreachable", "arguments": "{}"},
                {"id": "x", "name": "no_such_tool", "arguments": "{}"},
                {"id": "j", "name": "broken", "arguments": "{not json"},
            ],
        ),
        Reply(chunks=["Sorry, the tools are failing."]),
    )
    session = client.post("/v1/sessions", json={"agent": f"agents/{slug}"}).json()["id"]
    response = client.post(f"/v1/sessions/{session}/messages:stream", json={"content": "A1?"})
    results = {
        e["tool_result"]["tool_call_id"]: e["tool_result"]
        for e in _events_ndjson(response)
        if "tool_result" in e
    }
    assert all(result["is_error"] for result in results.values())
    assert "HTTP 500: database down" in results["b"]["content"]
    assert "timed out" in results["s"]["content"]
    assert "could not be reached" in results["u"]["content"]
    assert "no tool is named" in results["x"]["content"]
    assert "not valid JSON" in results["j"]["content"]
    fed_back = upstream.received[model][-1].body["messages"]
    assert [m["tool_call_id"] for m in fed_back if m["role"] == "tool"] == ["b", "s", "u", "x", "j"]
    stored = client.get(f"/v1/sessions/{session}/messages").json()["messages"]
    assert stored[-1]["content"] == "Sorry, the tools are failing."
    assert all(m["tool_error"] for m in stored if m["role"] == "ROLE_TOOL")


def test_the_step_limit_forces_an_answer(
    client: httpx.Client, upstream: Upstream, tool_receiver: ToolReceiver, upstream_agent
):
    slug, model = upstream_agent(tools=[_tool(tool_receiver, "lookup_order", "/orders")])
    call = {"id": "again", "name": "lookup_order", "arguments": "{}"}
    upstream.script(model, *[Reply(chunks=[], tool_calls=[call]) for _ in range(3)])
    upstream.script(model, Reply(chunks=["Giving up on tools."]))
    session = client.post("/v1/sessions", json={"agent": f"agents/{slug}"}).json()["id"]
    sent = client.post(f"/v1/sessions/{session}/messages", json={"content": "Loop?"})
    assert sent.json()["reply"]["content"] == "Giving up on tools."
    # The server runs with `--max-tool-steps 4`: the fourth and last step is offered no tools,
    # so the model must answer.
    requests = upstream.received[model]
    assert len(requests) == 4
    assert all("tools" in r.body for r in requests[:3])
    assert "tools" not in requests[3].body


def _events_ndjson(response: httpx.Response) -> list[dict[str, object]]:
    return [json.loads(line)["result"] for line in response.text.splitlines() if line.strip()]
