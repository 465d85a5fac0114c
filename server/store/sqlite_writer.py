"""SQLite's group commits on a writer thread of their own, in one hand-off per transaction.

Through the async driver, every statement of a transaction is several hand-offs between the
event loop and the driver's thread (a cursor, the statement, closing the cursor, the commit),
and SQLAlchemy's execution machinery runs for each: a one-turn transaction cost the event loop
about 1 ms. Here the whole transaction runs on one thread with its own `sqlite3` connection to
the same file: the rows are converted by the columns' own SQLAlchemy bind processors (so they
are stored exactly as an `insert(table)` would store them) and inserted with `executemany`.
Everything else (reads, and writes outside turns) still goes through the async engine; the
repository's write lock keeps this process's writers one at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from server.store.tables import utcnow

if TYPE_CHECKING:
    from server.store.batching import TurnWrite

_TABLES = ("sessions", "messages", "usage_records")
# The parts of a `TurnWrite` this writer knows how to store. A write carrying anything else
# (a field added later) goes through the async engine instead, so nothing is dropped.
_KNOWN_FIELDS = frozenset({"sessions", "messages", "usage", "reserve"})
_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000")
_RESERVE = (
    "UPDATE sessions SET last_position = last_position + ?, updated_at = ? "
    "WHERE id = ? AND workspace_id = ? RETURNING last_position"
)


class SQLiteWriter:
    """Commits groups of turn writes to the SQLite file of `engine` on one thread."""

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> SQLiteWriter | None:
        """A writer for a file-backed SQLite engine, else None."""
        database = engine.url.database
        if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
            return None
        return cls(database, engine.dialect)

    def __init__(self, path: str, dialect: Dialect) -> None:
        self._path = path
        self._dialect = dialect
        self._tables: dict[str, Table] = {name: SQLModel.metadata.tables[name] for name in _TABLES}
        self._inserts: dict[tuple[str, tuple[str, ...]], _Insert] = {}
        updated_at = self._tables["sessions"].c.updated_at.type
        self._updated_at = updated_at.dialect_impl(dialect).bind_processor(dialect)
        self._connection: list[sqlite3.Connection] = []
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        weakref.finalize(self, _close, self._thread, self._connection)

    @staticmethod
    def handles(batch: Sequence[TurnWrite]) -> bool:
        """Whether every write of `batch` holds only what this writer stores."""
        for work in batch:
            for spec in dataclasses.fields(work):
                if spec.name in _KNOWN_FIELDS:
                    continue
                if spec.default is not dataclasses.MISSING:
                    default = spec.default
                elif spec.default_factory is not dataclasses.MISSING:
                    default = spec.default_factory()
                else:
                    return False
                if getattr(work, spec.name) != default:
                    return False
        return True

    async def write(self, batch: Sequence[TurnWrite]) -> list[int | None]:
        """Commits `batch` in one transaction; returns each write's first reserved position
        (None if its session does not exist, or if it reserved none)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._transaction, batch)

    def _transaction(self, batch: Sequence[TurnWrite]) -> list[int | None]:
        connection = self._connect()
        connection.execute("BEGIN IMMEDIATE")
        try:
            results: list[int | None] = []
            rows: dict[str, list[dict[str, Any]]] = {name: [] for name in _TABLES}
            for work in batch:
                first = None
                if work.reserve is not None:
                    first = self._reserve(connection, work)
                    if first is None:
                        results.append(None)
                        continue
                    for offset, row in enumerate(work.messages):
                        row["position"] = first + offset
                results.append(first)
                rows["sessions"].extend(work.sessions)
                rows["messages"].extend(work.messages)
                rows["usage_records"].extend(work.usage)
            for name in _TABLES:
                for keys, group in _by_keys(rows[name]).items():
                    self._insert(name, keys).run(connection, group)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return results

    def _reserve(self, connection: sqlite3.Connection, work: TurnWrite) -> int | None:
        assert work.reserve is not None
        workspace_id, session_id = work.reserve
        needed = len(work.messages)
        updated_at = self._updated_at(utcnow()) if self._updated_at else utcnow()
        found = connection.execute(
            _RESERVE, (needed, updated_at, session_id, workspace_id)
        ).fetchone()
        return None if found is None else int(found[0]) - needed + 1

    def _insert(self, table: str, keys: tuple[str, ...]) -> _Insert:
        insert = self._inserts.get((table, keys))
        if insert is None:
            insert = self._inserts[(table, keys)] = _Insert(
                self._tables[table], keys, self._dialect
            )
        return insert

    def _connect(self) -> sqlite3.Connection:
        if not self._connection:
            connection = sqlite3.connect(
                self._path, timeout=30, isolation_level=None, check_same_thread=False
            )
            for pragma in _PRAGMAS:
                connection.execute(f"PRAGMA {pragma}")
            self._connection.append(connection)
        return self._connection[0]


class _Insert:
    """An INSERT of the given columns, with their bind processors."""

    def __init__(self, table: Table, keys: tuple[str, ...], dialect: Dialect) -> None:
        self._columns = [
            (key, table.c[key].type.dialect_impl(dialect).bind_processor(dialect)) for key in keys
        ]
        self._sql = (
            f"INSERT INTO {table.name} ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})"
        )

    def run(self, connection: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
        columns = self._columns
        connection.executemany(
            self._sql,
            [
                tuple(
                    row[key] if process is None else process(row[key]) for key, process in columns
                )
                for row in rows
            ],
        )


def _by_keys(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return groups


def _close(thread: ThreadPoolExecutor, connection: list[sqlite3.Connection]) -> None:
    # Also runs at interpreter exit, after the executors stopped taking work: a transaction
    # still running ends first, then the connection closes from here.
    thread.shutdown(wait=True)
    if connection:
        connection[0].close()
