"""The repository: the store's operations in domain words, so services never build SQL.

Every operation is scoped to a workspace; a row of another workspace is *not found*.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, tuple_, update
from sqlalchemy import select as select_columns
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from server import ids
from server.errors import (
    AgentNotFound,
    AgentNotPublished,
    AlreadyExists,
    Conflict,
    NotFound,
    SessionNotFound,
    clip,
)
from server.knowledge import content_hash
from server.store.batching import WriteBatcher
from server.store.database import is_sqlite
from server.store.search import PassageIndex, ScoredPassage
from server.store.tables import (
    Agent,
    AgentVersion,
    ApiKey,
    IdempotencyKey,
    KnowledgeDocument,
    Message,
    ServerSecret,
    Session,
    UsageRecord,
    Workspace,
    utcnow,
)
from server.store.turn_write import TurnWrite

T = TypeVar("T")

_MESSAGES = SQLModel.metadata.tables["messages"]
_SESSIONS = SQLModel.metadata.tables["sessions"]

# How long a replica trusts what it read of keys, agents and knowledge rankings. Changes made
# through this replica apply at once; changes made through another replica within this time.
CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class NewDocument:
    """A document to add: its `(heading, text)` passages, and where it came from."""

    title: str
    content: str
    mime_type: str
    passages: list[tuple[str, str]]
    source: str = ""


@dataclass(frozen=True)
class PublishedAgent:
    """The version chat serves: the agent row and the immutable config of its latest version."""

    agent: Agent
    version: int
    config: dict[str, Any]


@dataclass(slots=True)
class MessageRecord:
    """A stored message, as the repository hands it out: a row of `messages` as a plain
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


class Generation:
    """A counter that every write to keys, agents or knowledge bumps. Workers of one
    `switchboard serve` share it (a `multiprocessing.Value`), so that what one of them changes
    is never served stale from another's cache."""

    def __init__(self, shared: Any = None) -> None:
        self._shared = shared
        self._local = 0

    @property
    def value(self) -> int:
        return int(self._shared.value) if self._shared is not None else self._local

    def bump(self) -> None:
        if self._shared is None:
            self._local += 1
            return
        with self._shared.get_lock():
            self._shared.value += 1


class _TimedCache:
    """A small read-through cache. Entries expire after `CACHE_SECONDS`, or at once when the
    generation moves on. Concurrent misses of one key share a single load."""

    def __init__(self, generation: Generation) -> None:
        self._generation = generation
        self._entries: dict[Any, tuple[float, int, Any]] = {}
        self._loading: dict[Any, asyncio.Future[Any]] = {}

    async def fetch(self, key: Any, load: Callable[[], Awaitable[T]]) -> T:
        entry = self._entries.get(key)
        if entry is not None and entry[0] >= time.monotonic():
            if entry[1] == self._generation.value:
                return entry[2]
        pending = self._loading.get(key)
        if pending is None:
            pending = self._loading[key] = asyncio.ensure_future(self._load(key, load))
        return await asyncio.shield(pending)

    async def _load(self, key: Any, load: Callable[[], Awaitable[T]]) -> T:
        generation = self._generation.value
        try:
            value = await load()
        finally:
            del self._loading[key]
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + CACHE_SECONDS, generation, value)
        return value


class Repository:
    def __init__(self, engine: AsyncEngine, generation: Generation | None = None) -> None:
        self.engine = engine
        self._sqlite = is_sqlite(str(engine.url))
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        # SQLite takes one writer at a time; this process's writes queue here rather than
        # failing with "database is locked". Reads run concurrently.
        self._write_lock = asyncio.Lock() if self._sqlite else None
        self._batcher = WriteBatcher(engine, self._write_lock)
        # Published versions never change, so their configs are cached for good.
        self._versions: dict[tuple[str, int], dict[str, Any]] = {}
        self._generation = generation or Generation()
        self._keys = _TimedCache(self._generation)
        self._agents = _TimedCache(self._generation)
        self._searches = _TimedCache(self._generation)
        self._index = PassageIndex(self._sqlite)

    def session(self) -> AsyncSession:
        return self._sessions()

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncSession]:
        """A session for a write transaction."""
        if self._write_lock is None:
            async with self.session() as db:
                yield db
            return
        async with self._write_lock, self.session() as db:
            yield db

    def writing(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """A session for a write transaction, for the store's other repositories."""
        return self._writing()

    async def close(self) -> None:
        await self.engine.dispose()

    # Workspaces

    async def ensure_workspace(self, workspace_id: str, name: str) -> Workspace:
        async with self._writing() as db:
            workspace = await db.get(Workspace, workspace_id)
            if workspace is None:
                workspace = Workspace(id=workspace_id, name=name)
                db.add(workspace)
                await db.commit()
            return workspace

    # Keys

    async def create_key(
        self,
        workspace_id: str,
        *,
        display_name: str,
        kind: str,
        scopes: Sequence[str],
        allowed_agents: Sequence[str] = (),
        allowed_origins: Sequence[str] = (),
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> tuple[ApiKey, str]:
        """Stores a new key and returns it with its secret, which is not stored."""
        secret = ids.new_secret("pk" if kind == "publishable" else "sk")
        key = ApiKey(
            id=ids.new_id("key"),
            workspace_id=workspace_id,
            display_name=display_name,
            kind=kind,
            secret_hash=ids.hash_secret(secret),
            prefix=secret[:7],
            scopes=list(scopes),
            allowed_agents=list(allowed_agents),
            allowed_origins=list(allowed_origins),
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )
        async with self._writing() as db:
            db.add(key)
            await db.commit()
        return key, secret

    async def find_key(self, secret: str) -> ApiKey | None:
        """The live key with this secret, or None."""
        digest = ids.hash_secret(secret)
        # Unknown secrets are remembered too (as False), so guessing costs no queries.
        found: ApiKey | bool = await self._keys.fetch(digest, lambda: self._load_key(digest))
        return found if isinstance(found, ApiKey) else None

    async def _load_key(self, digest: str) -> ApiKey | bool:
        async with self.session() as db:
            result = await db.exec(select(ApiKey).where(col(ApiKey.secret_hash) == digest))
            key = result.first()
        return key if key is not None and key.revoked_at is None else False

    async def list_keys(self, workspace_id: str, *, limit: int, after: str | None) -> list[ApiKey]:
        query = select(ApiKey).where(col(ApiKey.workspace_id) == workspace_id)
        if after:
            query = query.where(col(ApiKey.id) > after)
        async with self.session() as db:
            result = await db.exec(query.order_by(ApiKey.id).limit(limit))
            return list(result)

    async def revoke_key(self, workspace_id: str, key_id: str) -> ApiKey:
        async with self._writing() as db:
            key = await db.get(ApiKey, key_id)
            if key is None or key.workspace_id != workspace_id:
                raise NotFound(f"key {clip(key_id)!r} does not exist", reason="KEY_NOT_FOUND")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                db.add(key)
                await db.commit()
            self._generation.bump()
            return key

    # Agents

    async def create_agent(
        self, workspace_id: str, *, slug: str | None, config: dict[str, Any]
    ) -> Agent:
        agent = Agent(id=ids.new_id("agt"), workspace_id=workspace_id, slug=slug, config=config)
        async with self._writing() as db:
            db.add(agent)
            try:
                await db.commit()
            except IntegrityError as exc:
                raise AlreadyExists(
                    f"an agent with slug {slug!r} already exists", reason="SLUG_TAKEN"
                ) from exc
        return agent

    async def get_agent(self, workspace_id: str, agent: str) -> Agent:
        """By `agt_` id or slug."""
        async with self.session() as db:
            row = await self._find_agent(db, workspace_id, agent)
        if row is None:
            raise AgentNotFound(agent)
        return row

    @staticmethod
    async def _find_agent(db: AsyncSession, workspace_id: str, agent: str) -> Agent | None:
        column = Agent.id if agent.startswith("agt_") else Agent.slug
        result = await db.exec(
            select(Agent).where(col(Agent.workspace_id) == workspace_id, col(column) == agent)
        )
        return result.first()

    async def list_agents(
        self, workspace_id: str, *, limit: int, after: str | None, published_only: bool = False
    ) -> list[Agent]:
        query = select(Agent).where(col(Agent.workspace_id) == workspace_id)
        if published_only:
            query = query.where(col(Agent.latest_version) > 0)
        if after:
            query = query.where(col(Agent.id) > after)
        async with self.session() as db:
            result = await db.exec(query.order_by(Agent.id).limit(limit))
            return list(result)

    async def update_agent(
        self, workspace_id: str, agent: str, *, slug: str | None, config: dict[str, Any]
    ) -> Agent:
        async with self._writing() as db:
            row = await self._find_agent(db, workspace_id, agent)
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
            self._generation.bump()
            return row

    async def delete_agent(self, workspace_id: str, agent: str) -> None:
        async with self._writing() as db:
            row = await self._find_agent(db, workspace_id, agent)
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
            self._generation.bump()

    async def publish_agent(self, workspace_id: str, agent: str) -> AgentVersion:
        """Snapshots the draft as the next version. The version bump is one atomic UPDATE, so
        concurrent publishes get distinct numbers."""
        async with self._writing() as db:
            row = await self._find_agent(db, workspace_id, agent)
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
            self._generation.bump()
            return version

    async def list_agent_versions(
        self, agent_id: str, *, limit: int, before: int | None
    ) -> list[AgentVersion]:
        """The versions of an agent the caller has already found in its workspace."""
        query = select(AgentVersion).where(col(AgentVersion.agent_id) == agent_id)
        if before is not None:
            query = query.where(col(AgentVersion.version) < before)
        async with self.session() as db:
            result = await db.exec(query.order_by(col(AgentVersion.version).desc()).limit(limit))
            return list(result)

    async def get_published_agent(self, workspace_id: str, agent: str) -> PublishedAgent:
        return await self._agents.fetch(
            (workspace_id, agent), lambda: self._load_published_agent(workspace_id, agent)
        )

    async def _load_published_agent(self, workspace_id: str, agent: str) -> PublishedAgent:
        row = await self.get_agent(workspace_id, agent)
        if row.latest_version == 0:
            raise AgentNotPublished(agent)
        cache_key = (row.id, row.latest_version)
        config = self._versions.get(cache_key)
        if config is None:
            async with self.session() as db:
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
            async with self.session() as db:
                for version in await db.exec(query):
                    self._versions[(version.agent_id, version.version)] = version.config
        return [self._versions[key] for key in wanted]

    # Knowledge

    async def add_document(
        self,
        workspace_id: str,
        agent: str,
        *,
        title: str,
        content: str,
        mime_type: str,
        passages: Sequence[tuple[str, str]],
        source: str = "",
    ) -> KnowledgeDocument:
        """Stores a document and indexes its `(heading, text)` passages in one transaction."""
        document = NewDocument(title, content, mime_type, list(passages), source)
        [(stored, _)] = await self.add_documents(workspace_id, agent, [document])
        return stored

    async def add_documents(
        self, workspace_id: str, agent: str, documents: Sequence[NewDocument]
    ) -> list[tuple[KnowledgeDocument, str]]:
        """Stores and indexes documents in one transaction, each with what became of it:
        `added`; `replaced`, when the agent had a document of the same source, whose
        passages it replaces; or `unchanged`, when that document has the same content (it is
        returned as it was)."""
        row = await self.get_agent(workspace_id, agent)
        sources = [d.source for d in documents if d.source]
        async with self._writing() as db:
            connection = await db.connection()
            existing: dict[str, KnowledgeDocument] = {}
            if sources:
                found = await db.exec(
                    select(KnowledgeDocument).where(
                        col(KnowledgeDocument.agent_id) == row.id,
                        col(KnowledgeDocument.source).in_(sources),
                    )
                )
                existing = {d.source: d for d in found}
            results: list[tuple[KnowledgeDocument, str]] = []
            stored: list[KnowledgeDocument] = []
            replaced: list[str] = []
            passages: list[dict[str, Any]] = []
            for new in documents:
                hashed = content_hash(new.content)
                old = existing.get(new.source) if new.source else None
                if old is not None and old.content_hash == hashed:
                    results.append((old, "unchanged"))
                    continue
                if old is not None:
                    replaced.append(old.id)
                document = KnowledgeDocument(
                    id=ids.new_id("doc"),
                    agent_id=row.id,
                    title=new.title,
                    content=new.content,
                    mime_type=new.mime_type,
                    passage_count=len(new.passages),
                    source=new.source,
                    content_hash=hashed,
                )
                stored.append(document)
                results.append((document, "added" if old is None else "replaced"))
                passages.extend(
                    {
                        "document_id": document.id,
                        "title": new.title,
                        "position": position,
                        "heading": heading,
                        "text": body,
                    }
                    for position, (heading, body) in enumerate(new.passages)
                )
            if stored:
                if replaced:
                    await self._index.remove(connection, row.id, replaced)
                    await connection.execute(
                        delete(KnowledgeDocument).where(col(KnowledgeDocument.id).in_(replaced))
                    )
                await connection.execute(
                    insert(KnowledgeDocument), [d.model_dump() for d in stored]
                )
                await self._index.add(connection, row.id, passages)
                try:
                    await db.commit()
                except IntegrityError as exc:
                    raise Conflict(
                        "another request added a document of the same source; try again",
                        reason="DOCUMENT_SOURCE_CONFLICT",
                    ) from exc
                self._generation.bump()
        return results

    async def list_documents(
        self, workspace_id: str, agent: str, *, limit: int, after: str | None
    ) -> list[KnowledgeDocument]:
        row = await self.get_agent(workspace_id, agent)
        query = select(KnowledgeDocument).where(col(KnowledgeDocument.agent_id) == row.id)
        if after:
            query = query.where(col(KnowledgeDocument.id) > after)
        async with self.session() as db:
            result = await db.exec(query.order_by(KnowledgeDocument.id).limit(limit))
            return list(result)

    async def delete_document(self, workspace_id: str, agent: str, document_id: str) -> None:
        row = await self.get_agent(workspace_id, agent)
        async with self._writing() as db:
            document = await db.get(KnowledgeDocument, document_id)
            if document is None or document.agent_id != row.id:
                raise NotFound(
                    f"document {clip(document_id)!r} does not exist", reason="DOCUMENT_NOT_FOUND"
                )
            await self._index.remove(await db.connection(), row.id, [document_id])
            await db.delete(document)
            await db.commit()
            self._generation.bump()

    async def search_passages(
        self, agent_id: str, terms: Sequence[str], *, limit: int
    ) -> list[ScoredPassage]:
        """The agent's best `limit` passages for a question's analysed terms (see
        `server.knowledge.search_terms`), best first; `server.store.search` says how they
        are ranked inside the index. Scores are BM25 over the agent's own knowledge,
        normalised as s / (s + 1)."""
        if not terms:
            return []

        async def load() -> list[ScoredPassage]:
            async with self.engine.connect() as connection:
                return await self._index.search(connection, agent_id, terms, limit)

        return await self._searches.fetch((agent_id, tuple(terms), limit), load)

    # Sessions and messages

    async def create_session(
        self, workspace_id: str, agent_id: str, *, labels: dict[str, str]
    ) -> Session:
        session = Session(
            id=ids.new_id("sess"), workspace_id=workspace_id, agent_id=agent_id, labels=labels
        )
        async with self._writing() as db:
            db.add(session)
            await db.commit()
        return session

    async def get_session(self, workspace_id: str, session_id: str) -> tuple[Session, int]:
        """The session and how many messages it holds."""
        async with self.session() as db:
            session = await db.get(Session, session_id)
            if session is None or session.workspace_id != workspace_id:
                raise SessionNotFound(session_id)
            count = await db.scalar(
                select(func.count()).where(col(Message.session_id) == session_id)
            )
        return session, int(count or 0)

    async def list_sessions(
        self, workspace_id: str, *, agent_id: str | None, limit: int, before: str | None
    ) -> list[tuple[Session, int]]:
        counts = select(func.count()).where(col(Message.session_id) == Session.id).scalar_subquery()
        query = select(Session, counts).where(col(Session.workspace_id) == workspace_id)
        if agent_id:
            query = query.where(col(Session.agent_id) == agent_id)
        if before:
            query = query.where(col(Session.id) < before)
        async with self.session() as db:
            result = await db.exec(query.order_by(col(Session.id).desc()).limit(limit))
            return [(session, int(count)) for session, count in result.all()]

    async def delete_session(self, workspace_id: str, session_id: str) -> None:
        async with self._writing() as db:
            session = await db.get(Session, session_id)
            if session is None or session.workspace_id != workspace_id:
                raise SessionNotFound(session_id)
            await db.exec(delete(Message).where(col(Message.session_id) == session_id))
            await db.delete(session)
            await db.commit()

    async def list_messages(
        self, session_id: str, *, limit: int | None = None, after: int = 0
    ) -> list[MessageRecord]:
        query = (
            select_columns(_MESSAGES)
            .where(_MESSAGES.c.session_id == session_id, _MESSAGES.c.position > after)
            .order_by(_MESSAGES.c.position)
        )
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [MessageRecord(**row) for row in rows]

    async def recent_messages(self, session_id: str, *, limit: int) -> list[MessageRecord]:
        """The newest `limit` messages of a session, oldest first: one indexed read, however
        long the session."""
        query = (
            select_columns(_MESSAGES)
            .where(_MESSAGES.c.session_id == session_id)
            .order_by(_MESSAGES.c.position.desc())
            .limit(limit)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [MessageRecord(**row) for row in reversed(rows)]

    async def session_agent(self, workspace_id: str, session_id: str) -> str:
        """The id of the agent a session talks to."""
        query = select_columns(_SESSIONS.c.agent_id).where(
            _SESSIONS.c.id == session_id, _SESSIONS.c.workspace_id == workspace_id
        )
        async with self.engine.connect() as connection:
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
        first = await self._batcher.write(work)
        if not new_session:
            if first is None:
                raise SessionNotFound(session_id)
            for offset, message in enumerate(stored):
                message.position = first + offset
        return stored

    # Idempotency

    async def claim_idempotency_key(
        self,
        record: IdempotencyKey,
        *,
        stale_before: datetime,
    ) -> IdempotencyKey | None:
        """Reserves `record`'s key for its API key in a transaction of its own. Returns None
        when this call holds the reservation now (new, or taken over from a `running` one last
        touched before `stale_before`), else the reservation that holds the key."""
        table = IdempotencyKey.__table__  # type: ignore[attr-defined]
        dialect_insert = sqlite_insert if self._sqlite else postgresql_insert
        statement = (
            dialect_insert(table)
            .values(record.model_dump())
            .on_conflict_do_nothing()
            .returning(table.c.key)
        )
        async with self._writing() as db:
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
        found = await self.find_idempotency_key(record.api_key_id, record.key)
        # Released between the insert and this read: the caller tries again.
        return (
            found
            if found is not None
            else await self.claim_idempotency_key(record, stale_before=stale_before)
        )

    async def find_idempotency_key(self, api_key_id: str, key: str) -> IdempotencyKey | None:
        async with self.session() as db:
            return await db.get(IdempotencyKey, (api_key_id, key))

    async def finish_idempotency_key(self, api_key_id: str, key: str, response: bytes) -> None:
        """Stores the result of a reserved key, for replays."""
        async with self._writing() as db:
            await db.exec(
                update(IdempotencyKey)
                .where(col(IdempotencyKey.api_key_id) == api_key_id, col(IdempotencyKey.key) == key)
                .values(state="done", response=response, updated_at=utcnow())
            )
            await db.commit()

    async def release_idempotency_key(self, api_key_id: str, key: str) -> None:
        """Frees a reserved key whose turn failed, so that a retry runs it again."""
        async with self._writing() as db:
            await db.exec(
                delete(IdempotencyKey).where(
                    col(IdempotencyKey.api_key_id) == api_key_id,
                    col(IdempotencyKey.key) == key,
                    col(IdempotencyKey.state) == "running",
                )
            )
            await db.commit()

    async def server_secret(self, name: str) -> bytes:
        """A random key made once per database by the migrations."""
        async with self.session() as db:
            row = await db.get(ServerSecret, name)
        if row is None:
            raise RuntimeError(f"the database has no server secret {name!r}; run the migrations")
        return row.value

    async def count_usage(self, workspace_id: str) -> int:
        async with self.session() as db:
            total = await db.scalar(
                select(func.coalesce(func.sum(UsageRecord.total_tokens), 0)).where(
                    col(UsageRecord.workspace_id) == workspace_id
                )
            )
        return int(total or 0)
