"""HTTP/1.1 on the wire, as a client that writes its own bytes sees the edge answer: keep-alive,
pipelining, `Expect: 100-continue`, HEAD, HTTP/1.0 and `Connection: close`."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import RunningServer


@pytest.fixture
def connection(server: RunningServer) -> Iterator[socket.socket]:
    host, port = server.http_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        yield sock


class _Reader:
    """Reads whole responses (content-length or chunked bodies) off a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def _fill(self) -> bool:
        data = self._sock.recv(65536)
        self._buffer += data
        return bool(data)

    def _until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            assert self._fill(), f"connection closed before {marker!r}: {self._buffer!r}"
        found, _, self._buffer = self._buffer.partition(marker)
        return found

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            assert self._fill(), "connection closed inside a body"
        found, self._buffer = self._buffer[:size], self._buffer[size:]
        return found

    def response(self, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        status_line, *lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        if head_only or status in (100, 204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._until(b"\r\n"), 16):
                body += self._exactly(size)
                self._until(b"\r\n")
            self._until(b"\r\n")
            return status, headers, body
        return status, headers, self._exactly(int(headers.get("content-length", "0")))

    def closed(self) -> bool:
        """Whether the server closed the connection (after what was buffered)."""
        return not self._buffer and not self._fill()


def _get(path: str, *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "host: edge", *extra, "", ""]).encode()


def test_a_connection_is_kept_alive_across_requests(connection: socket.socket) -> None:
    reader = _Reader(connection)
    for _ in range(3):
        connection.sendall(_get("/healthz"))
        status, headers, body = reader.response()
        assert status == 200 and json.loads(body)
        assert "connection" not in headers


def test_pipelined_requests_are_answered_in_order(
    connection: socket.socket, server: RunningServer
) -> None:
    auth = f"authorization: Bearer {server.api_key}"
    connection.sendall(_get("/healthz") + _get("/v1/models", auth) + _get("/nowhere"))
    reader = _Reader(connection)
    statuses = []
    bodies = []
    for _ in range(3):
        status, _, body = reader.response()
        statuses.append(status)
        bodies.append(json.loads(body))
    assert statuses == [200, 200, 404]
    assert bodies[1]["object"] == "list"


def test_expect_100_continue_is_answered_before_the_body_is_read(
    connection: socket.socket, server: RunningServer
) -> None:
    body = json.dumps({"model": "support-bot", "messages": [{"role": "user", "content": "Hi"}]})
    head = "\r\n".join(
        [
            "POST /v1/chat/completions HTTP/1.1",
            "host: edge",
            f"authorization: Bearer {server.api_key}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "expect: 100-continue",
            "",
            "",
        ]
    )
    connection.sendall(head.encode())
    reader = _Reader(connection)
    status, _, _ = reader.response()
    assert status == 100
    connection.sendall(body.encode())
    status, _, answer = reader.response()
    assert status == 200
    assert json.loads(answer)["choices"][0]["message"]["content"]


def test_head_answers_the_headers_of_get_without_a_body(connection: socket.socket) -> None:
    connection.sendall(_get("/widget.js").replace(b"GET", b"HEAD", 1) + _get("/healthz"))
    reader = _Reader(connection)
    status, headers, _ = reader.response(head_only=True)
    assert status == 200 and int(headers["content-length"]) > 0
    # The next response follows at once: no body bytes came between.
    status, _, body = reader.response()
    assert status == 200 and json.loads(body)


def test_connection_close_is_honoured(connection: socket.socket) -> None:
    connection.sendall(_get("/healthz", "connection: close"))
    reader = _Reader(connection)
    status, headers, _ = reader.response()
    assert status == 200 and headers["connection"] == "close"
    assert reader.closed()


def test_http_1_0_gets_one_response_then_the_connection_closes(
    connection: socket.socket,
) -> None:
    connection.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
    reader = _Reader(connection)
    status, _, body = reader.response()
    assert status == 200 and json.loads(body)
    assert reader.closed()


def test_a_malformed_request_line_answers_400_and_closes(connection: socket.socket) -> None:
    connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    reader = _Reader(connection)
    status, _, body = reader.response()
    assert status == 400 and body
    assert reader.closed()
