"""`switchboard.v1.AgentService`: agents, published versions and knowledge documents."""

from __future__ import annotations

import re

import grpc
from google.protobuf import empty_pb2, field_mask_pb2
from switchboard.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc

from server import resources
from server.auth import current_principal
from server.errors import InvalidArgument, clip
from server.knowledge import split_passages
from server.store.repository import Repository

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_MUTABLE_FIELDS = {"slug", *resources.CONFIG_FIELDS}


def _validate_agent(agent: agent_pb2.Agent, field: str) -> None:
    if agent.slug and (not _SLUG.match(agent.slug) or agent.slug.startswith("agt-")):
        raise InvalidArgument(
            f"{field}.slug",
            "use 1 to 64 lowercase letters, digits and dashes, starting and ending with a "
            "letter or digit",
        )
    if agent.knowledge.min_score < 0 or agent.knowledge.min_score > 1:
        raise InvalidArgument(f"{field}.knowledge.min_score", "must be between 0 and 1")
    if agent.knowledge.top_k < 0:
        raise InvalidArgument(f"{field}.knowledge.top_k", "must not be negative")
    if agent.backend.builtin.delta_interval_ms < 0:
        raise InvalidArgument(f"{field}.backend.builtin.delta_interval_ms", "must not be negative")


def _populated_paths(agent: agent_pb2.Agent) -> list[str]:
    return [f.name for f, _ in agent.ListFields() if f.name in _MUTABLE_FIELDS]


class AgentService(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    async def CreateAgent(
        self, request: agent_service_pb2.CreateAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        _validate_agent(request.agent, "agent")
        row = await self._repository.create_agent(
            current_principal().workspace_id,
            slug=request.agent.slug or None,
            config=resources.agent_config(request.agent),
        )
        return resources.agent_to_proto(row)

    async def GetAgent(
        self, request: agent_service_pb2.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        agent = resources.parse_name(request.name, "agents", "name")
        row = await self._repository.get_agent(current_principal().workspace_id, agent)
        return resources.agent_to_proto(row)

    async def ListAgents(
        self, request: agent_service_pb2.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.ListAgentsResponse:
        limit = resources.page_size(request.page_size)
        rows = await self._repository.list_agents(
            current_principal().workspace_id,
            limit=limit + 1,
            after=resources.decode_page_token(request.page_token),
        )
        page, next_token = resources.split_page(rows, limit, lambda row: row.id)
        return agent_service_pb2.ListAgentsResponse(
            agents=[resources.agent_to_proto(row) for row in page], next_page_token=next_token
        )

    async def UpdateAgent(
        self, request: agent_service_pb2.UpdateAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        agent = resources.parse_name(request.agent.name, "agents", "agent.name")
        _validate_agent(request.agent, "agent")
        paths = list(request.update_mask.paths) or _populated_paths(request.agent)
        for path in paths:
            if path.split(".", 1)[0] not in _MUTABLE_FIELDS:
                raise InvalidArgument(
                    "update_mask", f"{clip(path)!r} is not a field that can be updated"
                )
        workspace = current_principal().workspace_id
        row = await self._repository.get_agent(workspace, agent)
        updated = resources.agent_to_proto(row)
        mask = field_mask_pb2.FieldMask(paths=paths)
        if not mask.IsValidForDescriptor(agent_pb2.Agent.DESCRIPTOR):
            raise InvalidArgument("update_mask", f"unknown field in {', '.join(paths)}")
        mask.MergeMessage(
            request.agent, updated, replace_message_field=True, replace_repeated_field=True
        )
        row = await self._repository.update_agent(
            workspace,
            row.id,
            slug=updated.slug or None,
            config=resources.agent_config(updated),
        )
        return resources.agent_to_proto(row)

    async def DeleteAgent(
        self, request: agent_service_pb2.DeleteAgentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        agent = resources.parse_name(request.name, "agents", "name")
        await self._repository.delete_agent(current_principal().workspace_id, agent)
        return empty_pb2.Empty()

    async def PublishAgent(
        self, request: agent_service_pb2.PublishAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentVersion:
        agent = resources.parse_name(request.name, "agents", "name")
        workspace = current_principal().workspace_id
        version = await self._repository.publish_agent(workspace, agent)
        row = await self._repository.get_agent(workspace, version.agent_id)
        return resources.version_to_proto(version, row)

    async def ListAgentVersions(
        self,
        request: agent_service_pb2.ListAgentVersionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> agent_service_pb2.ListAgentVersionsResponse:
        agent = resources.parse_name(request.parent, "agents", "parent")
        workspace = current_principal().workspace_id
        limit = resources.page_size(request.page_size)
        before = resources.decode_number_token(request.page_token)
        row = await self._repository.get_agent(workspace, agent)
        versions = await self._repository.list_agent_versions(
            row.id, limit=limit + 1, before=before
        )
        page, next_token = resources.split_page(versions, limit, lambda v: v.version)
        return agent_service_pb2.ListAgentVersionsResponse(
            versions=[resources.version_to_proto(v, row) for v in page],
            next_page_token=next_token,
        )

    async def CreateKnowledgeDocument(
        self,
        request: agent_service_pb2.CreateKnowledgeDocumentRequest,
        context: grpc.aio.ServicerContext,
    ) -> agent_pb2.KnowledgeDocument:
        agent = resources.parse_name(request.parent, "agents", "parent")
        document = request.document
        if not document.content.strip():
            raise InvalidArgument("document.content", "must not be empty")
        mime_type = document.mime_type or "text/markdown"
        if mime_type not in ("text/markdown", "text/plain"):
            raise InvalidArgument("document.mime_type", "must be text/markdown or text/plain")
        row = await self._repository.add_document(
            current_principal().workspace_id,
            agent,
            title=document.title,
            content=document.content,
            mime_type=mime_type,
            passages=split_passages(document.content),
        )
        return resources.document_to_proto(row)

    async def ListKnowledgeDocuments(
        self,
        request: agent_service_pb2.ListKnowledgeDocumentsRequest,
        context: grpc.aio.ServicerContext,
    ) -> agent_service_pb2.ListKnowledgeDocumentsResponse:
        agent = resources.parse_name(request.parent, "agents", "parent")
        limit = resources.page_size(request.page_size)
        rows = await self._repository.list_documents(
            current_principal().workspace_id,
            agent,
            limit=limit + 1,
            after=resources.decode_page_token(request.page_token),
        )
        page, next_token = resources.split_page(rows, limit, lambda row: row.id)
        return agent_service_pb2.ListKnowledgeDocumentsResponse(
            documents=[resources.document_to_proto(row) for row in page],
            next_page_token=next_token,
        )

    async def DeleteKnowledgeDocument(
        self,
        request: agent_service_pb2.DeleteKnowledgeDocumentRequest,
        context: grpc.aio.ServicerContext,
    ) -> empty_pb2.Empty:
        agent, document = resources.parse_child_name(request.name, "agents", "documents", "name")
        await self._repository.delete_document(current_principal().workspace_id, agent, document)
        return empty_pb2.Empty()
