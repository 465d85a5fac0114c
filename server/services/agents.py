"""`switchboard.v1.AgentService`: agents, published versions and knowledge documents."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2, field_mask_pb2
from switchboard.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc

from server import resources
from server.agent_config import check_agent
from server.auth import current_principal
from server.errors import InvalidArgument, clip
from server.knowledge import split_passages
from server.paging import PageTokens
from server.store import Store
from server.store.knowledge import NewDocument

_MUTABLE_FIELDS = {"slug", *resources.CONFIG_FIELDS}
_MAX_BATCH = 1000
_OUTCOMES = {
    "added": agent_service_pb2.KNOWLEDGE_DOCUMENT_OUTCOME_ADDED,
    "replaced": agent_service_pb2.KNOWLEDGE_DOCUMENT_OUTCOME_REPLACED,
    "unchanged": agent_service_pb2.KNOWLEDGE_DOCUMENT_OUTCOME_UNCHANGED,
}
_MIME_TYPES = ("text/markdown", "text/plain")
# Sources are unique per agent through an index, whose keys must stay small.
_MAX_SOURCE_CHARS = 512


def _new_document(document: agent_pb2.KnowledgeDocument, field: str) -> NewDocument:
    if not document.content.strip():
        raise InvalidArgument(f"{field}.content", "must not be empty")
    mime_type = document.mime_type or "text/markdown"
    if mime_type not in _MIME_TYPES:
        raise InvalidArgument(f"{field}.mime_type", "must be text/markdown or text/plain")
    if len(document.source) > _MAX_SOURCE_CHARS:
        raise InvalidArgument(f"{field}.source", f"must be at most {_MAX_SOURCE_CHARS} characters")
    return NewDocument(
        title=document.title,
        content=document.content,
        mime_type=mime_type,
        passages=split_passages(document.content),
        source=document.source,
    )


def _populated_paths(agent: agent_pb2.Agent) -> list[str]:
    return [f.name for f, _ in agent.ListFields() if f.name in _MUTABLE_FIELDS]


class AgentService(agent_service_pb2_grpc.AgentServiceServicer):
    """Agents, their published versions and their knowledge, in the caller's workspace."""

    def __init__(self, store: Store, pages: PageTokens) -> None:
        self._store = store
        self._pages = pages

    async def CreateAgent(
        self, request: agent_service_pb2.CreateAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        """Creates an agent; a bad config is refused with all its field violations."""
        check_agent(request.agent, "agent")
        row = await self._store.agents.create(
            current_principal().workspace_id,
            slug=request.agent.slug or None,
            config=resources.agent_config(request.agent),
        )
        return resources.agent_to_proto(row)

    async def GetAgent(
        self, request: agent_service_pb2.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        """An agent's draft, by id or slug."""
        agent = resources.parse_name(request.name, "agents", "name")
        row = await self._store.agents.get(current_principal().workspace_id, agent)
        return resources.agent_to_proto(row)

    async def ListAgents(
        self, request: agent_service_pb2.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.ListAgentsResponse:
        """The workspace's agents, oldest first, a page at a time."""
        workspace = current_principal().workspace_id
        limit = resources.page_size(request.page_size)
        rows = await self._store.agents.list_page(
            workspace, limit=limit + 1, after=await self._pages.read(request, workspace)
        )
        page, next_token = await self._pages.page(
            request, workspace, rows, limit, lambda row: row.id
        )
        return agent_service_pb2.ListAgentsResponse(
            agents=[resources.agent_to_proto(row) for row in page], next_page_token=next_token
        )

    async def UpdateAgent(
        self, request: agent_service_pb2.UpdateAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        """Updates the draft's masked fields (without a mask, those set); versions stay."""
        agent = resources.parse_name(request.agent.name, "agents", "agent.name")
        paths = list(request.update_mask.paths) or _populated_paths(request.agent)
        for path in paths:
            if path.split(".", 1)[0] not in _MUTABLE_FIELDS:
                raise InvalidArgument(
                    "update_mask", f"{clip(path)!r} is not a field that can be updated"
                )
        workspace = current_principal().workspace_id
        row = await self._store.agents.get(workspace, agent)
        updated = resources.agent_to_proto(row)
        mask = field_mask_pb2.FieldMask(paths=paths)
        if not mask.IsValidForDescriptor(agent_pb2.Agent.DESCRIPTOR):
            raise InvalidArgument("update_mask", f"unknown field in {clip(', '.join(paths))}")
        mask.MergeMessage(
            request.agent, updated, replace_message_field=True, replace_repeated_field=True
        )
        check_agent(updated, "agent")
        row = await self._store.agents.update(
            workspace,
            row.id,
            slug=updated.slug or None,
            config=resources.agent_config(updated),
        )
        return resources.agent_to_proto(row)

    async def DeleteAgent(
        self, request: agent_service_pb2.DeleteAgentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        """Deletes an agent with its versions, knowledge and sessions."""
        agent = resources.parse_name(request.name, "agents", "name")
        await self._store.agents.delete(current_principal().workspace_id, agent)
        return empty_pb2.Empty()

    async def PublishAgent(
        self, request: agent_service_pb2.PublishAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentVersion:
        """Snapshots the draft, checked again, as the next version, which chat serves."""
        agent = resources.parse_name(request.name, "agents", "name")
        workspace = current_principal().workspace_id
        # Drafts saved before a rule existed are checked again before they go live.
        draft = await self._store.agents.get(workspace, agent)
        check_agent(resources.agent_to_proto(draft), "agent")
        version = await self._store.agents.publish(workspace, agent)
        row = await self._store.agents.get(workspace, version.agent_id)
        return resources.version_to_proto(version, row)

    async def ListAgentVersions(
        self,
        request: agent_service_pb2.ListAgentVersionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> agent_service_pb2.ListAgentVersionsResponse:
        """An agent's published versions, newest first, a page at a time."""
        agent = resources.parse_name(request.parent, "agents", "parent")
        workspace = current_principal().workspace_id
        limit = resources.page_size(request.page_size)
        before = await self._pages.read_number(request, workspace)
        row = await self._store.agents.get(workspace, agent)
        versions = await self._store.agents.list_versions(row.id, limit=limit + 1, before=before)
        page, next_token = await self._pages.page(
            request, workspace, versions, limit, lambda v: v.version
        )
        return agent_service_pb2.ListAgentVersionsResponse(
            versions=[resources.version_to_proto(v, row) for v in page],
            next_page_token=next_token,
        )

    async def CreateKnowledgeDocument(
        self,
        request: agent_service_pb2.CreateKnowledgeDocumentRequest,
        context: grpc.aio.ServicerContext,
    ) -> agent_pb2.KnowledgeDocument:
        """Adds a document, searchable at once; it replaces one of the same `source`."""
        agent = resources.parse_name(request.parent, "agents", "parent")
        new = _new_document(request.document, "document")
        [(row, _)] = await self._store.knowledge.add_documents(
            current_principal().workspace_id, agent, [new]
        )
        return resources.document_to_proto(row)

    async def BatchCreateKnowledgeDocuments(
        self,
        request: agent_service_pb2.BatchCreateKnowledgeDocumentsRequest,
        context: grpc.aio.ServicerContext,
    ) -> agent_service_pb2.BatchCreateKnowledgeDocumentsResponse:
        """Adds up to 1000 documents in one transaction: all of them or none."""
        agent = resources.parse_name(request.parent, "agents", "parent")
        if not request.requests:
            raise InvalidArgument("requests", "must hold at least one document")
        if len(request.requests) > _MAX_BATCH:
            raise InvalidArgument("requests", f"must hold at most {_MAX_BATCH} documents")
        documents = []
        sources: set[str] = set()
        for i, item in enumerate(request.requests):
            if item.parent != request.parent:
                raise InvalidArgument(f"requests[{i}].parent", "must equal `parent`")
            new = _new_document(item.document, f"requests[{i}].document")
            if new.source and new.source in sources:
                raise InvalidArgument(
                    f"requests[{i}].document.source", "names a document of the batch twice"
                )
            sources.add(new.source)
            documents.append(new)
        added = await self._store.knowledge.add_documents(
            current_principal().workspace_id, agent, documents
        )
        return agent_service_pb2.BatchCreateKnowledgeDocumentsResponse(
            documents=[resources.document_to_proto(row) for row, _ in added],
            outcomes=[_OUTCOMES[outcome] for _, outcome in added],
        )

    async def ListKnowledgeDocuments(
        self,
        request: agent_service_pb2.ListKnowledgeDocumentsRequest,
        context: grpc.aio.ServicerContext,
    ) -> agent_service_pb2.ListKnowledgeDocumentsResponse:
        """An agent's knowledge documents, oldest first, a page at a time."""
        agent = resources.parse_name(request.parent, "agents", "parent")
        workspace = current_principal().workspace_id
        limit = resources.page_size(request.page_size)
        rows = await self._store.knowledge.list_documents(
            workspace, agent, limit=limit + 1, after=await self._pages.read(request, workspace)
        )
        page, next_token = await self._pages.page(
            request, workspace, rows, limit, lambda row: row.id
        )
        return agent_service_pb2.ListKnowledgeDocumentsResponse(
            documents=[resources.document_to_proto(row) for row in page],
            next_page_token=next_token,
        )

    async def DeleteKnowledgeDocument(
        self,
        request: agent_service_pb2.DeleteKnowledgeDocumentRequest,
        context: grpc.aio.ServicerContext,
    ) -> empty_pb2.Empty:
        """Removes a document and its passages from the agent's knowledge."""
        agent, document = resources.parse_child_name(request.name, "agents", "documents", "name")
        await self._store.knowledge.delete_document(
            current_principal().workspace_id, agent, document
        )
        return empty_pb2.Empty()
