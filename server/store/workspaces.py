"""Workspaces: the tenants, their balances, and the gate a turn passes before it runs."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import update
from sqlmodel import col, select

from server import ids
from server.errors import NotFound, clip
from server.store.caching import CACHE_SECONDS
from server.store.database import Database
from server.store.tables import Workspace


class Workspaces:
    """The workspaces, and the balance each turn checks."""

    def __init__(self, database: Database) -> None:
        self._database = database
        # Workspaces seen without a balance, until when: they skip the balance read.
        self._unmetered: dict[str, float] = {}
        self._reading: dict[str, asyncio.Future[int | None]] = {}

    async def create(self, name: str) -> Workspace:
        """Stores a new workspace, unmetered."""
        workspace = Workspace(id=ids.new_id("ws"), name=name)
        async with self._database.writing() as db:
            db.add(workspace)
            await db.commit()
        return workspace

    async def ensure(self, workspace_id: str, name: str) -> Workspace:
        """The workspace with this id, made with this name if there is none."""
        async with self._database.writing() as db:
            workspace = await db.get(Workspace, workspace_id)
            if workspace is None:
                workspace = Workspace(id=workspace_id, name=name)
                db.add(workspace)
                await db.commit()
            return workspace

    async def get(self, workspace_id: str) -> Workspace:
        """By id."""
        async with self._database.session() as db:
            workspace = await db.get(Workspace, workspace_id)
        if workspace is None:
            raise NotFound(f"workspace {clip(workspace_id)!r} does not exist")
        return workspace

    async def find(self, name_or_id: str) -> Workspace:
        """By id, or by a name that only one workspace has."""
        async with self._database.session() as db:
            found = await db.get(Workspace, name_or_id)
            if found is not None:
                return found
            rows = list(await db.exec(select(Workspace).where(col(Workspace.name) == name_or_id)))
        if len(rows) != 1:
            which = "no workspace" if not rows else f"{len(rows)} workspaces"
            raise NotFound(f"{which} named {clip(name_or_id)!r}; use its id")
        return rows[0]

    async def list_all(self) -> list[Workspace]:
        """Every workspace, oldest first."""
        async with self._database.session() as db:
            return list(await db.exec(select(Workspace).order_by(col(Workspace.created_at))))

    async def rename(self, workspace_id: str, name: str) -> Workspace:
        """Gives the workspace a new name."""
        async with self._database.writing() as db:
            await db.exec(
                update(Workspace).where(col(Workspace.id) == workspace_id).values(name=name)
            )
            await db.commit()
        return await self.get(workspace_id)

    async def set_balance(self, workspace_id: str, tokens: int | None) -> Workspace:
        """Meters the workspace with `tokens` left, or unmeters it with None."""
        async with self._database.writing() as db:
            await db.exec(
                update(Workspace)
                .where(col(Workspace.id) == workspace_id)
                .values(token_balance=tokens)
            )
            await db.commit()
        self._unmetered.pop(workspace_id, None)
        return await self.get(workspace_id)

    async def balance(self, workspace_id: str) -> int | None:
        """The tokens left, read fresh for a metered workspace (so that concurrent turns
        overdraw by at most those already running); None for an unmetered one, which another
        replica's operator may meter within `CACHE_SECONDS`."""
        unmetered_until = self._unmetered.get(workspace_id)
        if unmetered_until is None:
            return await self._read_balance(workspace_id)
        if unmetered_until > time.monotonic():
            return None
        # The turns that find an unmetered workspace's entry expired share one read, rather
        # than all running it at once; a metered one is read fresh by every turn.
        pending = self._reading.get(workspace_id)
        if pending is None:
            pending = asyncio.ensure_future(self._read_balance(workspace_id))
            self._reading[workspace_id] = pending
            pending.add_done_callback(lambda _: self._reading.pop(workspace_id, None))
        return await asyncio.shield(pending)

    async def _read_balance(self, workspace_id: str) -> int | None:
        async with self._database.engine.connect() as connection:
            table = Workspace.__table__  # type: ignore[attr-defined]
            result = await connection.execute(
                select(table.c.token_balance).where(table.c.id == workspace_id)
            )
            balance = result.scalar()
        if balance is None:
            self._unmetered[workspace_id] = time.monotonic() + CACHE_SECONDS
            return None
        self._unmetered.pop(workspace_id, None)
        return int(balance)
