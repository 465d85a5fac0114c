"""Request heads are bounded: a request line or headers over the limit answer 431 and the
connection is closed, without holding the server up; ordinary requests, large bodies
included, are served as before."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import RunningServer

DEFAULT_LIMIT = 65_536


def _exchange(server: RunningServer, data: bytes, *, chunk: int = 65_536) -> bytes:
    """Writes `data` on a fresh connection, then reads until the server closes it."""
    url = urlsplit(server.http_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        try:
            for start in range(0, len(data), chunk):
                sock.sendall(data[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse before the client is done writing
        received = b""
        while part := sock.recv(65_536):
            received += part
        return received


def _head(target: str, headers: dict[str, str], *, method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "host: switchboard", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _body(response: bytes) -> dict[str, object]:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


def _still_serves(server: RunningServer) -> None:
    headers = {"authorization": f"Bearer {server.api_key}"}
    assert httpx.get(f"{server.http_url}/v1/models", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "head",
    [
        _head("/v1/models", {"x-padding": "a" * 100_000}),
        _head("/v1/models?q=" + "a" * 100_000, {}),
        _head("/v1/models", {f"x-padding-{n}": "a" * 1_000 for n in range(100)}),
    ],
    ids=["one large header", "a long request line", "many headers"],
)
def test_a_head_over_the_limit_is_refused_with_431(server: RunningServer, head: bytes) -> None:
    response = _exchange(server, head)

    assert _status(response) == 431
    assert b"\r\nconnection: close\r\n" in response.lower()
    body = _body(response)
    assert body["code"] == 8
    assert str(DEFAULT_LIMIT) in str(body["message"])
    _still_serves(server)


def test_a_head_that_never_ends_is_cut_off(server: RunningServer) -> None:
    # Without a bound, the server would buffer this header for as long as the client writes.
    endless = b"GET /v1/models HTTP/1.1\r\nhost: switchboard\r\nx-padding: " + b"a" * 4_000_000

    response = _exchange(server, endless, chunk=16_384)

    assert _status(response) == 431
    _still_serves(server)


def test_a_request_with_a_few_kb_of_headers_is_served(server: RunningServer) -> None:
    headers = {
        "authorization": f"Bearer {server.api_key}",
        "cookie": "; ".join(f"c{n}={'v' * 60}" for n in range(60)),
        "user-agent": "Mozilla/5.0 " + "x" * 300,
        **{f"x-trace-{n}": "t" * 200 for n in range(10)},
    }

    response = _exchange(server, _head("/v1/models", headers))

    assert len(_head("/v1/models", headers)) > 6_000
    assert _status(response) == 200
    assert _body(response)["object"] == "list"


def test_a_large_body_behind_small_headers_is_not_taken_for_a_large_head(
    server: RunningServer,
) -> None:
    # A long conversation history, as a client continuing a chat sends it.
    history = [{"role": "assistant", "content": "We ship parcels worldwide. " * 12_000}]
    question = {"role": "user", "content": "Do you ship to Canada?"}
    body = json.dumps({"model": "support-bot", "messages": [*history, question]}).encode()
    head = _head(
        "/v1/chat/completions",
        {
            "authorization": f"Bearer {server.api_key}",
            "content-type": "application/json",
            "content-length": str(len(body)),
        },
        method="POST",
    )

    # Head and body in one write, so that they reach the server in the same reads.
    response = _exchange(server, head + body, chunk=len(head) + len(body))

    assert len(body) > 4 * DEFAULT_LIMIT
    assert _status(response) == 200
    assert _body(response)["object"] == "chat.completion"


def test_the_limit_is_a_setting(server_factory, monkeypatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_MAX_HEADER_BYTES", "16384")
    with server_factory(grpc_only=False) as own:
        authorization = {"authorization": f"Bearer {own.api_key}"}
        fits = _exchange(own, _head("/v1/models", {**authorization, "x-padding": "a" * 12_000}))
        over = _exchange(own, _head("/v1/models", {**authorization, "x-padding": "a" * 20_000}))

    assert _status(fits) == 200
    assert _status(over) == 431
    assert "16384" in str(_body(over)["message"])
