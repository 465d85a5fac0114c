"""Fields a client depends on are honoured or refused, never silently ignored: response_format,
n and a forced tool_choice; the fields that are ignored by design are named in a header."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.runtime.upstream import Reply, Upstream

QUESTION = {"role": "user", "content": "When do parcels to Norway arrive?"}


class Delivery(BaseModel):
    destination: str
    days: int


def _sdk(server) -> OpenAI:
    return OpenAI(base_url=f"{server.http_url}/v1", api_key=server.api_key, max_retries=0)


def test_structured_output_is_passed_upstream_and_checked(
    runtime_server, upstream: Upstream, upstream_agent
):
    slug, model = upstream_agent()
    upstream.script(
        model,
        Reply(chunks=['{"destination": "Norway"}']),
        Reply(chunks=['{"destination": ', '"Norway", "days": 9}']),
    )
    parsed = _sdk(runtime_server).beta.chat.completions.parse(
        model=slug, messages=[QUESTION], response_format=Delivery
    )
    assert parsed.choices[0].message.parsed == Delivery(destination="Norway", days=9)
    first, second = (r.body for r in upstream.received[model])
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["name"] == "Delivery"
    # The invalid first answer was sent back once with what was wrong with it.
    assert second["messages"][-2] == {"role": "assistant", "content": '{"destination": "Norway"}'}
    assert "'days' is a required property" in second["messages"][-1]["content"]


def test_twice_invalid_output_is_a_clear_error(runtime_server, upstream: Upstream, upstream_agent):
    slug, model = upstream_agent()
    upstream.script(model, Reply(chunks=["not json"]), Reply(chunks=["still not json"]))
    with pytest.raises(openai.APIStatusError) as caught:
        _sdk(runtime_server).chat.completions.create(
            model=slug, messages=[QUESTION], response_format={"type": "json_object"}
        )
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_invalid_output"  # type: ignore[index]
    assert "not a JSON document" in caught.value.message


def test_the_builtin_backend_refuses_response_format(runtime_server):
    with pytest.raises(openai.BadRequestError) as caught:
        _sdk(runtime_server).chat.completions.create(
            model="support-bot", messages=[QUESTION], response_format={"type": "json_object"}
        )
    assert caught.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    assert caught.value.body["param"] == "response_format"  # type: ignore[index]
    plain = _sdk(runtime_server).chat.completions.create(
        model="support-bot", messages=[QUESTION], response_format={"type": "text"}
    )
    assert plain.choices[0].message.content


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 2),
        ("tool_choice", "required"),
        ("tool_choice", {"type": "function", "function": {"name": "lookup"}}),
    ],
)
def test_what_cannot_be_honoured_is_refused(client: httpx.Client, field: str, value: object):
    response = client.post(
        "/v1/chat/completions",
        json={"model": "support-bot", "messages": [QUESTION], field: value},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_parameter", field)


def test_ignored_fields_are_named_in_a_header(client: httpx.Client):
    body = {
        "model": "support-bot",
        "messages": [QUESTION],
        "temperature": 0.1,
        "tools": [],
        "tool_choice": "auto",
        "n": 1,
        "seed": 3,
    }
    unary = client.post("/v1/chat/completions", json=body)
    assert unary.status_code == 200
    assert unary.headers["x-ignored-params"] == "seed, temperature, tools"
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as stream:
        assert stream.headers["x-ignored-params"] == "seed, temperature, tools"
        lines = [line for line in stream.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    plain = client.post(
        "/v1/chat/completions", json={"model": "support-bot", "messages": [QUESTION]}
    )
    assert "x-ignored-params" not in plain.headers
    assert json.loads(plain.text)["choices"][0]["finish_reason"] == "stop"
