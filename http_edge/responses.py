"""Writing ASGI responses: JSON bodies and errors in the shape of the surface a request hit."""

from __future__ import annotations

from http_edge.errors import ApiError, error_headers, native_body, openai_body
from http_edge.marshal import encode_json
from http_edge.types import Scope, Send

JSON_CONTENT_TYPE = (b"content-type", b"application/json")
_OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/models", "/v2/chats/openai"})
_OPENAI_PREFIXES = ("/v1/models/", "/v1/chat/completions/", "/v2/chats/openai/")


def is_openai_path(path: str) -> bool:
    """Whether errors on `path` take the OpenAI shape rather than the native one."""
    return path in _OPENAI_PATHS or path.startswith(_OPENAI_PREFIXES)


async def send_bytes(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A whole JSON response in two ASGI messages."""
    raw_headers = [JSON_CONTENT_TYPE, (b"content-length", str(len(body)).encode())]
    if headers:
        raw_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(scope: Scope, send: Send, error: ApiError) -> None:
    """`error` as a response, in the error shape of the surface `scope` addressed."""
    openai = is_openai_path(scope["path"])
    body = openai_body(error) if openai else native_body(error)
    headers = [(k.encode(), v.encode()) for k, v in error_headers(error).items()]
    await send_bytes(send, error.http_status, encode_json(body), headers)
