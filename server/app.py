"""The gRPC core: the servicers, served over gRPC (with health and reflection) and, for an
edge in the same process, through a `LocalChannel`."""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from switchboard.v1 import (
    agent_service_pb2,
    agent_service_pb2_grpc,
    completion_service_pb2,
    completion_service_pb2_grpc,
    cors_service_pb2,
    cors_service_pb2_grpc,
    key_service_pb2,
    key_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
    usage_service_pb2,
    usage_service_pb2_grpc,
    workspace_service_pb2,
    workspace_service_pb2_grpc,
)

from server.auth import AuthInterceptor
from server.backends.openai_compatible import SharedClient
from server.chat import TurnRunner, TurnSettings
from server.idempotency import IdempotencyKeys
from server.limits import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from server.local_channel import HandlerCollector, LocalChannel
from server.paging import PageTokens
from server.replicas import ReplicaBus
from server.services.agents import AgentService
from server.services.completions import CompletionService
from server.services.cors import CorsService
from server.services.keys import KeyService
from server.services.models import ModelService
from server.services.sessions import SessionService
from server.services.usage import UsageService
from server.services.workspaces import WorkspaceService
from server.store import Store
from server.telemetry import CallerTelemetry, GrpcDoorTelemetry, observe_caller

log = logging.getLogger("switchboard")

SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (agent_service_pb2, "AgentService"),
        (session_service_pb2, "SessionService"),
        (completion_service_pb2, "CompletionService"),
        (model_service_pb2, "ModelService"),
        (key_service_pb2, "KeyService"),
        (workspace_service_pb2, "WorkspaceService"),
        (usage_service_pb2, "UsageService"),
    )
)
# Health of the shared rate-limit counters: NOT_SERVING while Redis is unreachable (the server
# keeps serving, and limits are not enforced).
RATE_LIMITS_HEALTH = "switchboard.RateLimits"
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Answers without a key (see `server.auth.PUBLIC_SERVICES`), so it stands apart from the above.
CORS_SERVICE = cors_service_pb2.DESCRIPTOR.services_by_name["CorsService"].full_name


def _log_unexpected(error: BaseException, request_id: str | None) -> None:
    log.error("unexpected error in an RPC (x-request-id %s)", request_id or "-", exc_info=error)


class Core:
    """One set of servicers, reachable over gRPC and in-process."""

    def __init__(
        self,
        store: Store,
        turn_settings: TurnSettings | None = None,
        *,
        redis_url: str | None = None,
    ) -> None:
        self.store = store
        self._interceptor = AuthInterceptor(store.keys, _log_unexpected)
        self._health = health_aio.HealthServicer()
        self._health_updates: set[asyncio.Future[None]] = set()
        # One pooled HTTP client per process, for upstream models and webhook tools.
        self._http = SharedClient()
        self._limiter: RateLimiter = (
            RedisRateLimiter(redis_url, on_health=self._rate_limits_health)
            if redis_url
            else MemoryRateLimiter()
        )
        turns = TurnRunner(store, self._http, turn_settings, limiter=self._limiter)
        # With Redis, a cancel reaches the replica that runs the turn.
        self._replicas = ReplicaBus(redis_url, turns.cancel) if redis_url else None
        idempotency = IdempotencyKeys(store.idempotency)
        pages = PageTokens(store.database)
        self._servicers = (
            (
                agent_service_pb2_grpc.add_AgentServiceServicer_to_server,
                AgentService(store, pages),
            ),
            (
                session_service_pb2_grpc.add_SessionServiceServicer_to_server,
                SessionService(store, turns, idempotency, pages, self._replicas),
            ),
            (
                completion_service_pb2_grpc.add_CompletionServiceServicer_to_server,
                CompletionService(store, turns, idempotency),
            ),
            (model_service_pb2_grpc.add_ModelServiceServicer_to_server, ModelService(store)),
            (key_service_pb2_grpc.add_KeyServiceServicer_to_server, KeyService(store, pages)),
            (
                cors_service_pb2_grpc.add_CorsServiceServicer_to_server,
                CorsService(store.origins),
            ),
            (
                workspace_service_pb2_grpc.add_WorkspaceServiceServicer_to_server,
                WorkspaceService(store.workspaces),
            ),
            (
                usage_service_pb2_grpc.add_UsageServiceServicer_to_server,
                UsageService(store.usage, pages),
            ),
            (health_pb2_grpc.add_HealthServicer_to_server, self._health),
        )

    async def start(self) -> None:
        """Marks the services SERVING, checks Redis, and listens for the other replicas' cancels."""
        for name in (*SERVICE_NAMES, CORS_SERVICE, "", RATE_LIMITS_HEALTH):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if isinstance(self._limiter, RedisRateLimiter):
            await self._limiter.ping()
        if self._replicas is not None:
            await self._replicas.start()

    def _rate_limits_health(self, healthy: bool) -> None:
        serving = health_pb2.HealthCheckResponse
        status = serving.SERVING if healthy else serving.NOT_SERVING
        # Kept until done: a task nobody references may be collected mid-flight.
        task = asyncio.ensure_future(self._health.set(RATE_LIMITS_HEALTH, status))
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)

    async def stop_listening(self) -> None:
        """Stops taking cancels from other replicas, once the servers have stopped: the
        listener would otherwise be a task that never ends among the turns left to finish."""
        if self._replicas is not None:
            await self._replicas.stop_listening()

    async def close(self) -> None:
        """Releases the upstream connections, the shared counters and the database."""
        await self._http.aclose()
        if isinstance(self._limiter, RedisRateLimiter):
            await self._limiter.close()
        if self._replicas is not None:
            await self._replicas.close()
        await self.store.close()

    def local_channel(self) -> LocalChannel:
        """An in-process channel to the servicers, behind the same key checks as gRPC."""
        collector = HandlerCollector()
        for add, servicer in self._servicers:
            add(servicer, collector)  # type: ignore[operator]
        return LocalChannel(
            {
                path: self._interceptor.wrap(path, observe_caller(path, h))
                for path, h in collector.handlers.items()
            }
        )

    async def serve_grpc(self, address: str, *, reuse_port: bool = False) -> grpc.aio.Server:
        """Starts serving gRPC on `address` (host:port) and returns the running server.
        With `reuse_port`, several processes may serve the same port."""
        server = grpc.aio.server(
            interceptors=[GrpcDoorTelemetry(), self._interceptor, CallerTelemetry()],
            options=[
                ("grpc.so_reuseport", int(reuse_port)),
                ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            ],
        )
        for add, servicer in self._servicers:
            add(servicer, server)  # type: ignore[operator]
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, CORS_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server
        )
        try:
            server.add_insecure_port(address)
        except RuntimeError as error:
            raise OSError(
                f"cannot listen on {address}: the address is in use or invalid"
            ) from error
        await server.start()
        return server
