"""The edge's one long-lived gRPC channel to the core, with a prebuilt callable per RPC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from switchboard.v1 import cors_service_pb2

from http_edge.mux import Route
from observability import tracing

Metadata = tuple[tuple[str, str], ...]

CHECK_PREFLIGHT_RPC = "/switchboard.v1.CorsService/CheckPreflight"

# Request headers forwarded to the core as gRPC metadata of the same name.
_FORWARDED_HEADERS = (b"authorization", b"idempotency-key", b"origin")
_MAX_METADATA_VALUE = 8192
_PREFLIGHT_TIMEOUT_SECONDS = 5.0
# Response metadata of the core passed on to HTTP clients as headers of the same name.
_PASSED_PREFIX = "x-ratelimit-"


class CoreChannel(Protocol):
    """What the edge needs of a channel to the core: a `grpc.aio.Channel`, or the core's
    in-process channel, which calls the servicers without a network hop."""

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
    ) -> Callable[..., Any]:
        """A callable for the unary RPC at `method`."""
        ...

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
    ) -> Callable[..., Any]:
        """A callable for the server-streaming RPC at `method`."""
        ...

    async def close(self) -> None:
        """Closes the channel."""
        ...


class CoreClient:
    """Holds the channel and calls RPCs by their full path, e.g. `/pkg.Service/Method`.

    The channel is a `grpc.aio` channel to `target`, or the given `CoreChannel` (the core's
    in-process path)."""

    def __init__(
        self, target: str, routes: list[Route], channel: CoreChannel | None = None
    ) -> None:
        self.target = target
        self._routes = {route.rpc_path: route for route in routes}
        self._given_channel = channel
        self._channel: CoreChannel | None = None
        self._unary: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}
        self._streaming: dict[str, grpc.aio.UnaryStreamMultiCallable] = {}
        self._health: health_pb2_grpc.HealthStub | None = None
        self._check_preflight: grpc.aio.UnaryUnaryMultiCallable | None = None

    async def start(self) -> None:
        """Open the channel (inside the serving event loop) and build the callables."""
        if self._channel is not None:
            return
        channel = self._given_channel or grpc.aio.insecure_channel(self.target)
        for path, route in self._routes.items():
            serializer = route.request_class.SerializeToString
            deserializer = route.response_class.FromString
            if route.server_streaming:
                self._streaming[path] = channel.unary_stream(
                    path, request_serializer=serializer, response_deserializer=deserializer
                )
            elif not route.client_streaming:
                self._unary[path] = channel.unary_unary(
                    path, request_serializer=serializer, response_deserializer=deserializer
                )
        self._health = health_pb2_grpc.HealthStub(channel)
        self._check_preflight = channel.unary_unary(
            CHECK_PREFLIGHT_RPC,
            request_serializer=cors_service_pb2.CheckPreflightRequest.SerializeToString,
            response_deserializer=cors_service_pb2.CheckPreflightResponse.FromString,
        )
        self._channel = channel

    async def close(self) -> None:
        """Closes the channel, if open."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def unary(self, rpc_path: str) -> grpc.aio.UnaryUnaryMultiCallable:
        """The prebuilt callable of the unary RPC at `rpc_path`."""
        return self._unary[rpc_path]

    def streaming(self, rpc_path: str) -> grpc.aio.UnaryStreamMultiCallable:
        """The prebuilt callable of the server-streaming RPC at `rpc_path`."""
        return self._streaming[rpc_path]

    async def is_serving(self, deadline_seconds: float = 1.0, service: str = "") -> bool:
        """Whether the core answers a `grpc.health.v1` Check (of `service`) with SERVING."""
        if self._health is None:
            return False
        try:
            reply: Any = await self._health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=deadline_seconds
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def allows_preflight(self, origin: str, rpc_path: str) -> bool:
        """Whether the core lets a browser on `origin` be granted a preflight for `rpc_path`
        (keyless, see `switchboard.v1.CorsService`). Raises `grpc.aio.AioRpcError`."""
        if self._check_preflight is None:
            return False
        request = cors_service_pb2.CheckPreflightRequest(origin=origin, method=rpc_path)
        reply: Any = await self._check_preflight(request, timeout=_PREFLIGHT_TIMEOUT_SECONDS)
        return bool(reply.allowed)


async def passed_headers(call: Any) -> list[tuple[bytes, bytes]]:
    """The response metadata the core asks the edge to pass on as HTTP headers: what a
    rate-limited key has left (`x-ratelimit-*`)."""
    try:
        metadata = await call.initial_metadata()
    except (grpc.aio.AioRpcError, AttributeError):
        return []
    return [
        (key.encode(), value.encode())
        for key, value in metadata or ()
        if key.startswith(_PASSED_PREFIX) and isinstance(value, str) and value.isascii()
    ]


def forwarded_metadata(headers: dict[bytes, bytes], request_id: str) -> Metadata:
    """The gRPC metadata of a request: the request id and the forwarded headers."""
    metadata = [("x-request-id", request_id)]
    for name in _FORWARDED_HEADERS:
        value = headers.get(name)
        if value is not None and _is_valid_value(value):
            metadata.append((name.decode(), value.decode()))
    if tracing.enabled():
        # A core in another process continues the edge's trace.
        carrier: dict[str, str] = {}
        tracing.inject(carrier)
        metadata.extend(carrier.items())
    return tuple(metadata)


def _is_valid_value(value: bytes) -> bool:
    # gRPC rejects non-printable ASCII in metadata; such a header is dropped, not a crash.
    return len(value) <= _MAX_METADATA_VALUE and value.isascii() and value.decode().isprintable()
