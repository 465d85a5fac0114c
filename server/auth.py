"""Authentication and authorisation: API keys from `authorization` metadata, scopes per RPC.

`AuthInterceptor` resolves the caller's key before any service runs; services read it with
`current_principal()`."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import grpc

from server.errors import (
    AgentNotFound,
    AgentNotPublished,
    Internal,
    PermissionDenied,
    SessionNotFound,
    SwitchboardError,
    Unauthenticated,
    to_grpc_status,
)
from server.limits import Rate
from server.store.agents import Agents, PublishedAgent
from server.store.keys import Keys
from server.validation import UNDECODABLE, check_request

ALL_SCOPES = (
    "chat:write",
    "agents:read",
    "agents:write",
    "sessions:read",
    "keys:write",
    "usage:read",
    "workspace:admin",
)


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call an RPC: a secret key holding at least one of `scopes`, and, when
    `publishable`, a publishable key too (always held to its listed agents)."""

    scopes: frozenset[str]
    publishable: bool = False


# Key ids whose principals are kept; past this, the kept ones are dropped and made again.
_MAX_PRINCIPALS = 10_000

_CHAT = Access(frozenset({"chat:write"}), publishable=True)
_AGENTS_READ = Access(frozenset({"agents:read"}))
_AGENTS_WRITE = Access(frozenset({"agents:write"}))
_SESSIONS_READ = Access(frozenset({"sessions:read"}))
_SESSIONS_WRITE = Access(frozenset({"chat:write"}))
_KEYS = Access(frozenset({"keys:write"}))
_USAGE = Access(frozenset({"usage:read"}))
_WORKSPACE_READ = Access(frozenset({"workspace:admin", "usage:read"}))
_WORKSPACE_ADMIN = Access(frozenset({"workspace:admin"}))
_MODELS = Access(frozenset({"chat:write", "agents:read"}), publishable=True)
# A publishable key reads the messages of a session it names (its widget's own conversation);
# a secret key needs `sessions:read`.
_SESSION_MESSAGES = Access(frozenset({"sessions:read"}), publishable=True)

# The one table of who may call what. An RPC of a Switchboard service that is missing here is
# refused to every key (fail closed); only the health and reflection services need no key.
ACCESS_BY_METHOD: dict[str, Access] = {
    "/switchboard.v1.AgentService/CreateAgent": _AGENTS_WRITE,
    "/switchboard.v1.AgentService/GetAgent": _AGENTS_READ,
    "/switchboard.v1.AgentService/ListAgents": _AGENTS_READ,
    "/switchboard.v1.AgentService/UpdateAgent": _AGENTS_WRITE,
    "/switchboard.v1.AgentService/DeleteAgent": _AGENTS_WRITE,
    "/switchboard.v1.AgentService/PublishAgent": _AGENTS_WRITE,
    "/switchboard.v1.AgentService/ListAgentVersions": _AGENTS_READ,
    "/switchboard.v1.AgentService/CreateKnowledgeDocument": _AGENTS_WRITE,
    "/switchboard.v1.AgentService/BatchCreateKnowledgeDocuments": _AGENTS_WRITE,
    "/switchboard.v1.AgentService/ListKnowledgeDocuments": _AGENTS_READ,
    "/switchboard.v1.AgentService/DeleteKnowledgeDocument": _AGENTS_WRITE,
    "/switchboard.v1.SessionService/CreateSession": _CHAT,
    "/switchboard.v1.SessionService/GetSession": _SESSIONS_READ,
    "/switchboard.v1.SessionService/ListSessions": _SESSIONS_READ,
    "/switchboard.v1.SessionService/DeleteSession": _SESSIONS_WRITE,
    "/switchboard.v1.SessionService/ListMessages": _SESSION_MESSAGES,
    "/switchboard.v1.SessionService/SendMessage": _CHAT,
    "/switchboard.v1.SessionService/StreamMessage": _CHAT,
    "/switchboard.v1.SessionService/CancelTurn": _CHAT,
    "/switchboard.v1.CompletionService/CreateChatCompletion": _CHAT,
    "/switchboard.v1.CompletionService/StreamChatCompletion": _CHAT,
    "/switchboard.v1.ModelService/ListModels": _MODELS,
    "/switchboard.v1.ModelService/GetModel": _MODELS,
    "/switchboard.v1.KeyService/CreateKey": _KEYS,
    "/switchboard.v1.KeyService/ListKeys": _KEYS,
    "/switchboard.v1.KeyService/RevokeKey": _KEYS,
    "/switchboard.v1.WorkspaceService/GetWorkspace": _WORKSPACE_READ,
    "/switchboard.v1.WorkspaceService/UpdateWorkspace": _WORKSPACE_ADMIN,
    "/switchboard.v1.UsageService/SummarizeUsage": _USAGE,
}
# Services that answer without a key: load balancers probe health, tools read reflection, and
# the edge asks CorsService about CORS preflights, which browsers send without a key.
PUBLIC_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.", "/switchboard.v1.CorsService/")
# Initial metadata naming the origin whose browser may read the answer (see CorsService).
CORS_GRANT_METADATA = "cors-allow-origin"
_NOBODY = Access(frozenset())


def is_public(method: str) -> bool:
    """Whether `method` answers without a key: health, reflection and CORS preflight checks."""
    return method.startswith(PUBLIC_SERVICES)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a key of a workspace."""

    workspace_id: str
    key_id: str
    kind: str
    scopes: frozenset[str]
    allowed_agents: frozenset[str]
    # The page origin of a browser call that the publishable key lists; it earns a CORS grant.
    browser_origin: str | None = None
    rate: Rate = field(default_factory=Rate)

    @property
    def publishable(self) -> bool:
        """Whether the caller's key is a publishable (browser) key."""
        return self.kind == "publishable"

    def may_use_agent(self, agent_id: str, slug: str | None = None) -> bool:
        """What a principal may see of agents and their sessions: a publishable key only its
        listed agents (stored as ids; keys made before that listed slugs), a secret key all of
        its workspace's."""
        if not self.publishable:
            return True
        return agent_id in self.allowed_agents or (slug is not None and slug in self.allowed_agents)

    def check_agent(self, agent_id: str, slug: str | None, asked: str) -> None:
        """Raises *not found* for an agent the principal may not see, as if it did not exist."""
        if not self.may_use_agent(agent_id, slug):
            raise AgentNotFound(asked)

    def check_session_agent(self, agent_id: str, session_id: str) -> None:
        """Raises *not found* for a session of an agent the principal may not see."""
        if not self.may_use_agent(agent_id):
            raise SessionNotFound(session_id)


async def published_agent_for(agents: Agents, principal: Principal, agent: str) -> PublishedAgent:
    """The published agent `agent` (id or slug) as `principal` may see it: an agent outside a
    publishable key's list is *not found*, published or not."""
    try:
        published = await agents.get_published(principal.workspace_id, agent)
    except AgentNotPublished:
        if principal.publishable:
            row = await agents.get(principal.workspace_id, agent)
            principal.check_agent(row.id, row.slug, agent)
        raise
    principal.check_agent(published.agent.id, published.agent.slug, agent)
    return published


_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


def current_principal() -> Principal:
    """The caller of the RPC being served, as `AuthInterceptor` set it."""
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
        keys: Keys,
        on_unexpected: Callable[[BaseException, str | None], None],
    ) -> None:
        self._keys = keys
        # The principal of each key, with the key record it was made from.
        self._principals: dict[str, tuple[Any, Principal]] = {}
        self._on_unexpected = on_unexpected
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The method's handler behind the checks (see `wrap`), built on its first call."""
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return handler
            wrapped = self._handlers[method] = self.wrap(method, handler)
        return wrapped

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler of `method` behind the key, scope and request checks. Health and
        reflection pass unchanged; an RPC missing from the access table is refused to every
        key."""
        if is_public(method):
            return handler
        access = ACCESS_BY_METHOD.get(method, _NOBODY)
        return self._wrap(handler, access, method.rsplit("/", 1)[-1])

    def _wrap(
        self, handler: grpc.RpcMethodHandler, access: Access, name: str
    ) -> grpc.RpcMethodHandler:
        authorize, on_unexpected = self._authorize, self._on_unexpected
        deserializer = _lenient(handler.request_deserializer)
        if handler.unary_unary:
            inner_unary = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                granting: _GrantingContext | None = None
                try:
                    principal = await authorize(context, access, name)
                    _principal.set(principal)
                    check_request(request)
                    if principal.browser_origin is None:
                        return await inner_unary(request, context)
                    granting = _GrantingContext(context, principal.browser_origin)
                    response = await inner_unary(request, granting)
                    await granting.send_grant()
                    return response
                except Exception as error:
                    await _abort(granting or context, error, on_unexpected)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                granting: _GrantingContext | None = None
                try:
                    principal = await authorize(context, access, name)
                    _principal.set(principal)
                    check_request(request)
                    if principal.browser_origin is not None:
                        granting = _GrantingContext(context, principal.browser_origin)
                    async for response in inner_stream(request, granting or context):
                        if granting is not None:
                            await granting.send_grant()
                        yield response
                        # Not held while the next response is made.
                        del response
                    if granting is not None:
                        await granting.send_grant()
                except Exception as error:
                    await _abort(granting or context, error, on_unexpected)

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )

        # Client-streaming RPCs have no place in the access rules yet: refuse them.
        async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            error = PermissionDenied(f"{name} is not open to any key", reason="METHOD_NOT_ALLOWED")
            await context.abort_with_status(to_grpc_status(error))

        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                refuse, response_serializer=handler.response_serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            refuse, response_serializer=handler.response_serializer
        )

    async def _authorize(
        self, context: grpc.aio.ServicerContext, access: Access, name: str
    ) -> Principal:
        metadata = context.invocation_metadata()
        token = _bearer_token(metadata)
        if token is None:
            raise Unauthenticated(
                "missing API key: send the metadata `authorization: Bearer sk_…`",
                reason="API_KEY_MISSING",
            )
        key = await self._keys.find(token) if token else None
        if key is None:
            raise Unauthenticated("invalid or revoked API key", reason="API_KEY_INVALID")
        principal = self._principal_of(key)
        if key.kind == "publishable":
            if not access.publishable:
                raise PermissionDenied(
                    f"a publishable key cannot call {name}; it may only chat with its agents",
                    reason="PUBLISHABLE_KEY_NOT_ALLOWED",
                )
        elif not principal.scopes & access.scopes:
            needed = " or ".join(sorted(access.scopes)) or "(none: no key may call it)"
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
            if key.kind == "publishable":
                return replace(principal, browser_origin=origin)
        return principal

    def _principal_of(self, key: Any) -> Principal:
        """The principal of a key, made once per key record that the store hands out (its
        cache gives the same record until it reads the key again)."""
        cached = self._principals.get(key.id)
        if cached is not None and cached[0] is key:
            return cached[1]
        principal = Principal(
            workspace_id=key.workspace_id,
            key_id=key.id,
            kind=key.kind,
            scopes=frozenset(key.scopes),
            allowed_agents=frozenset(key.allowed_agents),
            rate=Rate(key.requests_per_minute or 0, key.tokens_per_minute or 0),
        )
        if len(self._principals) > _MAX_PRINCIPALS:
            self._principals.clear()
        self._principals[key.id] = (key, principal)
        return principal


class _GrantingContext:
    """The servicer context of a call whose page origin its publishable key lists. The CORS
    grant (`CORS_GRANT_METADATA`) goes out with the call's initial metadata: merged into the
    first metadata a servicer sends, else sent before the answer or the error (and with the
    error's status too), so that every response of the call carries it."""

    def __init__(self, context: grpc.aio.ServicerContext, origin: str) -> None:
        self._context = context
        self._grant: tuple[tuple[str, str], ...] = ((CORS_GRANT_METADATA, origin),)
        self._sent = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def send_initial_metadata(self, metadata: Any) -> None:
        self._sent = True
        await self._context.send_initial_metadata((*self._grant, *metadata))

    async def send_grant(self) -> None:
        if not self._sent:
            self._sent = True
            # A call that has already ended takes no metadata; its status goes out regardless.
            with contextlib.suppress(grpc.aio.UsageError):
                await self._context.send_initial_metadata(self._grant)

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> None:
        await self.send_grant()
        # Repeated with the status: a grpc.aio client may lose the initial metadata of a
        # streaming call that fails at once.
        await self._context.abort(code, details, (*(trailing_metadata or ()), *self._grant))

    async def abort_with_status(self, status: grpc.Status) -> None:
        await self.abort(status.code, status.details, status.trailing_metadata)


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that hands undecodable bytes on as `UNDECODABLE`, so the call answers
    INVALID_ARGUMENT after the key check instead of grpc's UNKNOWN naming a Python class."""
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return UNDECODABLE

    return parse


async def _abort(
    context: grpc.aio.ServicerContext | _GrantingContext,
    error: Exception,
    on_unexpected: Callable[[BaseException, str | None], None],
) -> None:
    if isinstance(error, grpc.aio.AbortError):
        raise error
    if not isinstance(error, SwitchboardError):
        on_unexpected(error, _metadata_value(context.invocation_metadata(), "x-request-id"))
        error = Internal()
    await context.abort_with_status(to_grpc_status(error))
