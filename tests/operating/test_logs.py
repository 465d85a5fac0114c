"""Logs are JSON lines that name the request, and never hold keys, upstream secrets or what
people wrote: the whole log of a run with an upstream agent is searched for them."""

from __future__ import annotations

import json
import time
import uuid

import httpx

from tests.conftest import RunningServer
from tests.operating.conftest import (
    HOOK_SECRET,
    UPSTREAM_KEY,
    client_of,
    publish_upstream_agent,
    webhook_tool,
)
from tests.runtime.upstream import Reply, ToolReceiver, ToolReply, Upstream

CHAT = "/v1/chat/completions"
FIELDS = {"time", "level", "logger", "pid", "message"}


def _json_lines(output: str) -> list[dict]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_a_full_run_logs_no_secret_and_no_message_text(
    operated: RunningServer, upstream: Upstream, tool_receiver: ToolReceiver
) -> None:
    http = client_of(operated)
    tool_receiver.replies["/parcels"] = ToolReply(body='{"where": "Bergen harbour"}')
    slug, model = publish_upstream_agent(
        http, upstream, [webhook_tool(tool_receiver, "find_parcel", "/parcels")]
    )
    secret_key = http.post(
        "/v1/keys", json={"display_name": "logs", "scopes": ["chat:write"]}
    ).json()["secret"]
    texts = [f"Where is my parcel {uuid.uuid4().hex} going?" for _ in range(4)]
    reply_text = f"Your parcel sails {uuid.uuid4().hex}."
    upstream.script(
        model,
        Reply(chunks=[], tool_calls=[{"id": "c9", "name": "find_parcel", "arguments": "{}"}]),
        Reply(chunks=[reply_text]),
    )
    with_key = {"authorization": f"Bearer {secret_key}"}
    answered = httpx.post(
        f"{operated.http_url}{CHAT}",
        headers=with_key,
        json={"model": slug, "messages": [{"role": "user", "content": texts[0]}]},
    )
    assert answered.status_code == 200, answered.text
    assert reply_text in answered.text
    streamed = http.post(
        CHAT,
        json={
            "model": "support-bot",
            "stream": True,
            "messages": [{"role": "user", "content": texts[1]}],
        },
    )
    assert streamed.status_code == 200
    session = http.post("/v1/sessions", json={"agent": "agents/support-bot"}).json()["id"]
    sent = http.post(f"/v1/sessions/{session}/messages", json={"content": texts[2]})
    assert sent.status_code == 200
    # A failing upstream logs its failure, not the prompt.
    upstream.script(model, *[Reply(status=500, error_body="boom")] * 3)
    failed = http.post(
        CHAT, json={"model": slug, "messages": [{"role": "user", "content": texts[3]}]}
    )
    assert failed.status_code == 502
    refused = httpx.get(
        f"{operated.http_url}/v1/agents", headers={"authorization": "Bearer sk_guessed_secret"}
    )
    assert refused.status_code == 401

    deadline = time.monotonic() + 5
    # Access lines are written once their response has gone: wait for the last one's.
    while '"status": 401' not in operated.output() and time.monotonic() < deadline:
        time.sleep(0.02)
    output = operated.output()
    # The demo key is printed once, on purpose, before the server starts serving.
    banner, _, log = output.partition("Switchboard is serving")
    assert operated.api_key in banner
    for secret in (operated.api_key, secret_key, UPSTREAM_KEY, HOOK_SECRET, "sk_guessed_secret"):
        assert secret not in log
    for secret in (secret_key, UPSTREAM_KEY, HOOK_SECRET):
        assert secret not in banner
    for text in [*texts, reply_text, "Bergen harbour"]:
        assert text not in output

    lines = _json_lines(log)
    assert lines, log
    for line in lines:
        assert FIELDS <= line.keys()
        # One worker: every line is written by the process `serve` started as.
        assert line["pid"] == operated.process.pid
    access = [line for line in lines if line["logger"] == "switchboard.access"]
    chat = [a for a in access if a.get("route") == CHAT and a.get("status") == 200]
    assert chat
    first = chat[0]
    assert {
        "request_id",
        "workspace",
        "agent",
        "session",
        "route",
        "status",
        "latency_ms",
    } <= first.keys()
    assert first["door"] == "openai" and first["method"] == "POST"
    assert isinstance(first["latency_ms"], float)
    assert first["workspace"] == "ws_default"
    native = [a for a in access if a.get("route", "").endswith("SessionService/SendMessage")]
    assert native and native[0]["session"] == session
    assert any(a.get("status") == 502 for a in access)
    assert any(a.get("status") == 401 for a in access)


def test_the_request_id_names_the_access_line(operated: RunningServer) -> None:
    request_id = f"req-{uuid.uuid4().hex}"
    response = httpx.get(f"{operated.http_url}/healthz", headers={"x-request-id": request_id})
    assert response.headers["x-request-id"] == request_id
    deadline = time.monotonic() + 5
    while True:
        # The access line is written once the response has gone.
        lines = [
            line for line in _json_lines(operated.output()) if line.get("request_id") == request_id
        ]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert [line["route"] for line in lines] == ["/healthz"]
    assert lines[0]["level"] == "info" and lines[0]["status"] == 200
