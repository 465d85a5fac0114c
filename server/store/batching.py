"""Group commit: concurrent turns' writes share one transaction.

Each database round trip through an async driver costs far more than the rows it carries, so
turn writes (new sessions, messages, usage records) queue up while a transaction is in flight
and the next transaction takes them (up to a bound), with one multi-row INSERT per table. A
caller's write is acknowledged only once its transaction has committed, so nothing
acknowledged is lost."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import SQLModel

from observability.metrics import metrics
from server.store.sqlite_writer import SQLiteWriter
from server.store.tables import utcnow
from server.store.turn_write import TurnWrite

log = logging.getLogger(__name__)

# The most turn writes one transaction takes.
_MAX_BATCH = 256
_SESSIONS = SQLModel.metadata.tables["sessions"]
_MESSAGES = SQLModel.metadata.tables["messages"]
_USAGE = SQLModel.metadata.tables["usage_records"]
_WORKSPACES = SQLModel.metadata.tables["workspaces"]


class WriteBatcher:
    """Queues turn writes and commits each group of them in one transaction."""

    def __init__(self, engine: AsyncEngine, lock: asyncio.Lock | None) -> None:
        self._engine = engine
        # SQLite takes one writer at a time: its writes share the database's write lock.
        self._lock = lock
        self._pending: list[tuple[TurnWrite, asyncio.Future[int | None]]] = []
        self._draining: asyncio.Task[None] | None = None
        # SQLite: a group's transaction runs whole on a writer thread, in one hand-off.
        self._sqlite = SQLiteWriter.for_engine(engine)

    async def write(self, work: TurnWrite) -> int | None:
        """Commits the rows; returns the first reserved position (None if the session to
        reserve in does not exist), or None without `reserve`."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        queued = time.perf_counter()
        result = await asyncio.shield(future)
        metrics().write_batch_wait_seconds.observe(time.perf_counter() - queued)
        return result

    async def _drain(self) -> None:
        while self._pending:
            # At most `_MAX_BATCH` writes a transaction: a burst of thousands of turns ending
            # at once then holds the rows of one bounded group in memory at a time.
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            metrics().write_batch_size.observe(len(batch))
            try:
                results = await self._commit([work for work, _ in batch])
            except Exception:
                log.warning("a grouped write failed; retrying its writes one by one", exc_info=True)
                for work, future in batch:
                    try:
                        [result] = await self._commit([work])
                        future.set_result(result)
                    except Exception as error:
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)

    async def _commit(self, batch: list[TurnWrite]) -> list[int | None]:
        if self._lock is None:
            return await self._transaction(batch)
        async with self._lock:
            if self._sqlite is not None and self._sqlite.handles(batch):
                return await self._sqlite.write(batch)
            return await self._transaction(batch)

    async def _transaction(self, batch: list[TurnWrite]) -> list[int | None]:
        results: list[int | None] = []
        sessions: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        usage: list[dict[str, Any]] = []
        debits: dict[str, int] = {}
        async with self._engine.begin() as connection:
            for work in batch:
                first = None
                if work.reserve is not None:
                    first = await self._reserve(connection, work)
                    if first is None:
                        results.append(None)
                        continue
                    for offset, row in enumerate(work.messages):
                        row["position"] = first + offset
                results.append(first)
                if work.debit is not None:
                    workspace_id, tokens = work.debit
                    debits[workspace_id] = debits.get(workspace_id, 0) + tokens
                sessions.extend(work.sessions)
                messages.extend(work.messages)
                usage.extend(work.usage)
            for table, rows in ((_SESSIONS, sessions), (_MESSAGES, messages), (_USAGE, usage)):
                if rows:
                    await connection.execute(insert(table), rows)
            for workspace_id, tokens in debits.items():
                # One conditional UPDATE: concurrent debits never lose one another.
                await connection.execute(
                    update(_WORKSPACES)
                    .where(
                        _WORKSPACES.c.id == workspace_id, _WORKSPACES.c.token_balance.is_not(None)
                    )
                    .values(token_balance=_WORKSPACES.c.token_balance - tokens)
                )
        return results

    @staticmethod
    async def _reserve(connection: AsyncConnection, work: TurnWrite) -> int | None:
        assert work.reserve is not None
        workspace_id, session_id = work.reserve
        needed = len(work.messages)
        result = await connection.execute(
            update(_SESSIONS)
            .where(_SESSIONS.c.id == session_id, _SESSIONS.c.workspace_id == workspace_id)
            .values(last_position=_SESSIONS.c.last_position + needed, updated_at=utcnow())
            .returning(_SESSIONS.c.last_position)
        )
        last = result.scalar()
        return None if last is None else int(last) - needed + 1
