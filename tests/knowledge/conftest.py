"""Fixtures of the knowledge suite: the shared SQLite server and one on PostgreSQL, and
agents given knowledge in bulk through `BatchCreateKnowledgeDocuments`."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from switchboard.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc

from tests.conftest import RunningServer

FALLBACK = "I do not know that one."


@pytest.fixture(scope="session")
def pg_server(
    server_factory: Callable[..., contextlib.AbstractContextManager[RunningServer]],
    postgresql_url: str,
) -> Iterator[RunningServer]:
    """A server of its own on PostgreSQL."""
    with server_factory(database_url=postgresql_url) as running:
        yield running


@pytest.fixture(params=["sqlite", "postgresql"])
def any_server(request: pytest.FixtureRequest) -> RunningServer:
    """The shared SQLite server, then the PostgreSQL one."""
    return request.getfixturevalue("server" if request.param == "sqlite" else "pg_server")


@dataclass
class Door:
    """The gRPC and HTTP doors of one server, with its all-scopes key."""

    server: RunningServer
    agents: agent_service_pb2_grpc.AgentServiceStub
    http: httpx.Client

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.server.api_key}"),)

    def create_agent(self, *, publish: bool = True, **fields: Any) -> agent_pb2.Agent:
        fields.setdefault("slug", f"kb-{uuid.uuid4().hex[:10]}")
        fields.setdefault("fallback_reply", FALLBACK)
        agent = self.agents.CreateAgent(
            agent_service_pb2.CreateAgentRequest(agent=agent_pb2.Agent(**fields)),
            metadata=self.metadata,
        )
        if publish:
            self.publish(agent)
        return agent

    def publish(self, agent: agent_pb2.Agent) -> None:
        self.agents.PublishAgent(
            agent_service_pb2.PublishAgentRequest(name=agent.name), metadata=self.metadata
        )

    def add_documents(
        self, agent: agent_pb2.Agent, documents: Sequence[tuple[str, str]], *, batch: int = 500
    ) -> list[agent_pb2.KnowledgeDocument]:
        """Adds `(title, content)` documents, `batch` at a time."""
        added = []
        for start in range(0, len(documents), batch):
            response = self.agents.BatchCreateKnowledgeDocuments(
                agent_service_pb2.BatchCreateKnowledgeDocumentsRequest(
                    parent=agent.name,
                    requests=[
                        agent_service_pb2.CreateKnowledgeDocumentRequest(
                            parent=agent.name,
                            document=agent_pb2.KnowledgeDocument(title=title, content=content),
                        )
                        for title, content in documents[start : start + batch]
                    ],
                ),
                metadata=self.metadata,
            )
            added.extend(response.documents)
        return added

    def ask(self, agent: agent_pb2.Agent, question: str) -> dict[str, Any]:
        """One completion through the OpenAI-compatible edge."""
        response = self.http.post(
            "/v1/chat/completions",
            json={"model": agent.id, "messages": [{"role": "user", "content": question}]},
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def sources(self, agent: agent_pb2.Agent, question: str) -> tuple[str, list[dict[str, Any]]]:
        """The reply and its sources, from the `done` event of the native stream."""
        session = self.http.post("/v1/sessions", json={"agent": f"agents/{agent.id}"}).json()
        response = self.http.post(
            f"/v1/sessions/{session['id']}/messages:stream", json={"content": question}
        )
        assert response.status_code == 200, response.text
        events = [line for line in response.text.splitlines() if line.strip()]
        results = [json.loads(line)["result"] for line in events]
        reply = "".join(r["content"]["text"] for r in results if "content" in r)
        [done] = [r["done"] for r in results if "done" in r]
        return reply, done.get("sources", [])


@pytest.fixture
def door(any_server: RunningServer) -> Iterator[Door]:
    headers = {"authorization": f"Bearer {any_server.api_key}"}
    with (
        grpc.insecure_channel(any_server.grpc_target) as channel,
        httpx.Client(base_url=any_server.http_url, headers=headers, timeout=60) as client,
    ):
        yield Door(any_server, agent_service_pb2_grpc.AgentServiceStub(channel), client)
