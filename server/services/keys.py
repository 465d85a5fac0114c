"""`switchboard.v1.KeyService`: API keys, shown once and stored hashed."""

from __future__ import annotations

import grpc
from switchboard.v1 import key_service_pb2, key_service_pb2_grpc

from server import resources
from server.auth import ALL_SCOPES, current_principal
from server.errors import InvalidArgument
from server.store.repository import Repository


class KeyService(key_service_pb2_grpc.KeyServiceServicer):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    async def CreateKey(
        self, request: key_service_pb2.CreateKeyRequest, context: grpc.aio.ServicerContext
    ) -> key_service_pb2.Key:
        key = request.key
        publishable = key.kind == key_service_pb2.KEY_KIND_PUBLISHABLE
        scopes = ["chat:write"] if publishable else list(dict.fromkeys(key.scopes))
        for index, scope in enumerate(scopes):
            if scope not in ALL_SCOPES:
                raise InvalidArgument(
                    f"key.scopes[{index}]",
                    f"unknown scope {scope!r}; expected one of {', '.join(ALL_SCOPES)}",
                )
        if not scopes:
            raise InvalidArgument("key.scopes", "give the key at least one scope")
        if publishable and not key.allowed_agents:
            raise InvalidArgument(
                "key.allowed_agents", "a publishable key must list the agents it may chat with"
            )
        row, secret = await self._repository.create_key(
            current_principal().workspace_id,
            display_name=key.display_name,
            kind="publishable" if publishable else "secret",
            scopes=scopes,
            allowed_agents=key.allowed_agents,
            allowed_origins=key.allowed_origins,
        )
        return resources.key_to_proto(row, secret)

    async def ListKeys(
        self, request: key_service_pb2.ListKeysRequest, context: grpc.aio.ServicerContext
    ) -> key_service_pb2.ListKeysResponse:
        limit = resources.page_size(request.page_size)
        rows = await self._repository.list_keys(
            current_principal().workspace_id,
            limit=limit + 1,
            after=resources.decode_page_token(request.page_token),
        )
        page, next_token = resources.split_page(rows, limit, lambda row: row.id)
        return key_service_pb2.ListKeysResponse(
            keys=[resources.key_to_proto(row) for row in page], next_page_token=next_token
        )

    async def RevokeKey(
        self, request: key_service_pb2.RevokeKeyRequest, context: grpc.aio.ServicerContext
    ) -> key_service_pb2.Key:
        key_id = resources.parse_name(request.name, "keys", "name")
        row = await self._repository.revoke_key(current_principal().workspace_id, key_id)
        return resources.key_to_proto(row)
