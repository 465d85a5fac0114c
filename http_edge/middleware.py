"""Pure ASGI middleware: the request id on every response, and a last guard against crashes."""

from __future__ import annotations

import logging
import secrets

import grpc

from http_edge.errors import edge_error
from http_edge.responses import send_error
from http_edge.types import Message, Receive, Scope, Send

logger = logging.getLogger("http_edge")

_MAX_REQUEST_ID = 128


class RequestIdMiddleware:
    """Reads or makes `x-request-id`, stores it in the scope and echoes it on the response.

    An exception escaping the app becomes a 500 in the surface's error shape (when nothing was
    sent yet) instead of reaching the server, so no request can take a worker down.
    """

    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        request_id = _incoming_request_id(scope["headers"]) or secrets.token_hex(16)
        scope["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        if "\n" in scope["path"]:
            # No route holds a line feed, and the router's patterns would miss it into a
            # plain-text 404: it is answered here in the surface's error shape.
            error = edge_error(grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND", "Not Found")
            await send_error(scope, send_with_id, error)
            return
        try:
            await self.app(scope, receive, send_with_id)  # type: ignore[operator]
        except Exception:
            logger.exception("request %s failed", request_id)
            if not started:
                error = edge_error(grpc.StatusCode.INTERNAL, 500, "INTERNAL", "internal error")
                await send_error(scope, send_with_id, error)


def _incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-request-id":
            # Forwarded as gRPC metadata, so only short printable ASCII is taken as given.
            if 0 < len(value) <= _MAX_REQUEST_ID and value.isascii():
                text = value.decode()
                if text.isprintable():
                    return text
            return None
    return None
