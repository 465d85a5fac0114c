"""Schemathesis against the running edge, from its own OpenAPI document: every operation, with
and without a key. No answer is a 5xx, every answer is one the document declares (status,
content type, schema, headers), and nothing that needs a key answers without one.

The server is one of its own: fuzzed DELETEs and PATCHes must not touch the demo agent that
the rest of the suite shares. The operations are collected from the document the edge builds
(the same code serves `/openapi.json`, and a test below holds the two equal), because
schemathesis parametrizes at collection time, before any server runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from http_edge.mux import load_routes
from http_edge.openapi import build_openapi
from tests.conftest import RunningServer

# Few examples per operation, no deadline and a fixed derandomized search keep the whole run
# short and repeatable.
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.missing_required_header,
    checks.ignored_auth,
    checks.unsupported_method,
    checks.allow_header_conformance,
]
# Errors the router itself answers when a request reaches no operation.
ROUTING_REASONS = {"NOT_FOUND", "METHOD_NOT_ALLOWED"}


# Cases are drawn at collection time, before the server (and its key) exists: they carry this
# token, which each test swaps for the real key as it sends the case.
KEY_PLACEHOLDER = "sk_placeholder"


def _schema(*, generated_keys: bool) -> schemathesis.BaseSchema:
    config = schemathesis.Config()
    config.projects.override.generation.update(with_security_parameters=generated_keys)
    return schemathesis.openapi.from_dict(build_openapi(load_routes()), config=config)


keyed = _schema(generated_keys=True)
# No Authorization header at all, not even a generated one.
keyless = _schema(generated_keys=False)


@keyed.auth()
class DemoKey:
    """The demo key as a bearer token; schemathesis drops it where it tests a missing key."""

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        return KEY_PLACEHOLDER

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module")
def fuzzed_server(server_factory) -> Iterator[RunningServer]:
    with server_factory() as running:
        yield running


def test_the_served_document_is_the_fuzzed_one(fuzzed_server: RunningServer) -> None:
    served = httpx.get(f"{fuzzed_server.http_url}/openapi.json").json()

    assert served == build_openapi(load_routes(), served["info"]["version"])


@keyed.parametrize()
@FUZZ
def test_every_answer_is_one_the_document_declares(
    case: schemathesis.Case, fuzzed_server: RunningServer
) -> None:
    if case.headers and case.headers.get("Authorization") == f"Bearer {KEY_PLACEHOLDER}":
        case.headers["Authorization"] = f"Bearer {fuzzed_server.api_key}"
    case.call_and_validate(base_url=fuzzed_server.http_url, checks=CHECKS, timeout=30)


@keyless.parametrize()
@FUZZ
def test_nothing_that_needs_a_key_answers_without_one(
    case: schemathesis.Case, fuzzed_server: RunningServer
) -> None:
    response = case.call(base_url=fuzzed_server.http_url, timeout=30)

    assert response.status_code < 500, response.text
    if case.operation.definition.raw.get("security") == []:
        return
    if response.status_code != 401:
        # Only a request that reached no operation may answer otherwise, and never with a 2xx.
        assert response.status_code in (404, 405), (response.status_code, response.text)
        assert _reason(response.json()) in ROUTING_REASONS, response.text
        return
    assert _reason(response.json()) == "API_KEY_MISSING", response.text


def test_the_document_names_an_error_shape_for_every_operation(fuzzed_server) -> None:
    document = httpx.get(f"{fuzzed_server.http_url}/openapi.json").json()

    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "default" not in responses, (method, path)
            # Headers too large are refused before routing: always the native shape.
            too_large = responses["431"]["content"]["application/json"]["schema"]
            assert too_large["$ref"].endswith("google.rpc.Status"), (method, path)
            if operation.get("security") == []:
                continue
            openai = path.startswith(("/v1/models", "/v1/chat/completions")) and ":" not in path
            expected = "openai.Error" if openai else "google.rpc.Status"
            for status in ("400", "401", "403", "404", "429", "5XX"):
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema["$ref"].endswith(expected), (method, path, status)


def _reason(body: dict) -> str:
    if "error" in body:
        return str(body["error"]["code"]).upper()
    infos = [d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    return str(infos[0]["reason"]) if infos else ""
