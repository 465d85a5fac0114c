"""Reading ASGI requests: headers and a body bounded by a byte limit."""

from __future__ import annotations

import grpc

from http_edge.errors import ApiError, edge_error
from http_edge.types import Receive, Scope

# A client still writing an oversized body gets its 413 only once it stops writing, so the edge
# reads on (discarding) up to this multiple of the limit before answering.
_DRAIN_FACTOR = 16


class ClientDisconnected(Exception):
    """The client went away before its request was read."""


def headers_of(scope: Scope) -> dict[bytes, bytes]:
    """The request headers by lower-case name (ASGI already lower-cases them); the last wins."""
    return dict(scope["headers"])


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The whole body; more than `limit` bytes (counted as they arrive) is a 413."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit * _DRAIN_FACTOR:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            if chunk:
                chunks.append(chunk)
        elif size > limit * _DRAIN_FACTOR:
            raise _too_large(limit)
        if not message.get("more_body", False):
            break
    if size > limit:
        raise _too_large(limit)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return edge_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        413,
        "PAYLOAD_TOO_LARGE",
        f"request body exceeds the limit of {limit} bytes",
    )


__all__ = ["ApiError", "ClientDisconnected", "headers_of", "read_body"]
