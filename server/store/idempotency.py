"""Idempotency keys: a request's key reserved for its API key while it runs, then its stored
response, for replays."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col

from server.store.database import Database
from server.store.tables import IdempotencyKey, utcnow


class IdempotencyRecords:
    """The reservations and stored responses of idempotency keys."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def claim(
        self,
        record: IdempotencyKey,
        *,
        stale_before: datetime,
    ) -> IdempotencyKey | None:
        """Reserves `record`'s key for its API key in a transaction of its own. Returns None
        when this call holds the reservation now (new, or taken over from a `running` one last
        touched before `stale_before`), else the reservation that holds the key."""
        table = IdempotencyKey.__table__  # type: ignore[attr-defined]
        dialect_insert = sqlite_insert if self._database.sqlite else postgresql_insert
        statement = (
            dialect_insert(table)
            .values(record.model_dump())
            .on_conflict_do_nothing()
            .returning(table.c.key)
        )
        async with self._database.writing() as db:
            connection = await db.connection()
            # RETURNING, not rowcount: async drivers do not all report rowcount here.
            inserted = (await connection.execute(statement)).first() is not None
            if not inserted:
                taken = await connection.execute(
                    update(table)
                    .where(
                        table.c.api_key_id == record.api_key_id,
                        table.c.key == record.key,
                        table.c.method == record.method,
                        table.c.request_hash == record.request_hash,
                        table.c.state == "running",
                        table.c.updated_at < stale_before,
                    )
                    .values(updated_at=utcnow())
                    .returning(table.c.key)
                )
                inserted = taken.first() is not None
            await db.commit()
        if inserted:
            return None
        found = await self.find(record.api_key_id, record.key)
        # Released between the insert and this read: the caller tries again.
        return found if found is not None else await self.claim(record, stale_before=stale_before)

    async def find(self, api_key_id: str, key: str) -> IdempotencyKey | None:
        """The reservation of `key` for an API key, or None."""
        async with self._database.session() as db:
            return await db.get(IdempotencyKey, (api_key_id, key))

    async def finish(self, api_key_id: str, key: str, response: bytes) -> None:
        """Stores the result of a reserved key, for replays."""
        async with self._database.writing() as db:
            await db.exec(
                update(IdempotencyKey)
                .where(col(IdempotencyKey.api_key_id) == api_key_id, col(IdempotencyKey.key) == key)
                .values(state="done", response=response, updated_at=utcnow())
            )
            await db.commit()

    async def release(self, api_key_id: str, key: str) -> None:
        """Frees a reserved key whose turn failed, so that a retry runs it again."""
        async with self._database.writing() as db:
            await db.exec(
                delete(IdempotencyKey).where(
                    col(IdempotencyKey.api_key_id) == api_key_id,
                    col(IdempotencyKey.key) == key,
                    col(IdempotencyKey.state) == "running",
                )
            )
            await db.commit()
