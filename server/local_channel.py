"""An in-process path to the servicers, shaped like a `grpc.aio.Channel`.

The HTTP edge running in the same process as the core calls the servicers through this
channel instead of over HTTP/2, as grpc-gateway's `Register…HandlerServer` does: the request
and response messages are passed as objects (no serialization, no network hop), while the
calls still go through the same auth interceptor, and failures still arrive as
`grpc.aio.AioRpcError` with the same rich status details."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any

import grpc

_STREAM_BUFFER = 8
_DONE = object()


class HandlerCollector:
    """Stands in for a server in the generated `add_…_to_server` functions and keeps the
    method handlers they register, by full method path."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """The generated code registers the same handlers here too; one copy is enough."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        for method, handler in handlers.items():
            self.handlers[f"/{service}/{method}"] = handler


class _LocalContext:
    """The part of `grpc.aio.ServicerContext` that the servicers and the interceptor use."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def abort_with_status(self, status: grpc.Status) -> None:
        raise grpc.aio.AioRpcError(
            status.code,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(*status.trailing_metadata),
            details=status.details,
        )

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> None:
        raise grpc.aio.AioRpcError(
            code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing_metadata), details=details
        )

    def peer(self) -> str:
        return "local"

    def cancelled(self) -> bool:
        return False


class _UnaryCall:
    def __init__(self, response: Awaitable[Any]) -> None:
        self._task = asyncio.ensure_future(response)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._task.__await__()

    def cancel(self) -> bool:
        return self._task.cancel()


class _StreamCall:
    """Runs the servicer's generator in its own task, so that `cancel()` stops it at whatever
    it awaits (its `finally` blocks run, as with a cancelled RPC)."""

    def __init__(self, responses: AsyncIterator[Any]) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue(_STREAM_BUFFER)
        self._task = asyncio.ensure_future(self._pump(responses))

    async def _pump(self, responses: AsyncIterator[Any]) -> None:
        try:
            async for response in responses:
                await self._queue.put(response)
        except Exception as error:
            await self._queue.put(error)
        else:
            await self._queue.put(_DONE)

    async def read(self) -> Any:
        item = await self._queue.get()
        if item is _DONE:
            return grpc.aio.EOF
        if isinstance(item, Exception):
            raise item
        return item

    def cancel(self) -> bool:
        return self._task.cancel()


class LocalChannel:
    """`unary_unary` / `unary_stream` multicallables over in-process method handlers."""

    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._handlers = handlers

    def unary_unary(self, method: str, *_: Any, **__: Any) -> Callable[..., _UnaryCall]:
        behavior = self._handlers[method].unary_unary

        def call(request: Any, *, metadata: Any = (), **_: Any) -> _UnaryCall:
            return _UnaryCall(behavior(request, _LocalContext(tuple(metadata or ()))))

        return call

    def unary_stream(self, method: str, *_: Any, **__: Any) -> Callable[..., _StreamCall]:
        behavior = self._handlers[method].unary_stream

        def call(request: Any, *, metadata: Any = (), **_: Any) -> _StreamCall:
            return _StreamCall(behavior(request, _LocalContext(tuple(metadata or ()))))

        return call

    async def close(self) -> None:
        """Nothing to release: the servicers belong to the core."""
