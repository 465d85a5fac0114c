"""The edge's Starlette application and its uvicorn runner."""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import AsyncIterator, Awaitable

from starlette.routing import Mount, Route, Router

from http_edge.assets import PLAYGROUND_HEADERS, WIDGET_HEADERS, Asset
from http_edge.core import CoreChannel, CoreClient
from http_edge.cors import CorsMiddleware
from http_edge.health import Healthz, Readyz
from http_edge.marshal import encode_json
from http_edge.metrics import MetricsEndpoint
from http_edge.middleware import RequestIdMiddleware
from http_edge.mux import RouteTable, load_routes
from http_edge.openai import (
    CHAT_COMPLETIONS_PATH,
    CREATE_RPC,
    ChatCompletions,
    RedirectToChatCompletions,
)
from http_edge.openapi import build_openapi
from http_edge.responses import send_bytes
from http_edge.server import EdgeServer
from http_edge.streaming import GracePeriod
from http_edge.transcoder import Transcoder
from http_edge.types import Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_MAX_HEADER_BYTES = 65_536
DEFAULT_PING_INTERVAL = 15.0
DEFAULT_SHUTDOWN_GRACE_SECONDS = 10.0


class _OpenAPIDocument:
    def __init__(self, document: bytes) -> None:
        self._document = document

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, self._document)


class _ChatFirst:
    """Routes `/v1/chat/completions` by its exact path ahead of the router: the route that
    thousands of open streams take, each of which would otherwise keep the router's three
    frames around it for as long as it lasts. Every other request goes to the router."""

    def __init__(self, chat: Route, router: Router) -> None:
        self._chat = chat
        self._router = router

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The chat route's answer, or the router's, returned to be awaited by the caller."""
        if scope["type"] == "http" and scope["path"] == CHAT_COMPLETIONS_PATH:
            scope["route"] = self._chat
            return self._chat.app(scope, receive, send)  # type: ignore[no-any-return]
        return self._router(scope, receive, send)


def create_app(
    core_target: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ping_interval: float = DEFAULT_PING_INTERVAL,
    channel: CoreChannel | None = None,
    grace: GracePeriod | None = None,
    metrics_token: str | None = None,
) -> RequestIdMiddleware:
    """The edge in front of the gRPC core at `core_target` (`host:port`), or of `channel`
    when given (such as the core's in-process channel). Its streams end when `grace` ends (see
    `EdgeServer`). `/metrics` answers only to `Authorization: Bearer <metrics_token>` when
    one is given."""
    routes = load_routes()
    core = CoreClient(core_target, routes, channel)
    grace = grace or GracePeriod()
    table = RouteTable(routes)
    transcoder = Transcoder(
        table,
        core,
        max_body_bytes=max_body_bytes,
        ping_interval=ping_interval,
        grace=grace,
    )
    chat = ChatCompletions(
        core, max_body_bytes=max_body_bytes, ping_interval=ping_interval, grace=grace
    )
    openapi = _OpenAPIDocument(encode_json(build_openapi(routes, _version())))

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        await core.start()
        try:
            yield
        finally:
            await core.close()

    # A bare Router behind the request-id middleware: Starlette's application adds exception
    # middleware that RequestIdMiddleware already covers, at a cost on every request.
    chat_route = Route(CHAT_COMPLETIONS_PATH, chat)
    router = Router(
        routes=[
            chat_route,
            Route("/v2/chats/openai", RedirectToChatCompletions()),
            Route("/healthz", Healthz()),
            Route("/readyz", Readyz(core)),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/widget.js", Asset("widget.js", headers=WIDGET_HEADERS)),
            Route("/playground", Asset("playground.html", max_age=0, headers=PLAYGROUND_HEADERS)),
            Route("/playground/playground.js", Asset("playground.js", max_age=0)),
            Route("/playground/playground.css", Asset("playground.css", max_age=0)),
            Route("/metrics", MetricsEndpoint(metrics_token), methods=["GET"]),
            Mount("", app=transcoder),
        ],
        lifespan=lifespan,
    )
    # The chat completions route is written by hand; every other route is in the table.
    browsers = CorsMiddleware(
        _ChatFirst(chat_route, router), core, table, {("POST", CHAT_COMPLETIONS_PATH): CREATE_RPC}
    )
    return RequestIdMiddleware(browsers)


def run(
    core_target: str,
    http_addr: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_SECONDS,
    metrics_token: str | None = None,
) -> None:
    """Serve the edge on `http_addr` (`host:port`) until interrupted."""
    host, _, port = http_addr.rpartition(":")
    grace = GracePeriod()
    EdgeServer(
        create_app(
            core_target, max_body_bytes=max_body_bytes, grace=grace, metrics_token=metrics_token
        ),
        grace,
        shutdown_grace_seconds=shutdown_grace_seconds,
        max_header_bytes=max_header_bytes,
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        loop="uvloop",
    ).run()


def _version() -> str:
    try:
        return importlib.metadata.version("switchboard")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"
