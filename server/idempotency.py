"""Idempotent turns: a request repeated with the same `idempotency-key` metadata gets the first
result without a second turn; the same key with a different request is a conflict.

The key is reserved atomically (a unique row written in its own transaction) before the turn
runs, and belongs to the API key that sent it. A duplicate that arrives while the first request
runs waits for its result (up to `WAIT_SECONDS`, then ABORTED with a retry delay); a turn that
fails frees the key so that a retry runs it again."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import TracebackType
from typing import Generic, TypeVar

import grpc
from google.protobuf.message import Message

from server.auth import Principal
from server.errors import Conflict, InvalidArgument, clip
from server.store.idempotency import IdempotencyRecords
from server.store.tables import IdempotencyKey, utcnow

Response = TypeVar("Response", bound=Message)

MAX_KEY_CHARS = 255
# How long a duplicate waits for the first request's result before it is told to retry.
WAIT_SECONDS = 60.0
# A reservation still `running` this long after it was made belongs to a server that died
# mid-turn; a retry may take it over.
STALE_AFTER = timedelta(minutes=10)
_POLL_FIRST, _POLL_MAX = 0.01, 0.2


def idempotency_key(context: grpc.aio.ServicerContext) -> str | None:
    """The call's `idempotency-key` metadata, or None; a too long one is refused."""
    for key, value in context.invocation_metadata() or ():
        if key == "idempotency-key" and value:
            text = str(value)
            if len(text) > MAX_KEY_CHARS:
                raise InvalidArgument(
                    "idempotency-key", f"must be at most {MAX_KEY_CHARS} characters long"
                )
            return text
    return None


class Reservation(Generic[Response]):
    """A key held while its turn runs. Used as `async with`: leaving the block by an error
    or a cancellation frees the key; `finish` stores the result for replays."""

    def __init__(self, records: IdempotencyRecords, api_key_id: str, key: str) -> None:
        self._records = records
        self._api_key_id = api_key_id
        self._key = key
        self._finished = False

    async def finish(self, response: Response) -> None:
        """Stores `response` for replays; the key then stays taken."""
        await asyncio.shield(
            self._records.finish(self._api_key_id, self._key, response.SerializeToString())
        )
        self._finished = True

    async def release(self) -> None:
        """Frees the key unless `finish` stored a result."""
        if not self._finished:
            await asyncio.shield(self._records.release(self._api_key_id, self._key))

    async def __aenter__(self) -> Reservation[Response]:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.release()


class IdempotencyKeys:
    """Reserves idempotency keys and replays the responses of finished ones."""

    def __init__(self, records: IdempotencyRecords, *, wait_seconds: float = WAIT_SECONDS) -> None:
        self._records = records
        self._wait_seconds = wait_seconds

    async def reserve(
        self,
        context: grpc.aio.ServicerContext,
        principal: Principal,
        method: str,
        request: Message,
        response_type: type[Response],
    ) -> Reservation[Response] | Response | None:
        """None when the call carries no key; the stored response when the key already
        finished with this request; else the reservation this call now holds."""
        key = idempotency_key(context)
        if key is None:
            return None
        digest = hashlib.sha256(
            method.encode() + b"\0" + request.SerializeToString(deterministic=True)
        ).hexdigest()
        record = IdempotencyKey(
            api_key_id=principal.key_id,
            key=key,
            workspace_id=principal.workspace_id,
            method=method,
            request_hash=digest,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_seconds
        pause = _POLL_FIRST
        while True:
            held = await self._records.claim(record, stale_before=utcnow() - STALE_AFTER)
            if held is None:
                return Reservation(self._records, principal.key_id, key)
            if held.method != method or held.request_hash != digest:
                raise Conflict(
                    f"idempotency key {clip(key)!r} was already used with a different request",
                    reason="IDEMPOTENCY_CONFLICT",
                )
            if held.state == "done" and held.response is not None:
                return response_type.FromString(held.response)
            if loop.time() >= deadline:
                raise Conflict(
                    f"a request with idempotency key {clip(key)!r} is still running; "
                    "retry later to get its result",
                    reason="IDEMPOTENCY_KEY_IN_USE",
                    retry_after_seconds=1.0,
                )
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, _POLL_MAX)

    async def once(
        self,
        context: grpc.aio.ServicerContext,
        principal: Principal,
        method: str,
        request: Message,
        response_type: type[Response],
        produce: Callable[[], Awaitable[Response]],
    ) -> Response:
        """The response of `produce()`, run at most once per idempotency key."""
        reserved = await self.reserve(context, principal, method, request, response_type)
        if reserved is None:
            return await produce()
        if not isinstance(reserved, Reservation):
            return reserved
        async with reserved:
            response = await produce()
            await reserved.finish(response)
        return response
