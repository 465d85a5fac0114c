"""Persistence: SQLModel tables, the database and its migrations, and the small repositories,
one per aggregate, that `Store` assembles for the services.

Every operation is scoped to a workspace; a row of another workspace is *not found*."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from server.store.agents import Agents
from server.store.caching import Generation
from server.store.database import Database
from server.store.idempotency import IdempotencyRecords
from server.store.keys import Keys
from server.store.knowledge import Knowledge
from server.store.origins import ListedOrigins
from server.store.search import PassageIndex
from server.store.sessions import Sessions
from server.store.usage import UsageLedger
from server.store.workspaces import Workspaces


class Store:
    """The repositories over one database, sharing its engine, write lock, grouped writes and
    cache generation."""

    def __init__(self, engine: AsyncEngine, generation: Generation | None = None) -> None:
        self.database = Database(engine, generation)
        index = PassageIndex(self.database.sqlite)
        self.keys = Keys(self.database)
        self.agents = Agents(self.database, index)
        self.knowledge = Knowledge(self.database, self.agents, index)
        self.sessions = Sessions(self.database)
        self.idempotency = IdempotencyRecords(self.database)
        self.workspaces = Workspaces(self.database)
        self.usage = UsageLedger(self.database)
        self.origins = ListedOrigins(self.database)

    async def close(self) -> None:
        """Closes the database's connections."""
        await self.database.close()
