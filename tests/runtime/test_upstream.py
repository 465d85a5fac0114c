"""An agent answered by an OpenAI-compatible upstream, through every door: deltas forwarded as
they arrive, grounded prompts, the agent's sampling and key, bounded history, usage."""

from __future__ import annotations

import json

import grpc
import httpx
import pytest
from openai import OpenAI
from switchboard.v1 import completion_service_pb2 as cpb
from switchboard.v1 import completion_service_pb2_grpc

from tests.runtime.conftest import UPSTREAM_KEY
from tests.runtime.upstream import Reply, Upstream

QUESTION = "When do parcels to Norway arrive?"


def _sdk(server) -> OpenAI:
    return OpenAI(base_url=f"{server.http_url}/v1", api_key=server.api_key, max_retries=0)


def test_sdk_stream_forwards_upstream_deltas(runtime_server, upstream: Upstream, upstream_agent):
    slug, model = upstream_agent(sampling={"temperature": 0.2, "top_p": 0.9, "max_tokens": 64})
    upstream.script(model, Reply(chunks=["Within ", "nine ", "days [1]."]))
    stream = _sdk(runtime_server).chat.completions.create(
        model=slug,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
        temperature=1.5,
    )
    chunks = list(stream)
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert deltas == ["Within ", "nine ", "days [1]."]
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 7)

    [sent] = upstream.received[model]
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    body = sent.body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    # The agent's sampling goes upstream; the client's temperature is ignored.
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.2, 0.9, 64)
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are the parcel desk.")
    assert "[1] Deliveries" in system["content"] and "nine days" in system["content"]
    assert body["messages"][-1] == {"role": "user", "content": QUESTION}
    assert "tools" not in body


def test_every_door_gets_the_upstream_answer(
    runtime_server, client: httpx.Client, upstream: Upstream, upstream_agent
):
    slug, model = upstream_agent()
    upstream.script(
        model,
        Reply(chunks=["By ferry."]),
        Reply(chunks=["By ", "ferry."]),
        Reply(chunks=["By ferry, ", "in nine days."]),
    )
    unary = _sdk(runtime_server).chat.completions.create(
        model=slug, messages=[{"role": "user", "content": QUESTION}]
    )
    assert unary.choices[0].message.content == "By ferry."
    assert unary.system_fingerprint == f"switchboard-openai_compatible:{model}"

    with grpc.insecure_channel(runtime_server.grpc_target) as channel:
        stub = completion_service_pb2_grpc.CompletionServiceStub(channel)
        reply = stub.CreateChatCompletion(
            cpb.CreateChatCompletionRequest(
                model=slug, messages=[cpb.ChatMessage(role="user", content=QUESTION)]
            ),
            metadata=(("authorization", f"Bearer {runtime_server.api_key}"),),
        )
    assert reply.choices[0].message.content == "By ferry."

    session = client.post("/v1/sessions", json={"agent": f"agents/{slug}"}).json()["id"]
    response = client.post(
        f"/v1/sessions/{session}/messages:stream",
        json={"content": QUESTION},
        headers={"accept": "text/event-stream"},
    )
    events = [
        json.loads(line.removeprefix("data: "))["result"]
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    assert [e["content"]["text"] for e in events if "content" in e] == [
        "By ferry, ",
        "in nine days.",
    ]
    done = events[-1]["done"]
    assert done["metrics"]["backend"] == f"openai_compatible:{model}"
    assert done["usage"]["total_tokens"] == 18
    [source] = done["sources"]
    assert source["title"] == "Deliveries" and source["passage"] == 0 and source["score"] > 0
    stored = client.get(f"/v1/sessions/{session}/messages").json()["messages"]
    assert stored[-1]["sources"][0]["document"] == source["document"]


def test_history_is_sent_newest_turns_first_within_the_budget(
    client: httpx.Client, upstream: Upstream, upstream_agent
):
    slug, model = upstream_agent()
    session = client.post("/v1/sessions", json={"agent": f"agents/{slug}"}).json()["id"]
    for turn in range(3):
        upstream.script(model, Reply(chunks=[f"answer {turn}"]))
        sent = client.post(f"/v1/sessions/{session}/messages", json={"content": f"question {turn}"})
        assert sent.status_code == 200
    last = upstream.received[model][-1].body["messages"]
    assert [(m["role"], m["content"]) for m in last[1:]] == [
        ("user", "question 0"),
        ("assistant", "answer 0"),
        ("user", "question 1"),
        ("assistant", "answer 1"),
        ("user", "question 2"),
    ]


def test_history_fits_the_context_budget(client: httpx.Client, upstream: Upstream, upstream_agent):
    # The server runs with `--context-tokens 1000`; each of these turns costs about 600.
    slug, model = upstream_agent()
    session = client.post("/v1/sessions", json={"agent": f"agents/{slug}"}).json()["id"]
    for turn in range(3):
        upstream.script(model, Reply(chunks=[f"answer {turn} " + "a" * 890]))
        question = f"question {turn} " + "q" * 890
        assert client.post(f"/v1/sessions/{session}/messages", json={"content": question})
    upstream.script(model, Reply(chunks=["last"]))
    client.post(f"/v1/sessions/{session}/messages", json={"content": "And now?"})
    sent = upstream.received[model][-1].body["messages"]
    assert [m["content"][:10] for m in sent[1:]] == ["question 2", "answer 2 a", "And now?"]


def test_an_upstream_that_does_not_stream_still_answers(
    runtime_server, upstream: Upstream, upstream_agent
):
    slug, model = upstream_agent()
    upstream.script(model, Reply(chunks=["Whole ", "answer."], whole_json=True))
    reply = _sdk(runtime_server).chat.completions.create(
        model=slug, messages=[{"role": "user", "content": QUESTION}]
    )
    assert reply.choices[0].message.content == "Whole answer."


@pytest.mark.parametrize("door", ["sdk", "grpc"])
def test_the_agents_key_is_never_echoed(runtime_server, upstream: Upstream, upstream_agent, door):
    slug, model = upstream_agent()
    upstream.script(model, Reply(status=401, error_body=f'{{"error": "bad key {UPSTREAM_KEY}"}}'))
    if door == "sdk":
        with pytest.raises(Exception) as caught:
            _sdk(runtime_server).chat.completions.create(
                model=slug, messages=[{"role": "user", "content": QUESTION}]
            )
        text = str(caught.value)
    else:
        with grpc.insecure_channel(runtime_server.grpc_target) as channel:
            stub = completion_service_pb2_grpc.CompletionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.CreateChatCompletion(
                    cpb.CreateChatCompletionRequest(
                        model=slug, messages=[cpb.ChatMessage(role="user", content=QUESTION)]
                    ),
                    metadata=(("authorization", f"Bearer {runtime_server.api_key}"),),
                )
            text = caught.value.details()
    assert "credentials were refused" in text
    assert UPSTREAM_KEY not in text
    assert UPSTREAM_KEY not in runtime_server.output()
