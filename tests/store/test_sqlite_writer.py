"""SQLite's turn writes on their writer thread store exactly what SQLAlchemy's `insert(table)`
stores, reserve positions like the async path, and leave writes they do not know to it."""

from __future__ import annotations

import asyncio
import copy
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from server import ids
from server.store import Store
from server.store.database import create_engine, migrate
from server.store.sessions import MessageRecord
from server.store.sqlite_writer import SQLiteWriter
from server.store.tables import utcnow
from server.store.turn_write import TurnWrite

TABLES = ("sessions", "messages", "usage_records")


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    made = []
    for name in ("writer", "reference"):
        url = f"sqlite+aiosqlite:///{tmp_path / name}.db"
        migrate(url)
        made.append(create_engine(url))
    for engine in made:
        async with engine.begin() as connection:
            await _seed(connection)
    yield made[0], made[1]
    for engine in made:
        await engine.dispose()


async def _seed(connection: Any) -> None:
    tables = SQLModel.metadata.tables
    now = utcnow()
    await connection.execute(
        insert(tables["workspaces"]), [{"id": "ws_1", "name": "w", "created_at": now}]
    )
    await connection.execute(
        insert(tables["agents"]),
        [
            {
                "id": "agt_1",
                "workspace_id": "ws_1",
                "slug": "a",
                "config": {},
                "latest_version": 0,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )


def _turn() -> TurnWrite:
    now = utcnow()
    session = ids.new_id("sess")
    user = MessageRecord(
        id=ids.new_id("msg"),
        session_id=session,
        position=1,
        role="user",
        content="Where is my parcel? ☃",
        created_at=now,
    )
    tool = MessageRecord(
        id=ids.new_id("msg"),
        session_id=session,
        position=2,
        role="assistant",
        content="",
        created_at=now,
        tool_calls=[{"id": "c1", "name": "track", "arguments": '{"n": 1}'}],
    )
    reply = MessageRecord(
        id=ids.new_id("msg"),
        session_id=session,
        position=3,
        role="assistant",
        content="On its way.",
        created_at=now,
        status="incomplete",
        agent_version=2,
        backend="openai_compatible:m",
        prompt_tokens=10,
        completion_tokens=3,
        latency_ms=12,
        sources=[{"document": "d", "score": 0.5}],
        tool_error=True,
    )
    return TurnWrite(
        sessions=[
            {
                "id": session,
                "workspace_id": "ws_1",
                "agent_id": "agt_1",
                "labels": {"user": "u"},
                "last_position": 3,
                "created_at": now,
                "updated_at": now,
            }
        ],
        messages=[user.row(), tool.row(), reply.row()],
        usage=[
            {
                "workspace_id": "ws_1",
                "key_id": None,
                "agent_id": "agt_1",
                "session_id": session,
                "message_id": reply.id,
                "prompt_tokens": 10,
                "completion_tokens": 3,
                "total_tokens": 13,
                "created_at": now,
            }
        ],
    )


def _stored(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    path = engine.url.database
    assert path is not None
    with sqlite3.connect(path) as connection:
        return {
            table: connection.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in TABLES
        }


async def test_rows_are_stored_as_sqlalchemy_stores_them(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    writer_engine, reference = engines
    work = _turn()
    writer = SQLiteWriter.for_engine(writer_engine)
    assert writer is not None
    assert await writer.write([copy.deepcopy(work)]) == [None]
    tables = SQLModel.metadata.tables
    async with reference.begin() as connection:
        await connection.execute(insert(tables["sessions"]), work.sessions)
        await connection.execute(insert(tables["messages"]), work.messages)
        await connection.execute(insert(tables["usage_records"]), work.usage)
    assert _stored(writer_engine) == _stored(reference)


async def test_positions_are_reserved_in_existing_sessions_only(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    writer = SQLiteWriter.for_engine(engines[0])
    assert writer is not None
    first = _turn()
    session = first.sessions[0]["id"]
    follow_up = TurnWrite(
        messages=[dict(row, id=ids.new_id("msg")) for row in first.messages[:2]],
        reserve=("ws_1", session),
    )
    missing = TurnWrite(messages=copy.deepcopy(follow_up.messages), reserve=("ws_1", "sess_x"))
    assert await writer.write([first]) == [None]
    assert await writer.write([follow_up, missing]) == [4, None]
    assert [row["position"] for row in follow_up.messages] == [4, 5]
    stored = _stored(engines[0])
    assert len(stored["messages"]) == 5
    assert [row[4] for row in stored["sessions"]] == [5]


async def test_balances_are_debited_in_the_turns_transaction(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    engine = engines[0]
    path = engine.url.database
    assert path is not None
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE workspaces SET token_balance = 100 WHERE id = 'ws_1'")
        connection.execute(
            "INSERT INTO workspaces (id, name, created_at) VALUES ('ws_2', 'u', '2026-01-01')"
        )
    writer = SQLiteWriter.for_engine(engine)
    assert writer is not None
    first, second = _turn(), _turn()
    first.debit, second.debit = ("ws_1", 10), ("ws_1", 5)
    unmetered = _turn()
    unmetered.sessions[0]["workspace_id"] = unmetered.usage[0]["workspace_id"] = "ws_2"
    unmetered.debit = ("ws_2", 9)
    # A write whose session is gone stores nothing and debits nothing.
    lost = TurnWrite(messages=copy.deepcopy(first.messages[:1]), reserve=("ws_1", "sess_x"))
    lost.debit = ("ws_1", 7)
    assert await writer.write([first, second, unmetered, lost]) == [None, None, None, None]
    with sqlite3.connect(path) as connection:
        balances = dict(connection.execute("SELECT id, token_balance FROM workspaces"))
    assert balances == {"ws_1": 85, "ws_2": None}


@dataclass
class _Extended(TurnWrite):
    extra: int = 0


def test_writes_with_unknown_parts_are_left_to_the_async_path() -> None:
    assert SQLiteWriter.handles([TurnWrite(), _Extended()])
    assert not SQLiteWriter.handles([TurnWrite(), _Extended(extra=1)])


async def test_the_store_reads_what_the_writer_stored(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}"
    migrate(url)
    store = Store(create_engine(url))
    try:
        await store.workspaces.ensure("ws_1", "w")
        agent = await store.agents.create("ws_1", slug="a", config={})
        session = ids.new_id("sess")
        reply = MessageRecord(
            id=ids.new_id("msg"),
            session_id=session,
            position=0,
            role="assistant",
            content="Nine days.",
            created_at=utcnow(),
            sources=[{"document": "d", "score": 0.25}],
        )
        await store.sessions.record_turn(
            "ws_1",
            agent_id=agent.id,
            session_id=session,
            new_session=True,
            labels={"user": "u"},
            messages=[("user", "When?")],
            reply=reply,
            usage=None,
        )
        stored = await store.sessions.list_messages(session)
        assert [(m.position, m.role, m.content) for m in stored] == [
            (1, "user", "When?"),
            (2, "assistant", "Nine days."),
        ]
        assert stored[1].sources == [{"document": "d", "score": 0.25}]
        assert stored[1].created_at == reply.created_at
    finally:
        await store.close()


async def test_a_burst_of_turns_is_written_whole_in_bounded_transactions(tmp_path: Path) -> None:
    """Six hundred turns ending at once are all stored, in transactions of at most 256 turns
    (as `switchboard_write_batch_size` counts them), so that a burst's rows never sit in
    memory all together."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'burst.db'}"
    migrate(url)
    store = Store(create_engine(url))

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    count = sample("switchboard_write_batch_size_count")
    total = sample("switchboard_write_batch_size_sum")
    over = count - sample("switchboard_write_batch_size_bucket", le="256.0")
    try:
        await store.workspaces.ensure("ws_1", "w")
        agent = await store.agents.create("ws_1", slug="a", config={})
        sessions = [ids.new_id("sess") for _ in range(600)]
        await asyncio.gather(
            *(
                store.sessions.record_turn(
                    "ws_1",
                    agent_id=agent.id,
                    session_id=session,
                    new_session=True,
                    labels={},
                    messages=[("user", "When?")],
                    reply=None,
                    usage=None,
                )
                for session in sessions
            )
        )
        stored = await asyncio.gather(*(store.sessions.list_messages(s) for s in sessions))
        assert all([(m.role, m.content) for m in turn] == [("user", "When?")] for turn in stored)
    finally:
        await store.close()
    assert sample("switchboard_write_batch_size_sum") - total == 600
    assert sample("switchboard_write_batch_size_count") - count >= 3
    # No transaction took more than 256 turns.
    assert (
        sample("switchboard_write_batch_size_count")
        - sample("switchboard_write_batch_size_bucket", le="256.0")
        == over
    )
