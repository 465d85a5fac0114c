"""The native REST surface: transcoded RPCs, NDJSON and SSE streams, request ids, grpcurl parity."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from google.protobuf import json_format
from switchboard.v1 import agent_pb2

from tests.conftest import RunningServer

GRPCURL = Path(sys.executable).with_name("grpcurl")


def _new_session(http: httpx.Client, agent: str = "agents/support-bot") -> str:
    response = http.post("/v1/sessions", json={"agent": agent})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def test_stream_message_answers_ndjson_flushed_per_event(http: httpx.Client) -> None:
    session = _new_session(http)
    with http.stream(
        "POST",
        f"/v1/sessions/{session}/messages:stream",
        json={"content": "Do you ship to Canada?"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]

    assert all(set(line) == {"result"} for line in lines)
    events = [line["result"] for line in lines]
    contents = [e["content"]["text"] for e in events if "content" in e]
    assert len(contents) > 1
    assert "Canada" in "".join(contents)
    done = events[-1]["done"]
    assert done["session"] == f"sessions/{session}"
    assert done["usage"]["total_tokens"] > 0
    assert done["sources"]


def test_stream_message_answers_sse_when_asked(http: httpx.Client) -> None:
    session = _new_session(http)
    response = http.post(
        f"/v1/sessions/{session}/messages:stream",
        json={"content": "When are you open?"},
        headers={"accept": "text/event-stream"},
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    raw = response.content
    assert raw.endswith(b"\n\n")
    frames = raw[:-2].split(b"\n\n")
    assert all(f.startswith(b"data: ") for f in frames)
    events = [json.loads(f.removeprefix(b"data: "))["result"] for f in frames]
    assert "done" in events[-1]
    assert "Monday" in "".join(e["content"]["text"] for e in events if "content" in e)


def test_stream_error_before_any_event_is_an_http_error(http: httpx.Client) -> None:
    response = http.post("/v1/sessions/sess_missing/messages:stream", json={"content": "hi"})

    assert response.status_code == 404
    assert response.json()["code"] == 5


def test_request_id_round_trip_and_generation(http: httpx.Client) -> None:
    sent = http.get("/v1/models", headers={"x-request-id": "trace-abc-123"})
    assert sent.headers["x-request-id"] == "trace-abc-123"

    generated = [http.get("/v1/models").headers["x-request-id"] for _ in range(2)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", g) for g in generated)
    assert generated[0] != generated[1]

    for response in (
        http.get("/v1/nowhere"),
        http.put("/v1/models"),
        http.post("/v1/chat/completions", content=b"{"),
        http.get("/v1/sessions/sess_missing"),
        http.get("/healthz"),
    ):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert (
        http.get("/v1/nowhere", headers={"x-request-id": "r-404"}).headers["x-request-id"]
        == "r-404"
    )


def test_query_parameters_fill_the_request(http: httpx.Client) -> None:
    for _ in range(3):
        _new_session(http)
    first = http.get("/v1/sessions", params={"page_size": 2, "agent": "agents/support-bot"}).json()
    assert len(first["sessions"]) == 2
    assert first["next_page_token"]
    second = http.get(
        "/v1/sessions",
        params={
            "page_size": 2,
            "agent": "agents/support-bot",
            "page_token": first["next_page_token"],
        },
    )
    assert second.status_code == 200
    ids = {s["id"] for s in first["sessions"]} & {s["id"] for s in second.json()["sessions"]}
    assert not ids


def test_patch_derives_the_update_mask_from_the_body(http: httpx.Client) -> None:
    created = http.post(
        "/v1/agents", json={"display_name": "Before", "description": "keep me", "greeting": "Hello"}
    ).json()

    patched = http.patch(f"/v1/{created['name']}", json={"display_name": "After"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["display_name"] == "After"
    assert patched.json()["description"] == "keep me"

    masked = http.patch(
        f"/v1/{created['name']}",
        params={"update_mask": "description"},
        json={"description": "", "greeting": "ignored"},
    ).json()
    assert masked["description"] == ""
    assert masked["greeting"] == "Hello"


def test_path_templates_bind_nested_and_multi_segment_names(http: httpx.Client) -> None:
    agent = http.post("/v1/agents", json={"display_name": "Docs"}).json()
    document = http.post(
        f"/v1/{agent['name']}/documents", json={"title": "Hours", "content": "Open 9 to 5."}
    ).json()
    assert document["name"].startswith(f"{agent['name']}/documents/")

    assert http.delete(f"/v1/{document['name']}").status_code == 200
    listed = http.get(f"/v1/{agent['name']}/documents").json()
    assert listed["documents"] == []
    published = http.post(f"/v1/{agent['name']}:publish")
    assert published.json()["version"] == 1


def test_rest_and_grpcurl_return_the_same_agent(http: httpx.Client, server: RunningServer) -> None:
    grpcurl = str(GRPCURL) if GRPCURL.exists() else shutil.which("grpcurl")
    assert grpcurl, "grpcurl is part of the dev dependencies"
    rest = http.get("/v1/agents/support-bot")
    out = subprocess.run(
        [
            grpcurl,
            "-plaintext",
            "-H",
            f"authorization: Bearer {server.api_key}",
            "-d",
            '{"name": "agents/support-bot"}',
            server.grpc_target,
            "switchboard.v1.AgentService/GetAgent",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout

    via_rest = json_format.Parse(rest.text, agent_pb2.Agent())
    via_grpc = json_format.Parse(out, agent_pb2.Agent())
    assert via_rest == via_grpc
    assert via_rest.slug == "support-bot"
