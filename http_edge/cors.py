"""CORS for publishable keys: browsers on the origins those keys list may call the chat routes.

A preflight (`OPTIONS` with `Access-Control-Request-Method`) carries no key, so it cannot be
judged per key: it is granted on a route that publishable keys may call, for an origin that
some live publishable key lists, as the core's keyless `CorsService.CheckPreflight` answers
(cached here briefly). The actual request is judged per key: the core sends the initial
metadata `cors-allow-origin: {origin}` on a call whose publishable key lists its origin, and
only that response gets `Access-Control-Allow-Origin`. Secret keys never get a CORS grant, nor
does a publishable key without `allowed_origins`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

import grpc

from http_edge.core import CoreClient
from http_edge.errors import edge_error
from http_edge.mux import RouteTable
from http_edge.responses import send_error
from http_edge.types import Message, Receive, Scope, Send

GRANT_METADATA = "cors-allow-origin"
SCOPE_KEY = "browser_grant"
ALLOWED_HEADERS = b"authorization, content-type, idempotency-key, x-request-id"
# What a page's script may read of a granted response besides the CORS-safelisted headers.
EXPOSED_HEADERS = b"retry-after, retry-after-ms, x-request-id, x-session-id, x-should-retry"
# How long a browser may reuse a granted preflight; each actual call is still checked.
MAX_AGE_SECONDS = b"600"
# How long the edge trusts the core's answer for an origin: a refusal briefly, so that a new
# key's origin opens soon (the core itself rereads the listed origins every second).
_ALLOWED_SECONDS = 10.0
_REFUSED_SECONDS = 2.0
_CACHE_ENTRIES = 4096
_MAX_ORIGIN_BYTES = 300


class BrowserGrant:
    """What the core said about one browser request's origin: `watch` the call made for it,
    then `headers()` are the CORS headers of its response (none unless the core granted)."""

    def __init__(self, origin: bytes) -> None:
        self.origin = origin
        self._call: Any = None

    def watch(self, call: Any) -> None:
        """Remembers the call whose initial metadata carries the core's grant."""
        self._call = call

    async def headers(self) -> list[tuple[bytes, bytes]]:
        """The response's CORS headers: none unless the core granted this origin."""
        if self._call is None:
            return []
        try:
            # A stream that starts with a ping waits here for the core's first metadata.
            metadata = await self._call.initial_metadata()
            if not _grants(metadata) and _ended(self._call):
                # grpc.aio may drop the initial metadata of a streaming call that failed at
                # once; the core repeats its grant with the error's status.
                metadata = await self._call.trailing_metadata()
        except grpc.aio.AioRpcError:
            return []
        if _grants(metadata) != [self.origin.decode("latin-1")]:
            return []
        return [
            (b"access-control-allow-origin", self.origin),
            (b"access-control-expose-headers", EXPOSED_HEADERS),
            (b"vary", b"origin"),
        ]


def _grants(metadata: Any) -> list[str]:
    return [value for key, value in metadata or () if key == GRANT_METADATA]


def _ended(call: Any) -> bool:
    """Whether `call` is a grpc.aio call that has ended (the in-process channel's calls lose
    no metadata)."""
    return isinstance(call, grpc.aio.Call) and call.done()


def watch_call(scope: Scope, call: Any) -> None:
    """Lets the request's `BrowserGrant`, when it has one, read `call`'s grant."""
    grant: BrowserGrant | None = scope.get(SCOPE_KEY)
    if grant is not None:
        grant.watch(call)


class CorsMiddleware:
    """Answers preflights, and adds the core's CORS grant to responses of browser requests."""

    def __init__(
        self,
        app: Any,
        core: CoreClient,
        table: RouteTable,
        other_routes: dict[tuple[str, str], str],
    ) -> None:
        """`table` holds the transcoded routes; `other_routes` maps the `(method, path)` of
        each hand-written route to the RPC it calls."""
        self.app = app
        self._core = core
        self._table = table
        self._other_routes = other_routes
        self._answers: dict[tuple[str, str], tuple[float, bool]] = {}

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The app's own answer to a request without an origin, returned to be awaited by the
        caller (no frame of this middleware stays around a long stream); else the browser
        request's."""
        origin = _header(scope, b"origin") if scope["type"] == "http" else None
        if origin is None:
            return self.app(scope, receive, send)  # type: ignore[no-any-return]
        return self._browser_request(scope, receive, send, origin)

    async def _browser_request(
        self, scope: Scope, receive: Receive, send: Send, origin: bytes
    ) -> None:
        requested = _header(scope, b"access-control-request-method")
        if scope["method"] == "OPTIONS" and requested is not None:
            await self._preflight(scope, send, origin, requested)
            return
        grant = scope[SCOPE_KEY] = BrowserGrant(origin)

        async def send_granted(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *await grant.headers()]
            await send(message)

        await self.app(scope, receive, send_granted)

    async def _preflight(self, scope: Scope, send: Send, origin: bytes, requested: bytes) -> None:
        method = requested.decode("latin-1")
        rpc = self._rpc(method, scope["path"])
        if rpc is None or not await self._allows(origin, rpc):
            error = edge_error(
                grpc.StatusCode.PERMISSION_DENIED,
                403,
                "CORS_NOT_ALLOWED",
                "browsers may call this route only from an origin listed in a publishable "
                "key's allowed_origins, and only on the routes publishable keys may call",
            )
            error.headers["vary"] = "origin"
            await send_error(scope, send, error)
            return
        headers = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", requested),
            (b"access-control-allow-headers", ALLOWED_HEADERS),
            (b"access-control-max-age", MAX_AGE_SECONDS),
            (b"vary", b"origin"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    def _rpc(self, method: str, path: str) -> str | None:
        """The RPC that `method` on `path` calls, if any."""
        other = self._other_routes.get((method, path))
        if other is not None:
            return other
        matched = self._table.match(method, path)
        return None if isinstance(matched, list) else matched[0].rpc_path

    async def _allows(self, origin: bytes, rpc: str) -> bool:
        if len(origin) > _MAX_ORIGIN_BYTES or not origin.isascii():
            return False
        key = (origin.decode(), rpc)
        cached = self._answers.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            allowed = await self._core.allows_preflight(*key)
        except grpc.aio.AioRpcError:
            return False
        if len(self._answers) >= _CACHE_ENTRIES:
            # Origins are chosen by whoever sends the preflight: the cache must not grow.
            self._answers.clear()
        ttl = _ALLOWED_SECONDS if allowed else _REFUSED_SECONDS
        self._answers[key] = (time.monotonic() + ttl, allowed)
        return allowed


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None
