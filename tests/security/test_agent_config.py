"""Agent configuration is validated at create, update and publish, one field violation per
problem, over HTTP and gRPC alike."""

from __future__ import annotations

import math
import uuid

import grpc
import httpx
import pytest
from switchboard.v1 import agent_pb2, agent_service_pb2

from tests.grpc.conftest import field_violations


def _violations(response: httpx.Response) -> dict[str, str]:
    for detail in response.json()["details"]:
        if "field_violations" in detail:
            return {v["field"]: v["description"] for v in detail["field_violations"]}
    return {}


BROKEN = {
    "knowledge": {"min_score": "NaN", "top_k": -1},
    "sampling": {"temperature": "Infinity", "top_p": 0, "max_tokens": -5},
    "guardrails": {
        "max_input_chars": -1,
        "redact": ["email", "passport"],
        "redact_patterns": ["(unclosed", "x*"],
    },
    "tools": [
        {"name": "lookup order", "parameters_json": "[1, 2]", "webhook": {"url": "ftp://x/y"}},
        {"name": "ok_tool", "parameters_json": "{not json", "webhook": {"url": "https://"}},
    ],
    "backend": {"openai_compatible": {"api_key_env": "sk-live-123"}},
}
EXPECTED = {
    "agent.knowledge.min_score",
    "agent.knowledge.top_k",
    "agent.sampling.temperature",
    "agent.sampling.top_p",
    "agent.sampling.max_tokens",
    "agent.guardrails.max_input_chars",
    "agent.guardrails.redact[1]",
    "agent.guardrails.redact_patterns[0]",
    "agent.guardrails.redact_patterns[1]",
    "agent.tools[0].name",
    "agent.tools[0].parameters_json",
    "agent.tools[0].webhook.url",
    "agent.tools[1].parameters_json",
    "agent.tools[1].webhook.url",
    "agent.backend.openai_compatible.base_url",
    "agent.backend.openai_compatible.model",
    "agent.backend.openai_compatible.api_key_env",
}


def test_create_lists_every_problem(http: httpx.Client) -> None:
    response = http.post("/v1/agents", json={"slug": f"bad-{uuid.uuid4().hex[:8]}", **BROKEN})
    assert response.status_code == 400
    violations = _violations(response)
    assert set(violations) == EXPECTED
    assert "passport" in violations["agent.guardrails.redact[1]"]
    assert "regular expression" in violations["agent.guardrails.redact_patterns[0]"]
    assert "JSON Schema object" in violations["agent.tools[0].parameters_json"]


def test_update_checks_the_merged_draft(http: httpx.Client) -> None:
    created = http.post("/v1/agents", json={"slug": f"ok-{uuid.uuid4().hex[:8]}"}).json()
    for body, field in (
        ({"sampling": {"temperature": "NaN"}}, "agent.sampling.temperature"),
        (
            {"tools": [{"name": "t", "webhook": {"url": "file:///etc/passwd"}}]},
            "agent.tools[0].webhook.url",
        ),
        # The builtin responder calls no tools, so they are refused rather than ignored.
        (
            {"tools": [{"name": "t", "webhook": {"url": "https://hooks.example/t"}}]},
            "agent.tools",
        ),
        (
            {"backend": {"openai_compatible": {"base_url": "http://127.0.0.1:9/v1"}}},
            "agent.backend.openai_compatible.model",
        ),
        ({"guardrails": {"redact_patterns": ["[a-"]}}, "agent.guardrails.redact_patterns[0]"),
    ):
        response = http.patch(f"/v1/agents/{created['id']}", json=body)
        assert response.status_code == 400, response.text
        assert field in _violations(response)
    good = {
        "backend": {"openai_compatible": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}},
        "tools": [
            {
                "name": "lookup_order",
                "parameters_json": '{"type": "object", "properties": {"id": {"type": "string"}}}',
                "webhook": {"url": "https://hooks.example/orders", "timeout_ms": 2000},
            }
        ],
        "guardrails": {"redact": ["email", "card"], "redact_patterns": [r"\bORD-\d+\b"]},
    }
    assert http.patch(f"/v1/agents/{created['id']}", json=good).status_code == 200


async def test_grpc_refuses_nan_and_negative_numbers(stubs, auth) -> None:
    agent = agent_pb2.Agent(
        knowledge=agent_pb2.KnowledgeSettings(min_score=math.nan),
        sampling=agent_pb2.Sampling(temperature=-1, max_tokens=0),
        guardrails=agent_pb2.Guardrails(max_input_chars=-3),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.agents.CreateAgent(
            agent_service_pb2.CreateAgentRequest(agent=agent), metadata=auth
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {
        "agent.knowledge.min_score",
        "agent.sampling.temperature",
        "agent.sampling.max_tokens",
        "agent.guardrails.max_input_chars",
    }
