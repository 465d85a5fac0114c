"""The gRPC core: builds the grpc.aio server with its services, health and reflection."""

from __future__ import annotations

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
    key_service_pb2,
    key_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
)

from server.auth import AuthInterceptor
from server.chat import TurnRunner
from server.services.agents import AgentService
from server.services.completions import CompletionService
from server.services.keys import KeyService
from server.services.models import ModelService
from server.services.sessions import SessionService
from server.store.repository import Repository

log = logging.getLogger("switchboard")

SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (agent_service_pb2, "AgentService"),
        (session_service_pb2, "SessionService"),
        (completion_service_pb2, "CompletionService"),
        (model_service_pb2, "ModelService"),
        (key_service_pb2, "KeyService"),
    )
)


def _log_unexpected(error: BaseException) -> None:
    log.error("unexpected error in an RPC", exc_info=error)


async def start_core(repository: Repository, address: str) -> grpc.aio.Server:
    """Starts serving on `address` (host:port) and returns the running server."""
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(repository, _log_unexpected)],
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
        ],
    )
    turns = TurnRunner(repository)
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(AgentService(repository), server)
    session_service_pb2_grpc.add_SessionServiceServicer_to_server(
        SessionService(repository, turns), server
    )
    completion_service_pb2_grpc.add_CompletionServiceServicer_to_server(
        CompletionService(repository, turns), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(repository), server)
    key_service_pb2_grpc.add_KeyServiceServicer_to_server(KeyService(repository), server)

    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    for name in (*SERVICE_NAMES, ""):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server
