"""Authentication and authorisation: API keys from `authorization` metadata, scopes per RPC.

`AuthInterceptor` resolves the caller's key before any service runs; services read it with
`current_principal()`."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from server.errors import (
    Internal,
    PermissionDenied,
    SwitchboardError,
    Unauthenticated,
    to_grpc_status,
)
from server.store.repository import Repository

_CHAT = frozenset({"chat:write"})
_AGENTS_READ = frozenset({"agents:read"})
_AGENTS_WRITE = frozenset({"agents:write"})
_SESSIONS_READ = frozenset({"sessions:read"})
_KEYS = frozenset({"keys:write"})

ALL_SCOPES = (
    "chat:write",
    "agents:read",
    "agents:write",
    "sessions:read",
    "keys:write",
    "usage:read",
)

# Each RPC and the scopes of which a key needs at least one. RPCs not listed (health,
# reflection) need no key.
SCOPES_BY_METHOD: dict[str, frozenset[str]] = {
    "/switchboard.v1.AgentService/CreateAgent": _AGENTS_WRITE,
    "/switchboard.v1.AgentService/GetAgent": _AGENTS_READ,
    "/switchboard.v1.AgentService/ListAgents": _AGENTS_READ,
    "/switchboard.v1.AgentService/UpdateAgent": _AGENTS_WRITE,
    "/switchboard.v1.AgentService/DeleteAgent": _AGENTS_WRITE,
    "/switchboard.v1.AgentService/PublishAgent": _AGENTS_WRITE,
    "/switchboard.v1.AgentService/ListAgentVersions": _AGENTS_READ,
    "/switchboard.v1.AgentService/CreateKnowledgeDocument": _AGENTS_WRITE,
    "/switchboard.v1.AgentService/ListKnowledgeDocuments": _AGENTS_READ,
    "/switchboard.v1.AgentService/DeleteKnowledgeDocument": _AGENTS_WRITE,
    "/switchboard.v1.SessionService/CreateSession": _CHAT,
    "/switchboard.v1.SessionService/GetSession": _SESSIONS_READ,
    "/switchboard.v1.SessionService/ListSessions": _SESSIONS_READ,
    "/switchboard.v1.SessionService/DeleteSession": _CHAT,
    "/switchboard.v1.SessionService/ListMessages": _SESSIONS_READ,
    "/switchboard.v1.SessionService/SendMessage": _CHAT,
    "/switchboard.v1.SessionService/StreamMessage": _CHAT,
    "/switchboard.v1.CompletionService/CreateChatCompletion": _CHAT,
    "/switchboard.v1.CompletionService/StreamChatCompletion": _CHAT,
    "/switchboard.v1.ModelService/ListModels": _CHAT | _AGENTS_READ,
    "/switchboard.v1.ModelService/GetModel": _CHAT | _AGENTS_READ,
    "/switchboard.v1.KeyService/CreateKey": _KEYS,
    "/switchboard.v1.KeyService/ListKeys": _KEYS,
    "/switchboard.v1.KeyService/RevokeKey": _KEYS,
}


@dataclass(frozen=True)
class Principal:
    """The caller: a key of a workspace."""

    workspace_id: str
    key_id: str
    kind: str
    scopes: frozenset[str]
    allowed_agents: frozenset[str]

    def may_use_agent(self, agent_id: str, slug: str | None) -> bool:
        """Publishable keys chat only with their listed agents."""
        if self.kind != "publishable":
            return True
        return agent_id in self.allowed_agents or (slug is not None and slug in self.allowed_agents)


_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


def current_principal() -> Principal:
    return _principal.get()


def _metadata_value(metadata: Any, name: str) -> str | None:
    for key, value in metadata or ():
        if key == name:
            return str(value)
    return None


def _bearer_token(metadata: Any) -> str | None:
    value = _metadata_value(metadata, "authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else ""


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the key and its scopes, then runs the RPC with the principal set; turns every
    `SwitchboardError` into its status, and anything else into INTERNAL without internals.

    The wrapped handlers are built once per method and read the key from each call's
    metadata."""

    def __init__(
        self,
        repository: Repository,
        on_unexpected: Callable[[BaseException, str | None], None],
    ) -> None:
        self._repository = repository
        self._on_unexpected = on_unexpected
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return handler
            wrapped = self._handlers[method] = self.wrap(method, handler)
        return wrapped

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler of `method` behind the key and scope checks; unchanged for RPCs that
        need no key."""
        scopes = SCOPES_BY_METHOD.get(method)
        if scopes is None:
            return handler
        return self._wrap(handler, scopes, method.rsplit("/", 1)[-1])

    def _wrap(
        self, handler: grpc.RpcMethodHandler, scopes: frozenset[str], name: str
    ) -> grpc.RpcMethodHandler:
        authorize, on_unexpected = self._authorize, self._on_unexpected
        if handler.unary_unary:
            inner_unary = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    _principal.set(await authorize(context, scopes, name))
                    return await inner_unary(request, context)
                except Exception as error:
                    await _abort(context, error, on_unexpected)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    _principal.set(await authorize(context, scopes, name))
                    async for response in inner_stream(request, context):
                        yield response
                except Exception as error:
                    await _abort(context, error, on_unexpected)

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _authorize(
        self, context: grpc.aio.ServicerContext, scopes: frozenset[str], name: str
    ) -> Principal:
        metadata = context.invocation_metadata()
        token = _bearer_token(metadata)
        if token is None:
            raise Unauthenticated(
                "missing API key: send the metadata `authorization: Bearer sk_…`",
                reason="API_KEY_MISSING",
            )
        key = await self._repository.find_key(token) if token else None
        if key is None:
            raise Unauthenticated("invalid or revoked API key", reason="API_KEY_INVALID")
        granted = frozenset(key.scopes)
        if not granted & scopes:
            needed = " or ".join(sorted(scopes))
            raise PermissionDenied(
                f"the key lacks the scope {needed} needed by {name}",
                metadata={"required_scope": needed},
            )
        if key.allowed_origins:
            # Browser calls of publishable keys carry their page's origin (forwarded by the edge).
            origin = _metadata_value(metadata, "origin")
            if origin not in key.allowed_origins:
                raise PermissionDenied(
                    f"this key may only be used from {', '.join(key.allowed_origins)}",
                    reason="ORIGIN_NOT_ALLOWED",
                )
        return Principal(
            workspace_id=key.workspace_id,
            key_id=key.id,
            kind=key.kind,
            scopes=granted,
            allowed_agents=frozenset(key.allowed_agents),
        )


async def _abort(
    context: grpc.aio.ServicerContext,
    error: Exception,
    on_unexpected: Callable[[BaseException, str | None], None],
) -> None:
    if isinstance(error, grpc.aio.AbortError):
        raise error
    if not isinstance(error, SwitchboardError):
        on_unexpected(error, _metadata_value(context.invocation_metadata(), "x-request-id"))
        error = Internal()
    await context.abort_with_status(to_grpc_status(error))
