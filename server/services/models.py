"""`switchboard.v1.ModelService`: published agents in the OpenAI model shapes."""

from __future__ import annotations

from typing import Any

import grpc
from switchboard.v1 import model_service_pb2, model_service_pb2_grpc

from server.auth import current_principal, published_agent_for
from server.errors import InvalidArgument
from server.store import Store
from server.store.tables import Agent


def _model(agent: Agent, config: dict[str, Any]) -> model_service_pb2.Model:
    """The model of `agent`, presented as its published version `config` says."""
    return model_service_pb2.Model(
        id=agent.slug or agent.id,
        object="model",
        created=int(agent.created_at.timestamp()),
        owned_by="switchboard",
        agent_id=agent.id,
        version=agent.latest_version,
        display_name=config.get("display_name", ""),
        description=config.get("description", ""),
        greeting=config.get("greeting", ""),
        quick_replies=config.get("quick_replies", []),
    )


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """Published agents as OpenAI models, those the caller's key may use."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def ListModels(
        self, request: model_service_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> model_service_pb2.ListModelsResponse:
        """The published agents the key may use, as OpenAI's model list."""
        principal = current_principal()
        agents = await self._store.agents.list_page(
            principal.workspace_id, limit=10_000, after=None, published_only=True
        )
        visible = [a for a in agents if principal.may_use_agent(a.id, a.slug)]
        configs = await self._store.agents.published_configs(visible)
        return model_service_pb2.ListModelsResponse(
            object="list", data=[_model(a, c) for a, c in zip(visible, configs, strict=True)]
        )

    async def GetModel(
        self, request: model_service_pb2.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> model_service_pb2.Model:
        """One published agent the key may use, by id or slug."""
        if not request.model:
            raise InvalidArgument("model", "name the agent id or slug")
        principal = current_principal()
        published = await published_agent_for(self._store.agents, principal, request.model)
        return _model(published.agent, published.config)
