"""The core's telemetry: what each call, upstream model call and tool call did.

`GrpcDoorTelemetry` (outermost interceptor of the gRPC server) gives each call of the gRPC door
a log context, a server span continuing the caller's `traceparent`, its request count,
duration and access line. `CallerTelemetry` (innermost, and around the in-process handlers)
names the caller's workspace in the log context and opens the core's span of the call.
Decorators measure upstream model calls and webhook tool calls where they are made."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import grpc
from opentelemetry.trace import SpanKind

from observability import context, tracing
from observability.metrics import REFUSAL_BALANCE, REFUSAL_RATE_LIMIT, count_refusal, metrics
from server.auth import current_principal
from server.errors import (
    InsufficientBalance,
    RateLimited,
    SwitchboardError,
    TurnCancelled,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from server.turn_events import TurnDone, TurnStarted

access_log = logging.getLogger("switchboard.access")

DOOR = "grpc"
_T = TypeVar("_T")


def _metadata_value(metadata: Any, name: str) -> str | None:
    for key, value in metadata or ():
        if key == name and isinstance(value, str):
            return value
    return None


class GrpcDoorTelemetry(grpc.aio.ServerInterceptor):
    """Counts, times, traces and logs every call that reaches the core over the network."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The method's handler with the door's telemetry, built on its first call."""
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None or not (handler.unary_unary or handler.unary_stream):
                return handler
            wrapped = self._handlers[method] = _door_handler(method, handler)
        return wrapped


def _door_handler(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    if handler.unary_unary:
        inner_unary = handler.unary_unary

        async def unary(request: Any, servicer_context: grpc.aio.ServicerContext) -> Any:
            began, token, metadata = _begin(servicer_context)
            code = "UNKNOWN"
            parent = tracing.parent_from_metadata(metadata)
            with tracing.span(method, kind=SpanKind.SERVER, parent=parent, attributes=_attrs()):
                try:
                    response = await inner_unary(request, servicer_context)
                    code = "OK"
                    return response
                except BaseException:
                    code = _code(servicer_context)
                    raise
                finally:
                    _finish(method, began, code)
                    context.end(token)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    inner_stream = handler.unary_stream

    async def stream(request: Any, servicer_context: grpc.aio.ServicerContext) -> Any:
        began, token, metadata = _begin(servicer_context)
        code = "UNKNOWN"
        parent = tracing.parent_from_metadata(metadata)
        gauge = metrics().active_streams.labels(DOOR)
        gauge.inc()
        with tracing.span(method, kind=SpanKind.SERVER, parent=parent, attributes=_attrs()):
            try:
                async with aclosing(inner_stream(request, servicer_context)) as responses:
                    async for response in responses:
                        yield response
                code = "OK"
            except BaseException:
                code = _code(servicer_context)
                raise
            finally:
                gauge.dec()
                _finish(method, began, code)
                context.end(token)

    return grpc.unary_stream_rpc_method_handler(
        stream,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _begin(servicer_context: grpc.aio.ServicerContext) -> tuple[float, Any, Any]:
    metadata = servicer_context.invocation_metadata()
    request_id = _metadata_value(metadata, "x-request-id") or secrets.token_hex(16)
    return time.perf_counter(), context.begin(request_id, DOOR), metadata


def _attrs() -> dict[str, Any]:
    request = context.current()
    return {tracing.REQUEST_ID: request.request_id if request else None}


def _code(servicer_context: grpc.aio.ServicerContext) -> str:
    code = servicer_context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    # A client that went away leaves no status.
    return "CANCELLED"


def _finish(method: str, began: float, code: str) -> None:
    seconds = time.perf_counter() - began
    context.bind(route=method)
    metrics().requests.labels(DOOR, method, code).inc()
    metrics().request_seconds.labels(DOOR, method).observe(seconds)
    access_log.info(
        "%s %s",
        method,
        code,
        extra={"door": DOOR, "status": code, "latency_ms": round(seconds * 1000, 2)},
    )


class CallerTelemetry(grpc.aio.ServerInterceptor):
    """The innermost interceptor: see `observe_caller`."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The method's handler wrapped by `observe_caller`."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return observe_caller(handler_call_details.method, handler)


def observe_caller(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` naming the caller's workspace (known once the key was checked) in the log
    context, inside a span of the core's work on the call."""
    if handler.unary_unary:
        inner_unary = handler.unary_unary

        async def unary(request: Any, servicer_context: Any) -> Any:
            _bind_workspace()
            if not tracing.enabled():
                return await inner_unary(request, servicer_context)
            with tracing.span(f"core {method}", attributes=_attrs()):
                return await inner_unary(request, servicer_context)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        inner_stream = handler.unary_stream

        def stream(request: Any, servicer_context: Any) -> Any:
            _bind_workspace()
            if not tracing.enabled():
                # No generator of its own around every open stream when there is no span.
                return inner_stream(request, servicer_context)
            return _traced_stream(method, inner_stream(request, servicer_context))

        return grpc.unary_stream_rpc_method_handler(
            stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


async def _traced_stream(method: str, responses: Any) -> Any:
    with tracing.span(f"core {method}", attributes=_attrs()):
        async with aclosing(responses) as opened:
            async for response in opened:
                yield response


def _bind_workspace() -> None:
    try:
        principal = current_principal()
    except LookupError:
        return
    context.bind(workspace=principal.workspace_id)


def upstream_outcome(error: BaseException | None) -> str:
    """How an upstream model call ended, as `switchboard_upstream_calls_total` counts it."""
    if error is None:
        return "ok"
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamRateLimited):
        return "rate_limited"
    if isinstance(error, SwitchboardError):
        if error.reason == "UPSTREAM_AUTH_REFUSED":
            return "auth_refused"
        if error.reason == "UPSTREAM_KEY_MISSING":
            return "key_missing"
        if isinstance(error, TurnCancelled):
            return "cancelled"
        return "error"
    if isinstance(error, (GeneratorExit, asyncio.CancelledError)):
        return "cancelled"
    return "error"


def observed_upstream_call(
    stream: Callable[..., AsyncGenerator[_T, None]],
) -> Callable[..., AsyncGenerator[_T, None]]:
    """Counts and times each upstream model call by outcome, inside a client span whose
    `traceparent` the request carries."""

    @functools.wraps(stream)
    async def observed(*args: Any, **kwargs: Any) -> AsyncGenerator[_T, None]:
        began = time.perf_counter()
        error: BaseException | None = None
        with tracing.span("upstream chat completion", kind=SpanKind.CLIENT) as span:
            try:
                async with aclosing(stream(*args, **kwargs)) as events:
                    async for event in events:
                        yield event
            except BaseException as failure:
                error = failure
                raise
            finally:
                outcome = upstream_outcome(error)
                tracing.set_attributes(span, **{"switchboard.outcome": outcome})
                metrics().upstream_calls.labels(outcome).inc()
                metrics().upstream_seconds.labels(outcome).observe(time.perf_counter() - began)

    return observed


def observed_tool_call(
    run: Callable[..., Awaitable[_T]],
) -> Callable[..., Awaitable[_T]]:
    """Counts each webhook tool call by the `outcome` of its result, inside a span."""

    @functools.wraps(run)
    async def observed(self: Any, agent: Any, call: Any) -> _T:
        with tracing.span(f"tool {call.name}", kind=SpanKind.CLIENT) as span:
            result = await run(self, agent, call)
            outcome = str(getattr(result, "outcome", "ok"))
            tracing.set_attributes(span, **{"switchboard.outcome": outcome})
            if outcome != "ok":
                tracing.fail(span, outcome)
            metrics().tool_calls.labels(outcome).inc()
            return result

    return observed


def traced(name: str) -> Callable[[Callable[..., Awaitable[_T]]], Callable[..., Awaitable[_T]]]:
    """A coroutine function run inside a span called `name`."""

    def decorate(function: Callable[..., Awaitable[_T]]) -> Callable[..., Awaitable[_T]]:
        @functools.wraps(function)
        async def in_span(*args: Any, **kwargs: Any) -> _T:
            with tracing.span(name):
                return await function(*args, **kwargs)

        return in_span

    return decorate


class TurnMeter:
    """Times one turn (from `began`, a `time.perf_counter()`) by backend kind and outcome, and
    its first token; names its agent and session in the log context. Made once the turn has
    begun (`TurnStarted`); a turn refused before that is no turn."""

    __slots__ = ("_backend", "_began", "_first_token", "outcome")

    def __init__(self, began: float, started: TurnStarted) -> None:
        self._began = began
        self._backend = started.backend.split(":", 1)[0]
        self._first_token = False
        # Until `complete()` or `cancelled()` says otherwise.
        self.outcome = "failed"
        context.bind(agent=started.agent_id, session=started.session_id)

    def first_token(self, at: float) -> None:
        """The reply's first content came at `at`."""
        if not self._first_token:
            self._first_token = True
            metrics().first_token_seconds.labels(self._backend).observe(at - self._began)

    def end(self, error: BaseException | None) -> None:
        """The turn ended, with `error` or as `outcome` says."""
        if error is not None:
            self.outcome = turn_outcome(error, done=False)
        seconds = time.perf_counter() - self._began
        metrics().turn_seconds.labels(self._backend, self.outcome).observe(seconds)


def turn_outcome(error: BaseException | None, *, done: bool) -> str:
    """How a turn ended: `complete` once done, `cancelled` when stopped, else `failed`."""
    if isinstance(error, (GeneratorExit, asyncio.CancelledError, TurnCancelled)):
        return "cancelled"
    if error is None and done:
        return "complete"
    return "failed"


def count_refusals(error: BaseException) -> None:
    """Counts a turn that a spent balance or a rate limit refused."""
    if isinstance(error, InsufficientBalance):
        count_refusal(REFUSAL_BALANCE)
    elif isinstance(error, RateLimited):
        count_refusal(REFUSAL_RATE_LIMIT)


def traced_turn(events: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
    """A turn's events inside a span naming its agent, session, backend and outcome, when
    tracing is on; else the events themselves, with no generator around them."""
    if not tracing.enabled():
        return events
    return _traced_turn(events)


async def _traced_turn(events: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
    began = done = False
    error: BaseException | None = None
    with tracing.span("turn") as span:
        try:
            async for event in events:
                if isinstance(event, TurnStarted):
                    began = True
                    tracing.set_attributes(
                        span,
                        **{
                            "switchboard.agent": event.agent_id,
                            "switchboard.session": event.session_id,
                            "switchboard.backend": event.backend,
                        },
                    )
                elif isinstance(event, TurnDone):
                    done = True
                yield event
        except BaseException as failure:
            error = failure
            raise
        finally:
            await events.aclose()
            if began:
                # A turn refused before it began (bad input, no such agent) has no outcome.
                outcome = turn_outcome(error, done=done)
                tracing.set_attributes(span, **{"switchboard.outcome": outcome})


def counted_tokens(
    reply_records: Callable[..., tuple[Any, dict[str, Any]]],
) -> Callable[..., tuple[Any, dict[str, Any]]]:
    """Counts the tokens of every stored turn, complete or not, by agent, as usage records
    them (wraps `TurnRunner._reply_records`)."""

    @functools.wraps(reply_records)
    def counted(*args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        reply, usage = reply_records(*args, **kwargs)
        agent = str(usage["agent_id"])
        metrics().tokens.labels(agent, "in").inc(int(usage["prompt_tokens"]))
        metrics().tokens.labels(agent, "out").inc(int(usage["completion_tokens"]))
        return reply, usage

    return counted


def traced_step(backend: Any, turn: Any) -> AsyncGenerator[Any, None]:
    """One model step of `backend`, inside a span naming it when tracing is on."""
    if not tracing.enabled():
        return backend.stream(turn)  # type: ignore[no-any-return]
    return _traced_step(backend, turn)


async def _traced_step(backend: Any, turn: Any) -> AsyncGenerator[Any, None]:
    with tracing.span("model step", attributes={"switchboard.backend": backend.name(turn.agent)}):
        async with aclosing(backend.stream(turn)) as events:
            async for event in events:
                yield event
