"""`GET /metrics`: the Prometheus exposition of the serving processes, optionally behind a
bearer token of its own (not an API key: scrapers hold no workspace's key)."""

from __future__ import annotations

import hmac

from http_edge.types import Receive, Scope, Send
from observability import metrics

_UNAUTHORIZED = b"send the header `Authorization: Bearer <metrics token>`\n"


class MetricsEndpoint:
    """Answers the scrape; with `token`, only to `Authorization: Bearer <token>`."""

    def __init__(self, token: str | None = None) -> None:
        self._expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._expected is not None:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                await _send(
                    send,
                    401,
                    _UNAUTHORIZED,
                    b"text/plain; charset=utf-8",
                    [(b"www-authenticate", b'Bearer realm="metrics"')],
                )
                return
        await _send(send, 200, metrics.exposition(), metrics.CONTENT_TYPE.encode())


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})
