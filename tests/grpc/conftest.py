"""gRPC clients of the shared server, and a way to make agents to talk to."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from switchboard.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    completion_service_pb2_grpc,
    key_service_pb2,
    key_service_pb2_grpc,
    model_service_pb2_grpc,
    session_service_pb2_grpc,
)

from tests.conftest import RunningServer


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.agents = agent_service_pb2_grpc.AgentServiceStub(channel)
        self.sessions = session_service_pb2_grpc.SessionServiceStub(channel)
        self.completions = completion_service_pb2_grpc.CompletionServiceStub(channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(channel)
        self.keys = key_service_pb2_grpc.KeyServiceStub(channel)


@pytest.fixture(scope="session")
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        yield channel


@pytest.fixture(scope="session")
def stubs(channel: grpc.aio.Channel) -> Stubs:
    return Stubs(channel)


@pytest.fixture(scope="session")
def auth(server: RunningServer) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {server.api_key}"),)


@pytest.fixture(scope="session")
def key_with_scopes(
    stubs: Stubs, auth: tuple[tuple[str, str], ...]
) -> Callable[..., Awaitable[tuple[tuple[str, str], ...]]]:
    async def mint(*scopes: str) -> tuple[tuple[str, str], ...]:
        key = await stubs.keys.CreateKey(
            key_service_pb2.CreateKeyRequest(key=key_service_pb2.Key(scopes=scopes)),
            metadata=auth,
        )
        return (("authorization", f"Bearer {key.secret}"),)

    return mint


KNOWLEDGE = """# Parcels

Parcels to Norway travel by ferry and arrive within nine days of dispatch.

# Gift cards

Gift cards never expire and can be spent on anything in the store.
"""


@pytest.fixture
def make_agent(
    stubs: Stubs, auth: tuple[tuple[str, str], ...]
) -> Callable[..., Awaitable[agent_pb2.Agent]]:
    """Creates an agent with a little knowledge; publishes it unless told not to."""

    async def make(*, publish: bool = True, **fields: object) -> agent_pb2.Agent:
        fields.setdefault("slug", f"agent-{uuid.uuid4().hex[:10]}")
        fields.setdefault("fallback_reply", "I only know about parcels and gift cards.")
        agent = await stubs.agents.CreateAgent(
            agent_service_pb2.CreateAgentRequest(agent=agent_pb2.Agent(**fields)), metadata=auth
        )
        await stubs.agents.CreateKnowledgeDocument(
            agent_service_pb2.CreateKnowledgeDocumentRequest(
                parent=agent.name,
                document=agent_pb2.KnowledgeDocument(title="Store facts", content=KNOWLEDGE),
            ),
            metadata=auth,
        )
        if publish:
            await stubs.agents.PublishAgent(
                agent_service_pb2.PublishAgentRequest(name=agent.name), metadata=auth
            )
        return agent

    return make


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    raise AssertionError(f"no rich status in {error!r}")


def error_reason(error: grpc.aio.AioRpcError) -> str:
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    raise AssertionError("no ErrorInfo")


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return {v.field: v.description for v in bad.field_violations}
    return {}
