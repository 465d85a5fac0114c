"""`/healthz` (the process is up) and `/readyz` (the core answers a health check)."""

from __future__ import annotations

from http_edge.core import CoreClient
from http_edge.marshal import encode_json
from http_edge.responses import send_bytes, send_error
from http_edge.transcoder import method_not_allowed
from http_edge.types import Receive, Scope, Send

_READY_TIMEOUT_SECONDS = 1.0
_RATE_LIMITS = "switchboard.RateLimits"


class Healthz:
    """`/healthz`: 200 while the process is up."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await send_error(scope, send, method_not_allowed(["GET", "HEAD"]))
            return
        await send_bytes(send, 200, encode_json({"status": "ok"}))


class Readyz:
    """`/readyz`: 200 while the core answers a health check, else 503."""

    def __init__(self, core: CoreClient) -> None:
        self._core = core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await send_error(scope, send, method_not_allowed(["GET", "HEAD"]))
            return
        if await self._core.is_serving(_READY_TIMEOUT_SECONDS):
            body: dict[str, object] = {"status": "ready"}
            if not await self._core.is_serving(_READY_TIMEOUT_SECONDS, _RATE_LIMITS):
                # Still ready: limits fail open while their shared counters are unreachable.
                body["detail"] = {"rate_limits": "Redis is unreachable; limits are not enforced"}
            await send_bytes(send, 200, encode_json(body))
        else:
            await send_bytes(send, 503, encode_json({"status": "unavailable"}))
