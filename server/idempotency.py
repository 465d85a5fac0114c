"""Idempotent unary calls: a request repeated with the same `idempotency-key` metadata gets the
first result without a second turn; the same key with a different request is a conflict."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from server.errors import Conflict
from server.store.repository import Repository
from server.store.tables import IdempotencyRecord

Response = TypeVar("Response", bound=Message)


def idempotency_key(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "idempotency-key" and value:
            return str(value)
    return None


async def once(
    repository: Repository,
    workspace_id: str,
    key: str | None,
    method: str,
    request: Message,
    response_type: type[Response],
    produce: Callable[[], Awaitable[Response]],
) -> Response:
    if key is None:
        return await produce()
    digest = hashlib.sha256(
        method.encode() + b"\0" + request.SerializeToString(deterministic=True)
    ).hexdigest()
    found = await repository.find_idempotent_result(workspace_id, key)
    if found is not None:
        if found.method != method or found.request_hash != digest:
            raise Conflict(
                f"idempotency key {key!r} was already used with a different request",
                reason="IDEMPOTENCY_CONFLICT",
            )
        return response_type.FromString(found.response)
    response = await produce()
    await repository.save_idempotent_result(
        IdempotencyRecord(
            workspace_id=workspace_id,
            key=key,
            method=method,
            request_hash=digest,
            response=response.SerializeToString(),
        )
    )
    return response
