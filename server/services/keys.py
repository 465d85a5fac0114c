"""`switchboard.v1.KeyService`: API keys, shown once and stored hashed."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from switchboard.v1 import key_service_pb2, key_service_pb2_grpc

from server import resources
from server.auth import ALL_SCOPES, current_principal
from server.errors import AgentNotFound, InvalidArgument, PermissionDenied, clip
from server.paging import PageTokens
from server.store import Store


class KeyService(key_service_pb2_grpc.KeyServiceServicer):
    """The API keys of the caller's workspace."""

    def __init__(self, store: Store, pages: PageTokens) -> None:
        self._store = store
        self._pages = pages

    async def CreateKey(
        self, request: key_service_pb2.CreateKeyRequest, context: grpc.aio.ServicerContext
    ) -> key_service_pb2.Key:
        """Creates a key and returns its secret, once; a key grants only scopes it holds."""
        principal = current_principal()
        key = request.key
        publishable = key.kind == key_service_pb2.KEY_KIND_PUBLISHABLE
        if publishable and any(scope != "chat:write" for scope in key.scopes):
            raise InvalidArgument(
                "key.scopes", "a publishable key has exactly `chat:write`; leave scopes empty"
            )
        scopes = ["chat:write"] if publishable else list(dict.fromkeys(key.scopes))
        for index, scope in enumerate(scopes):
            if scope not in ALL_SCOPES:
                raise InvalidArgument(
                    f"key.scopes[{index}]",
                    f"unknown scope {clip(scope)!r}; expected one of {', '.join(ALL_SCOPES)}",
                )
        if not scopes:
            raise InvalidArgument("key.scopes", "give the key at least one scope")
        # A key grants only what it holds itself, so no key can mint a stronger one.
        missing = [scope for scope in scopes if scope not in principal.scopes]
        if missing:
            raise PermissionDenied(
                f"a key may only grant scopes it holds; this key lacks {', '.join(missing)}",
                reason="SCOPE_NOT_GRANTABLE",
                metadata={"missing_scopes": ",".join(missing)},
            )
        allowed_agents: list[str] = []
        if publishable:
            if not key.allowed_agents:
                raise InvalidArgument(
                    "key.allowed_agents", "a publishable key must list the agents it may chat with"
                )
            allowed_agents = await self._resolve_agents(principal.workspace_id, key.allowed_agents)
        elif key.allowed_agents or key.allowed_origins:
            field = "key.allowed_agents" if key.allowed_agents else "key.allowed_origins"
            raise InvalidArgument(field, "only publishable keys are limited to agents and origins")
        rate = key.rate_limit
        if rate.requests_per_minute < 0 or rate.tokens_per_minute < 0:
            field = "requests_per_minute" if rate.requests_per_minute < 0 else "tokens_per_minute"
            raise InvalidArgument(f"key.rate_limit.{field}", "must not be negative")
        row, secret = await self._store.keys.create(
            principal.workspace_id,
            display_name=key.display_name,
            kind="publishable" if publishable else "secret",
            scopes=scopes,
            allowed_agents=allowed_agents,
            allowed_origins=key.allowed_origins,
            requests_per_minute=rate.requests_per_minute or None,
            tokens_per_minute=rate.tokens_per_minute or None,
        )
        return resources.key_to_proto(row, secret)

    async def _resolve_agents(self, workspace_id: str, agents: Sequence[str]) -> list[str]:
        """The ids of the listed agents (ids or slugs), so that a slug later given to another
        agent does not widen the key."""
        resolved: list[str] = []
        for index, agent in enumerate(agents):
            try:
                row = await self._store.agents.get(workspace_id, agent)
            except AgentNotFound:
                raise InvalidArgument(
                    f"key.allowed_agents[{index}]", f"agent {clip(agent)!r} does not exist"
                ) from None
            resolved.append(row.id)
        return list(dict.fromkeys(resolved))

    async def ListKeys(
        self, request: key_service_pb2.ListKeysRequest, context: grpc.aio.ServicerContext
    ) -> key_service_pb2.ListKeysResponse:
        """The workspace's keys, oldest first, without secrets."""
        workspace = current_principal().workspace_id
        limit = resources.page_size(request.page_size)
        rows = await self._store.keys.list_page(
            workspace, limit=limit + 1, after=await self._pages.read(request, workspace)
        )
        page, next_token = await self._pages.page(
            request, workspace, rows, limit, lambda row: row.id
        )
        return key_service_pb2.ListKeysResponse(
            keys=[resources.key_to_proto(row) for row in page], next_page_token=next_token
        )

    async def RevokeKey(
        self, request: key_service_pb2.RevokeKeyRequest, context: grpc.aio.ServicerContext
    ) -> key_service_pb2.Key:
        """Revokes a key; it stops working at once."""
        key_id = resources.parse_name(request.name, "keys", "name")
        row = await self._store.keys.revoke(current_principal().workspace_id, key_id)
        return resources.key_to_proto(row)
