"""Bad requests answer in the error shape of the surface they hit, naming the field at fault."""

from __future__ import annotations

import httpx
import pytest

OPENAI_KEYS = {"message", "type", "param", "code"}
CHAT = "/v1/chat/completions"


def _openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == OPENAI_KEYS
    assert isinstance(body["error"]["code"], str)
    return body["error"]


def _native_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert isinstance(body["code"], int)
    return body


def _violations(body: dict) -> list[str]:
    return [
        v["field"]
        for d in body["details"]
        if d["@type"].endswith("google.rpc.BadRequest")
        for v in d["field_violations"]
    ]


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"model": "support-bot"}, "messages", "messages"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model", "model"),
        ({"model": "support-bot", "messages": "hi"}, "messages", "messages"),
        ({"model": 7, "messages": [{"role": "user", "content": "hi"}]}, "model", "model"),
        (
            {
                "model": "support-bot",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": "yes",
            },
            "stream",
            "stream",
        ),
        ({"model": "support-bot", "messages": [{"content": "hi"}]}, "messages[0].role", "role"),
        (
            {"model": "support-bot", "messages": [{"role": "wizard", "content": "hi"}]},
            "messages[0].role",
            "role",
        ),
        (
            {
                "model": "support-bot",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "look"},
                            {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                        ],
                    }
                ],
            },
            "messages[0].content[1].type",
            "text",
        ),
    ],
)
def test_openai_bad_fields_are_400_naming_the_param(
    http: httpx.Client, body: dict, param: str, needle: str
) -> None:
    error = _openai_error(http.post(CHAT, json=body), 400)

    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert needle in error["message"]


def test_openai_malformed_json_is_400(http: httpx.Client) -> None:
    response = http.post(
        CHAT,
        content=b'{"model": "support-bot", "messages": [',
        headers={"content-type": "application/json"},
    )

    error = _openai_error(response, 400)
    assert "JSON" in error["message"]
    assert response.headers["x-should-retry"] == "false"


def test_openai_body_over_the_limit_is_413(http: httpx.Client) -> None:
    oversized = b'{"model": "support-bot", "pad": "' + b"a" * 1_100_000 + b'"}'
    error = _openai_error(http.post(CHAT, content=oversized), 413)

    assert "limit" in error["message"]


def test_openai_body_over_the_limit_without_content_length_is_413(http: httpx.Client) -> None:
    def chunks():
        yield b'{"model": "support-bot", "pad": "'
        for _ in range(20):
            yield b"a" * 65_536
        yield b'"}'

    # A generator body goes out chunked, with no Content-Length to trust.
    _openai_error(http.post(CHAT, content=chunks()), 413)


def test_openai_wrong_method_and_unknown_paths(http: httpx.Client) -> None:
    wrong_method = http.get(CHAT)
    _openai_error(wrong_method, 405)
    assert wrong_method.headers["allow"] == "POST"
    _openai_error(http.get("/v2/chats/openai"), 405)
    _openai_error(http.delete("/v1/models"), 405)
    assert _openai_error(http.get("/v1/models/no-such-agent"), 404)["code"] == "model_not_found"
    _openai_error(http.post("/v1/chat/completions/extra", json={}), 404)


def test_openai_unknown_model_is_404_model_not_found(http: httpx.Client) -> None:
    body = {"model": "no-such-agent", "messages": [{"role": "user", "content": "hi"}]}
    error = _openai_error(http.post(CHAT, json=body), 404)

    assert error["code"] == "model_not_found"
    assert error["param"] is None


def test_openai_missing_key_is_401(anonymous: httpx.Client) -> None:
    body = {"model": "support-bot", "messages": [{"role": "user", "content": "hi"}]}
    response = anonymous.post(CHAT, json=body)

    error = _openai_error(response, 401)
    assert error["type"] == "authentication_error"
    assert response.headers["x-should-retry"] == "false"


def test_native_malformed_json_is_400(http: httpx.Client) -> None:
    response = http.post(
        "/v1/sessions", content=b"{not json", headers={"content-type": "application/json"}
    )

    body = _native_error(response, 400)
    assert body["code"] == 3
    assert "JSON" in body["message"]


def test_native_wrong_type_is_400_naming_the_field(http: httpx.Client) -> None:
    body = _native_error(http.post("/v1/sessions", json={"agent": 42}), 400)

    assert "session.agent" in body["message"]
    assert _violations(body) == ["session.agent"]


def test_native_missing_required_field_is_400_naming_it(http: httpx.Client) -> None:
    body = _native_error(http.post("/v1/sessions", json={"labels": {"a": "b"}}), 400)

    assert "session.agent" in body["message"]
    assert _violations(body) == ["session.agent"]


def test_native_wrong_query_type_is_400_naming_the_parameter(http: httpx.Client) -> None:
    body = _native_error(http.get("/v1/sessions", params={"page_size": "many"}), 400)

    assert _violations(body) == ["page_size"]


def test_native_body_over_the_limit_is_413(http: httpx.Client) -> None:
    oversized = b'{"agent": "agents/support-bot", "pad": "' + b"a" * 1_100_000 + b'"}'
    body = _native_error(http.post("/v1/sessions", content=oversized), 413)

    assert "limit" in body["message"]


def test_native_unknown_route_is_404(http: httpx.Client) -> None:
    body = _native_error(http.get("/v1/nothing/here"), 404)

    assert body["code"] == 5


def test_native_wrong_method_is_405_with_allow(http: httpx.Client) -> None:
    response = http.put("/v1/agents/support-bot", json={})

    _native_error(response, 405)
    assert set(response.headers["allow"].split(", ")) == {"GET", "PATCH", "DELETE"}


def test_native_core_errors_keep_their_details(http: httpx.Client) -> None:
    body = _native_error(http.get("/v1/sessions/sess_missing"), 404)

    assert body["code"] == 5
    [info] = [d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert info["reason"] == "SESSION_NOT_FOUND"
    assert info["domain"] == "switchboard"


def test_garbage_never_breaks_the_edge(http: httpx.Client) -> None:
    for content in (
        b"\xff\xfe\x00",
        b"[]",
        b"null",
        b"1e999999",
        b'"x"',
        b"{" * 100_000,
        b"[" * 100_000,
    ):
        assert http.post(CHAT, content=content).status_code == 400
        assert http.post("/v1/sessions", content=content).status_code == 400
    assert http.get("/healthz").status_code == 200
