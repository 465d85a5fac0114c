"""Guardrails on every backend: blocked terms answer the refusal without calling the model, and
redaction catches matches split across stream chunks, in what is sent and what is stored."""

from __future__ import annotations

import json
import uuid

import httpx
from openai import OpenAI

from tests.runtime.upstream import Reply, Upstream


def test_blocked_terms_refuse_without_calling_the_model(
    runtime_server, upstream: Upstream, upstream_agent
):
    slug, model = upstream_agent(
        guardrails={"blocked_terms": ["wire transfer"], "refusal_reply": "I can't help with that."}
    )
    sdk = OpenAI(base_url=f"{runtime_server.http_url}/v1", api_key=runtime_server.api_key)
    reply = sdk.chat.completions.create(
        model=slug, messages=[{"role": "user", "content": "Can I pay by WIRE   transfer?"}]
    )
    assert reply.choices[0].message.content == "I can't help with that."
    assert reply.choices[0].finish_reason == "content_filter"
    stream = sdk.chat.completions.create(
        model=slug,
        messages=[{"role": "user", "content": "wire transfer please"}],
        stream=True,
    )
    finishes = [c.choices[0].finish_reason for c in stream if c.choices]
    assert finishes[-1] == "content_filter"
    assert upstream.received[model] == []
    # Whole words only: "transferable" is not the blocked term.
    upstream.script(model, Reply(chunks=["Yes."]))
    allowed = sdk.chat.completions.create(
        model=slug, messages=[{"role": "user", "content": "Is a wire transferable?"}]
    )
    assert allowed.choices[0].message.content == "Yes."


def test_a_match_split_across_three_chunks_is_redacted(
    client: httpx.Client, upstream: Upstream, upstream_agent
):
    slug, model = upstream_agent(
        guardrails={"redact": ["email", "card"], "redact_patterns": [r"ORD-\d{4}"]}
    )
    upstream.script(
        model,
        Reply(
            chunks=[
                "Write to jane.d",
                "oe@exam",
                "ple.com about OR",
                "D-12",
                "34; card 4111 1111 ",
                "1111 1111 is on file.",
            ]
        ),
    )
    session = client.post("/v1/sessions", json={"agent": f"agents/{slug}"}).json()["id"]
    response = client.post(
        f"/v1/sessions/{session}/messages:stream",
        json={"content": "Who do I write to?"},
        headers={"accept": "text/event-stream"},
    )
    events = [
        json.loads(line.removeprefix("data: "))["result"]
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    deltas = [e["content"]["text"] for e in events if "content" in e]
    expected = "Write to [redacted email] about [redacted]; card [redacted card] is on file."
    assert "".join(deltas) == expected
    assert not any(piece in delta for delta in deltas for piece in ("jane", "exam", "4111", "D-12"))
    # Tokens keep flowing: the text before the address was sent before the address arrived.
    assert deltas[0] == "Write to "
    stored = client.get(f"/v1/sessions/{session}/messages").json()["messages"]
    assert stored[-1]["content"] == expected


def test_the_builtin_backend_is_redacted_too(client: httpx.Client):
    slug = f"desk-{uuid.uuid4().hex[:8]}"
    created = client.post(
        "/v1/agents", json={"slug": slug, "guardrails": {"redact": ["email", "phone"]}}
    )
    assert created.status_code == 200
    document = {
        "title": "Contact",
        "content": "Complaints go to claims@example.org or +44 20 7946 0958 on weekdays.",
    }
    assert client.post(f"/v1/agents/{slug}/documents", json=document).status_code == 200
    assert client.post(f"/v1/agents/{slug}:publish").status_code == 200
    reply = client.post(
        "/v1/chat/completions",
        json={"model": slug, "messages": [{"role": "user", "content": "Where do complaints go?"}]},
    ).json()
    assert reply["content"] == (
        "Complaints go to [redacted email] or [redacted phone] on weekdays."
    )
