"""Agents and their published versions: drafts edited in place, versions snapshotted and
never changed, and the published agent chat serves, cached."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from server import ids
from server.errors import AgentNotFound, AgentNotPublished, AlreadyExists
from server.store.caching import TimedCache
from server.store.database import Database
from server.store.search import PassageIndex
from server.store.tables import Agent, AgentVersion, KnowledgeDocument, Message, Session, utcnow


@dataclass(frozen=True, slots=True)
class PublishedAgent:
    """The version chat serves: the agent row and the immutable config of its latest version."""

    agent: Agent
    version: int
    config: dict[str, Any]


class Agents:
    """The agents of every workspace, each found by `agt_` id or slug within its workspace."""

    def __init__(self, database: Database, index: PassageIndex) -> None:
        self._database = database
        self._index = index
        self._published = TimedCache(database.generation)
        # Published versions never change, so their configs are cached for good.
        self._versions: dict[tuple[str, int], dict[str, Any]] = {}

    async def create(self, workspace_id: str, *, slug: str | None, config: dict[str, Any]) -> Agent:
        """Stores a new draft agent; its slug must be free in the workspace."""
        agent = Agent(id=ids.new_id("agt"), workspace_id=workspace_id, slug=slug, config=config)
        async with self._database.writing() as db:
            db.add(agent)
            try:
                await db.commit()
            except IntegrityError as exc:
                raise AlreadyExists(
                    f"an agent with slug {slug!r} already exists", reason="SLUG_TAKEN"
                ) from exc
        return agent

    async def get(self, workspace_id: str, agent: str) -> Agent:
        """By `agt_` id or slug."""
        async with self._database.session() as db:
            row = await self._find(db, workspace_id, agent)
        if row is None:
            raise AgentNotFound(agent)
        return row

    @staticmethod
    async def _find(db: AsyncSession, workspace_id: str, agent: str) -> Agent | None:
        column = Agent.id if agent.startswith("agt_") else Agent.slug
        result = await db.exec(
            select(Agent).where(col(Agent.workspace_id) == workspace_id, col(column) == agent)
        )
        return result.first()

    async def list_page(
        self, workspace_id: str, *, limit: int, after: str | None, published_only: bool = False
    ) -> list[Agent]:
        """The workspace's agents by id, after `after`."""
        query = select(Agent).where(col(Agent.workspace_id) == workspace_id)
        if published_only:
            query = query.where(col(Agent.latest_version) > 0)
        if after:
            query = query.where(col(Agent.id) > after)
        async with self._database.session() as db:
            result = await db.exec(query.order_by(Agent.id).limit(limit))
            return list(result)

    async def update(
        self, workspace_id: str, agent: str, *, slug: str | None, config: dict[str, Any]
    ) -> Agent:
        """Replaces the draft's slug and config; published versions keep theirs."""
        async with self._database.writing() as db:
            row = await self._find(db, workspace_id, agent)
            if row is None:
                raise AgentNotFound(agent)
            row.slug = slug
            row.config = config
            row.updated_at = utcnow()
            db.add(row)
            try:
                await db.commit()
            except IntegrityError as exc:
                raise AlreadyExists(
                    f"an agent with slug {slug!r} already exists", reason="SLUG_TAKEN"
                ) from exc
            self._database.generation.bump()
            return row

    async def delete(self, workspace_id: str, agent: str) -> None:
        """Deletes the agent with its sessions, messages, knowledge and versions."""
        async with self._database.writing() as db:
            row = await self._find(db, workspace_id, agent)
            if row is None:
                raise AgentNotFound(agent)
            sessions = select(col(Session.id)).where(col(Session.agent_id) == row.id)
            await db.exec(delete(Message).where(col(Message.session_id).in_(sessions)))
            await db.exec(delete(Session).where(col(Session.agent_id) == row.id))
            await self._index.drop_agent(await db.connection(), row.id)
            await db.exec(
                delete(KnowledgeDocument).where(col(KnowledgeDocument.agent_id) == row.id)
            )
            await db.exec(delete(AgentVersion).where(col(AgentVersion.agent_id) == row.id))
            await db.delete(row)
            await db.commit()
            self._database.generation.bump()

    async def publish(self, workspace_id: str, agent: str) -> AgentVersion:
        """Snapshots the draft as the next version. The version bump is one atomic UPDATE, so
        concurrent publishes get distinct numbers."""
        async with self._database.writing() as db:
            row = await self._find(db, workspace_id, agent)
            if row is None:
                raise AgentNotFound(agent)
            result = await db.exec(
                update(Agent)
                .where(col(Agent.id) == row.id)
                .values(latest_version=Agent.latest_version + 1)
                .returning(col(Agent.latest_version), col(Agent.config))
            )
            number, config = result.one()
            version = AgentVersion(agent_id=row.id, version=number, config=config)
            db.add(version)
            await db.commit()
            self._database.generation.bump()
            return version

    async def list_versions(
        self, agent_id: str, *, limit: int, before: int | None
    ) -> list[AgentVersion]:
        """The versions of an agent the caller has already found in its workspace."""
        query = select(AgentVersion).where(col(AgentVersion.agent_id) == agent_id)
        if before is not None:
            query = query.where(col(AgentVersion.version) < before)
        async with self._database.session() as db:
            result = await db.exec(query.order_by(col(AgentVersion.version).desc()).limit(limit))
            return list(result)

    async def get_published(self, workspace_id: str, agent: str) -> PublishedAgent:
        """The agent's latest published version; *not published* if it has none."""
        return await self._published.fetch(
            (workspace_id, agent), lambda: self._load_published(workspace_id, agent)
        )

    async def _load_published(self, workspace_id: str, agent: str) -> PublishedAgent:
        row = await self.get(workspace_id, agent)
        if row.latest_version == 0:
            raise AgentNotPublished(agent)
        cache_key = (row.id, row.latest_version)
        config = self._versions.get(cache_key)
        if config is None:
            async with self._database.session() as db:
                version = await db.get(AgentVersion, cache_key)
            assert version is not None
            config = self._versions[cache_key] = version.config
        return PublishedAgent(agent=row, version=row.latest_version, config=config)

    async def published_configs(self, agents: Sequence[Agent]) -> list[dict[str, Any]]:
        """The configs of the latest published versions of `agents` (each published), in one
        query for those not cached yet."""
        wanted = [(agent.id, agent.latest_version) for agent in agents]
        missing = [key for key in wanted if key not in self._versions]
        # In slices, so that the bound parameters stay within every database's limit.
        for start in range(0, len(missing), 500):
            query = select(AgentVersion).where(
                tuple_(col(AgentVersion.agent_id), col(AgentVersion.version)).in_(
                    missing[start : start + 500]
                )
            )
            async with self._database.session() as db:
                for version in await db.exec(query):
                    self._versions[(version.agent_id, version.version)] = version.config
        return [self._versions[key] for key in wanted]
