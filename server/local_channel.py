"""An in-process path to the servicers, shaped like a `grpc.aio.Channel`.

The HTTP edge running in the same process as the core calls the servicers through this
channel instead of over HTTP/2, as grpc-gateway's `Register…HandlerServer` does: the request
and response messages are passed as objects (no serialization, no network hop), while the
calls still go through the same auth interceptor, and failures still arrive as
`grpc.aio.AioRpcError` with the same rich status details."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any

import grpc


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

    __slots__ = ("_metadata", "initial_metadata")

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata
        self.initial_metadata: tuple[tuple[str, str], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def send_initial_metadata(self, metadata: Any) -> None:
        self.initial_metadata += tuple(metadata)

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
    """Runs the servicer's generator in the task that reads the call: each `read()` steps it
    to its next message, so that an open stream holds no task or queue of its own.

    `cancel()` stops the generator at whatever it awaits (its `finally` blocks run, as with a
    cancelled RPC); a read in progress, or any later one, raises `CancelledError`, as on a
    cancelled grpc.aio call."""

    __slots__ = ("_cancelled", "_context", "_ended", "_reader", "_responses")

    def __init__(self, responses: AsyncGenerator[Any, None], context: _LocalContext) -> None:
        self._responses = responses
        self._context = context
        # The task inside `read()`, while one is.
        self._reader: asyncio.Task[Any] | None = None
        self._cancelled = False
        self._ended = False

    async def initial_metadata(self) -> grpc.aio.Metadata:
        """What the servicer sent as initial metadata (read once a message is in)."""
        return grpc.aio.Metadata(*self._context.initial_metadata)

    async def read(self) -> Any:
        """The next message, `grpc.aio.EOF` after the last; raises the call's error."""
        if self._cancelled:
            raise asyncio.CancelledError
        self._reader = reader = asyncio.current_task()
        try:
            return await self._responses.__anext__()
        except StopAsyncIteration:
            self._ended = True
            return grpc.aio.EOF
        except Exception:
            self._ended = True
            raise
        except asyncio.CancelledError:
            if self._cancelled and reader is not None and reader.cancelling():
                # The cancellation was this call's own, not the reading task's.
                reader.uncancel()
            raise
        finally:
            self._reader = None

    def cancel(self) -> bool:
        """Stops the servicer; answers False if the call had ended or was cancelled."""
        if self._cancelled or self._ended:
            return False
        self._cancelled = True
        reader = self._reader
        if reader is not None:
            reader.cancel()
        else:
            # Between reads: the generator is closed from a task of its own, since its
            # `finally` blocks may await.
            closing = asyncio.ensure_future(self._responses.aclose())
            _closing.add(closing)
            closing.add_done_callback(_closing.discard)
        return True


# Generators of cancelled calls being closed: kept until closed, as the loop keeps only weak
# references to tasks.
_closing: set[asyncio.Task[None]] = set()


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
