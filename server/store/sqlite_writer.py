"""SQLite's group commits on a writer thread of their own, in one hand-off per transaction.

Through the async driver, every statement of a transaction is several hand-offs between the
event loop and the driver's thread (a cursor, the statement, closing the cursor, the commit),
and SQLAlchemy's execution machinery runs for each: a one-turn transaction cost the event loop
about 1 ms. Here the whole transaction runs on one thread with its own `sqlite3` connection to
the same file: the rows are converted by the columns' own SQLAlchemy bind processors (so they
are stored exactly as an `insert(table)` would store them) and inserted with `executemany`.
Everything else (reads, and writes outside turns) still goes through the async engine; the
database's write lock keeps this process's writers one at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from server.store.tables import utcnow
from server.store.turn_write import TurnWrite

_TABLES = ("sessions", "messages", "usage_records")
# The parts of a `TurnWrite` this writer knows how to store. A write carrying anything else
# (a field added later) goes through the async engine instead, so nothing is dropped.
_KNOWN_FIELDS = frozenset({"sessions", "messages", "usage", "reserve", "debit"})
_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000")
_DEBIT = (
    "UPDATE workspaces SET token_balance = token_balance - ? "
    "WHERE id = ? AND token_balance IS NOT NULL"
)
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
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._transactions = _Transactions(path, dialect)
        # The thread holds the queue and the transactions, never this object, so that
        # dropping the writer stops the thread; at interpreter exit, a transaction still
        # running ends before the connection closes.
        self._thread = threading.Thread(
            target=_serve, args=(self._jobs, self._transactions), name="sqlite-writer", daemon=True
        )
        self._started = False
        weakref.finalize(self, _stop, self._jobs, self._thread)

    @staticmethod
    def handles(batch: Sequence[TurnWrite]) -> bool:
        """Whether every write of `batch` holds only what this writer stores."""
        for work in batch:
            extras = _EXTRA_FIELDS.get(type(work))
            if extras is None:
                extras = _EXTRA_FIELDS[type(work)] = _extra_fields(type(work))
            if not all(getattr(work, name) == default for name, default in extras):
                return False
        return True

    async def write(self, batch: Sequence[TurnWrite]) -> list[int | None]:
        """Commits `batch` in one transaction; returns each write's first reserved position
        (None if its session does not exist, or if it reserved none)."""
        if not self._started:
            self._thread.start()
            self._started = True
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[int | None]] = loop.create_future()
        self._jobs.put((batch, loop, done))
        return await done


_Job = tuple[Sequence[TurnWrite], asyncio.AbstractEventLoop, "asyncio.Future[list[int | None]]"]
# Per kind of write: the fields this writer does not store, with the value each must keep
# (its default) for the writer to take the write; a field without a default is never taken.
_EXTRA_FIELDS: dict[type, tuple[tuple[str, Any], ...]] = {}
_NEVER = object()


def _extra_fields(kind: type) -> tuple[tuple[str, Any], ...]:
    extras = []
    for spec in dataclasses.fields(kind):
        if spec.name in _KNOWN_FIELDS:
            continue
        if spec.default is not dataclasses.MISSING:
            extras.append((spec.name, spec.default))
        elif spec.default_factory is not dataclasses.MISSING:
            extras.append((spec.name, spec.default_factory()))
        else:
            extras.append((spec.name, _NEVER))
    return tuple(extras)


def _serve(jobs: queue.SimpleQueue[_Job | None], transactions: _Transactions) -> None:
    try:
        while (job := jobs.get()) is not None:
            batch, loop, done = job
            try:
                result = transactions.run(batch)
            except BaseException as error:
                loop.call_soon_threadsafe(_settle, done, None, error)
            else:
                loop.call_soon_threadsafe(_settle, done, result, None)
    finally:
        transactions.close()


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


def _stop(jobs: queue.SimpleQueue[_Job | None], thread: threading.Thread) -> None:
    jobs.put(None)
    if thread.is_alive():
        thread.join()


class _Transactions:
    """The writer thread's side: its connection, and the statements it has prepared."""

    def __init__(self, path: str, dialect: Dialect) -> None:
        self._path = path
        self._dialect = dialect
        self._tables: dict[str, Table] = {name: SQLModel.metadata.tables[name] for name in _TABLES}
        self._inserts: dict[tuple[str, tuple[str, ...]], _Insert] = {}
        updated_at = self._tables["sessions"].c.updated_at.type
        self._updated_at = updated_at.dialect_impl(dialect).bind_processor(dialect)
        self._connection: sqlite3.Connection | None = None

    def run(self, batch: Sequence[TurnWrite]) -> list[int | None]:
        connection = self._connect()
        connection.execute("BEGIN IMMEDIATE")
        try:
            results: list[int | None] = []
            rows: dict[str, list[dict[str, Any]]] = {name: [] for name in _TABLES}
            debits: dict[str, int] = {}
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
                if work.debit is not None:
                    workspace_id, tokens = work.debit
                    debits[workspace_id] = debits.get(workspace_id, 0) + tokens
                rows["sessions"].extend(work.sessions)
                rows["messages"].extend(work.messages)
                rows["usage_records"].extend(work.usage)
            for name in _TABLES:
                for keys, group in _by_keys(rows[name]).items():
                    self._insert(name, keys).run(connection, group)
            for workspace_id, tokens in debits.items():
                # One conditional UPDATE: concurrent debits never lose one another.
                connection.execute(_DEBIT, (tokens, workspace_id))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return results

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

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
        if self._connection is None:
            self._connection = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            for pragma in _PRAGMAS:
                self._connection.execute(f"PRAGMA {pragma}")
        return self._connection


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
