"""Sessions and their messages: a conversation with one agent, read back in order, and each
turn appended in one grouped write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy import select as select_columns
from sqlmodel import SQLModel, col, select

from server import ids
from server.errors import SessionNotFound
from server.store.database import Database
from server.store.tables import Message, Session, utcnow
from server.store.turn_write import TurnWrite

_MESSAGES = SQLModel.metadata.tables["messages"]
_SESSIONS = SQLModel.metadata.tables["sessions"]


@dataclass(slots=True)
class HistoryMessage:
    """A stored message as a prompt's history reads it (the other columns cost time to decode)."""

    role: str
    content: str
    tool_calls: list[dict[str, str]] | None
    tool_call_id: str | None


@dataclass(slots=True)
class MessageRecord:
    """A stored message, as the store hands it out: a row of `messages` as a plain
    record, because building a SQLModel instance costs about 0.1 ms, too much for each turn."""

    id: str
    session_id: str
    position: int
    role: str
    content: str
    created_at: datetime
    status: str = "complete"
    agent_version: int | None = None
    backend: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int | None = None
    time_to_first_token_ms: int | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, str]] | None = None
    tool_call_id: str | None = None
    tool_error: bool = False

    def row(self) -> dict[str, Any]:
        """The column values, for an INSERT (shallow, unlike `dataclasses.asdict`)."""
        return {name: getattr(self, name) for name in self.__slots__}


class Sessions:
    """The sessions of every workspace and their messages."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(self, workspace_id: str, agent_id: str, *, labels: dict[str, str]) -> Session:
        """Stores a new session of the agent, without messages."""
        session = Session(
            id=ids.new_id("sess"), workspace_id=workspace_id, agent_id=agent_id, labels=labels
        )
        async with self._database.writing() as db:
            db.add(session)
            await db.commit()
        return session

    async def get(self, workspace_id: str, session_id: str) -> tuple[Session, int]:
        """The session and how many messages it holds."""
        async with self._database.session() as db:
            session = await db.get(Session, session_id)
            if session is None or session.workspace_id != workspace_id:
                raise SessionNotFound(session_id)
            count = await db.scalar(
                select(func.count()).where(col(Message.session_id) == session_id)
            )
        return session, int(count or 0)

    async def list_page(
        self, workspace_id: str, *, agent_id: str | None, limit: int, before: str | None
    ) -> list[tuple[Session, int]]:
        """The workspace's sessions (of one agent, if given), newest first, before `before`,
        each with how many messages it holds."""
        counts = select(func.count()).where(col(Message.session_id) == Session.id).scalar_subquery()
        query = select(Session, counts).where(col(Session.workspace_id) == workspace_id)
        if agent_id:
            query = query.where(col(Session.agent_id) == agent_id)
        if before:
            query = query.where(col(Session.id) < before)
        async with self._database.session() as db:
            result = await db.exec(query.order_by(col(Session.id).desc()).limit(limit))
            return [(session, int(count)) for session, count in result.all()]

    async def delete(self, workspace_id: str, session_id: str) -> None:
        """Deletes a session of the workspace and its messages."""
        async with self._database.writing() as db:
            session = await db.get(Session, session_id)
            if session is None or session.workspace_id != workspace_id:
                raise SessionNotFound(session_id)
            await db.exec(delete(Message).where(col(Message.session_id) == session_id))
            await db.delete(session)
            await db.commit()

    async def list_messages(
        self, session_id: str, *, limit: int | None = None, after: int = 0
    ) -> list[MessageRecord]:
        """A session's messages in order, after position `after`."""
        query = (
            select_columns(_MESSAGES)
            .where(_MESSAGES.c.session_id == session_id, _MESSAGES.c.position > after)
            .order_by(_MESSAGES.c.position)
        )
        if limit is not None:
            query = query.limit(limit)
        async with self._database.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [MessageRecord(**row) for row in rows]

    async def history(self, session_id: str, *, limit: int) -> list[HistoryMessage]:
        """The newest `limit` messages of a session, oldest first, as a prompt needs them: one
        indexed read of four columns, however long the session."""
        query = (
            select_columns(
                _MESSAGES.c.role,
                _MESSAGES.c.content,
                _MESSAGES.c.tool_calls,
                _MESSAGES.c.tool_call_id,
            )
            .where(_MESSAGES.c.session_id == session_id)
            .order_by(_MESSAGES.c.position.desc())
            .limit(limit)
        )
        async with self._database.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [HistoryMessage(*row) for row in reversed(rows)]

    async def agent_of(self, workspace_id: str, session_id: str) -> str:
        """The id of the agent a session talks to."""
        query = select_columns(_SESSIONS.c.agent_id).where(
            _SESSIONS.c.id == session_id, _SESSIONS.c.workspace_id == workspace_id
        )
        async with self._database.engine.connect() as connection:
            agent_id = (await connection.execute(query)).scalar()
        if agent_id is None:
            raise SessionNotFound(session_id)
        return str(agent_id)

    async def record_turn(
        self,
        workspace_id: str,
        *,
        agent_id: str,
        session_id: str,
        new_session: bool,
        labels: dict[str, str],
        messages: Sequence[tuple[str, str]],
        reply: MessageRecord | None,
        usage: dict[str, Any] | None,
        exchange: Sequence[MessageRecord] = (),
        debit: int = 0,
    ) -> list[MessageRecord]:
        """Appends a turn in one transaction: its incoming `(role, content)` messages, the
        tool calls and results of its `exchange`, then its reply and usage record if given;
        with `new_session`, the session too. Returns the stored messages, the reply last, with
        their positions.

        Positions are reserved with one atomic UPDATE per turn, so concurrent turns of a
        session never interleave, on any number of replicas."""
        now = utcnow()
        stored = [
            MessageRecord(
                id=ids.new_id("msg"),
                session_id=session_id,
                position=position,
                role=role,
                content=content,
                created_at=now,
            )
            for position, (role, content) in enumerate(messages, start=1)
        ]
        for message in exchange:
            message.session_id = session_id
            message.position = len(stored) + 1
            stored.append(message)
        if reply is not None:
            reply.position = len(stored) + 1
            stored.append(reply)
        work = TurnWrite(usage=[usage] if usage is not None else [])
        if debit:
            work.debit = (workspace_id, debit)
        if new_session:
            work.sessions.append(
                {
                    "id": session_id,
                    "workspace_id": workspace_id,
                    "agent_id": agent_id,
                    "labels": labels,
                    "last_position": len(stored),
                    "created_at": now,
                    "updated_at": now,
                }
            )
        else:
            work.reserve = (workspace_id, session_id)
        work.messages.extend(message.row() for message in stored)
        first = await self._database.batcher.write(work)
        if not new_session:
            if first is None:
                raise SessionNotFound(session_id)
            for offset, message in enumerate(stored):
                message.position = first + offset
        return stored
