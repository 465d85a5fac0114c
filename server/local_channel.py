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
        """Keeps `handlers` by their full method paths, `/{service}/{method}`."""
        for method, handler in handlers.items():
            self.handlers[f"/{service}/{method}"] = handler


class _LocalContext:
    """The part of `grpc.aio.ServicerContext` that the servicers and the interceptor use."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata
        self.initial_metadata: list[tuple[str, str]] = []

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def send_initial_metadata(self, metadata: Any) -> None:
        self.initial_metadata.extend(metadata)

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
    def __init__(self, response: Awaitable[Any], context: _LocalContext) -> None:
        self._task = asyncio.ensure_future(response)
        self._context = context

    def __await__(self) -> Generator[Any, None, Any]:
        return self._task.__await__()

    async def initial_metadata(self) -> grpc.aio.Metadata:
        """What the servicer sent as initial metadata (read once the response is in)."""
        return grpc.aio.Metadata(*self._context.initial_metadata)

    def cancel(self) -> bool:
        return self._task.cancel()


class _StreamCall:
    """Runs the servicer's generator in its own task, so that `cancel()` stops it at whatever
    it awaits (its `finally` blocks run, as with a cancelled RPC).

    Messages wait in a short list and `next_message()` hands each over as a future, with no
    task of its own: a server holds thousands of these at once, and an `asyncio.Queue` (four
    deques) and a task per read cost more than the rest of the call."""

    __slots__ = ("_buffer", "_context", "_reader", "_task", "_writer")

    def __init__(self, responses: AsyncIterator[Any], context: _LocalContext) -> None:
        # Up to `_STREAM_BUFFER` messages, then `_DONE` or the exception that ended the call.
        self._buffer: list[Any] = []
        # The reader waiting for the next message, and the servicer waiting for room.
        self._reader: asyncio.Future[Any] | None = None
        self._writer: asyncio.Future[None] | None = None
        self._task = asyncio.ensure_future(self._pump(responses))
        self._context = context

    async def initial_metadata(self) -> grpc.aio.Metadata:
        """What the servicer sent as initial metadata (read once a message is in)."""
        return grpc.aio.Metadata(*self._context.initial_metadata)

    async def _pump(self, responses: AsyncIterator[Any]) -> None:
        try:
            async for response in responses:
                await self._put(response)
        except Exception as error:
            await self._put(error)
        else:
            await self._put(_DONE)

    async def _put(self, item: Any) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            _settle(reader, item)
            return
        self._buffer.append(item)
        if len(self._buffer) >= _STREAM_BUFFER:
            self._writer = asyncio.get_running_loop().create_future()
            await self._writer

    def next_message(self) -> asyncio.Future[Any]:
        """A future of the next message: `grpc.aio.EOF` after the last, or the call's error;
        cancelled once the call is."""
        future = asyncio.get_running_loop().create_future()
        if not self._buffer:
            if self._task.cancelled() or self._task.cancelling():
                # Cancelled: no message will come.
                future.cancel()
            else:
                self._reader = future
            return future
        _settle(future, self._buffer.pop(0))
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            writer.set_result(None)
        return future

    async def read(self) -> Any:
        return await self.next_message()

    def cancel(self) -> bool:
        """Stops the servicer; a read waiting for its next message raises `CancelledError`,
        as on a cancelled grpc.aio call, instead of waiting for a message that never comes."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
        return self._task.cancel()


def _settle(future: asyncio.Future[Any], item: Any) -> None:
    if item is _DONE:
        future.set_result(grpc.aio.EOF)
    elif isinstance(item, Exception):
        future.set_exception(item)
    else:
        future.set_result(item)


class LocalChannel:
    """`unary_unary` / `unary_stream` multicallables over in-process method handlers."""

    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._handlers = handlers

    def unary_unary(self, method: str, *_: Any, **__: Any) -> Callable[..., _UnaryCall]:
        """A callable that runs the unary handler of `method` in this process."""
        behavior = self._handlers[method].unary_unary

        def call(request: Any, *, metadata: Any = (), **_: Any) -> _UnaryCall:
            context = _LocalContext(tuple(metadata or ()))
            return _UnaryCall(behavior(request, context), context)

        return call

    def unary_stream(self, method: str, *_: Any, **__: Any) -> Callable[..., _StreamCall]:
        """A callable that runs the streaming handler of `method` in this process."""
        behavior = self._handlers[method].unary_stream

        def call(request: Any, *, metadata: Any = (), **_: Any) -> _StreamCall:
            context = _LocalContext(tuple(metadata or ()))
            return _StreamCall(behavior(request, context), context)

        return call

    async def close(self) -> None:
        """Nothing to release: the servicers belong to the core."""
