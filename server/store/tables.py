"""The tables, declared once with SQLModel. The Alembic migrations create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class Workspace(SQLModel, table=True):
    """A tenant: its keys, agents, sessions and usage are its own."""

    __tablename__ = "workspaces"

    id: str = Field(primary_key=True)
    name: str
    # Tokens left; None means unmetered.
    token_balance: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    """An API key of a workspace, stored as the hash of its secret."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True)
    display_name: str = ""
    kind: str = "secret"
    secret_hash: str = Field(unique=True)
    prefix: str
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    allowed_agents: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    allowed_origins: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    # Chat limits over any sliding minute; None means unlimited.
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


class Agent(SQLModel, table=True):
    """An agent's draft config, and the number of its latest published version (0: none)."""

    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("workspace_id", "slug"),)

    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True)
    slug: str | None = None
    # The draft configuration, as the proto JSON of `switchboard.v1.Agent`.
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    latest_version: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AgentVersion(SQLModel, table=True):
    """A published version of an agent: its config as it was, never changed."""

    __tablename__ = "agent_versions"

    agent_id: str = Field(foreign_key="agents.id", primary_key=True)
    version: int = Field(primary_key=True)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class KnowledgeDocument(SQLModel, table=True):
    """A document of an agent's knowledge; its passages are what searches rank."""

    __tablename__ = "knowledge_documents"
    __table_args__ = (
        # A source names one document of an agent; adding it again replaces that document.
        Index(
            "ux_knowledge_documents_agent_source",
            "agent_id",
            "source",
            unique=True,
            sqlite_where=text("source <> ''"),
            postgresql_where=text("source <> ''"),
        ),
    )

    id: str = Field(primary_key=True)
    agent_id: str = Field(foreign_key="agents.id", index=True)
    title: str = ""
    content: str = Field(sa_column=Column(Text, nullable=False))
    mime_type: str = "text/markdown"
    passage_count: int = 0
    # Where the document came from (a file's path), or empty.
    source: str = ""
    # SHA-256 of `content`, hex: a re-sent file with the same hash is unchanged.
    content_hash: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class KnowledgeTerm(SQLModel, table=True):
    """Per-agent statistics of the indexed terms: in how many of the agent's passages a term
    occurs, and how often in all. The empty term counts the agent's passages and all their
    terms. Searches read these to pick the rarest terms of a question and to score passages
    against the agent's own knowledge only."""

    __tablename__ = "knowledge_terms"

    agent_id: str = Field(primary_key=True)
    term: str = Field(primary_key=True)
    passages: int = 0
    occurrences: int = 0


class Passage(SQLModel, table=True):
    """A ranked unit of knowledge. Its analysed terms (see `server.knowledge`) are indexed:
    on SQLite in the agent's own FTS5 table (rowid = id), on PostgreSQL in the tsvector
    column `search`, which the migrations add (title weight A, heading B, text D)."""

    __tablename__ = "passages"

    id: int | None = Field(default=None, primary_key=True)
    document_id: str = Field(foreign_key="knowledge_documents.id", index=True)
    agent_id: str = Field(index=True)
    position: int
    # The markdown heading above the passage: searched, not replied.
    heading: str = ""
    text: str = Field(sa_column=Column(Text, nullable=False))


class Session(SQLModel, table=True):
    """A conversation with one agent; `last_position` is the position its last message took."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_workspace_agent", "workspace_id", "agent_id"),)

    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True)
    agent_id: str = Field(foreign_key="agents.id")
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The last position handed out; turns reserve theirs atomically by bumping it.
    last_position: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Message(SQLModel, table=True):
    """One message; rows are inserted, never updated."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("session_id", "position"),)

    id: str = Field(primary_key=True)
    session_id: str = Field(foreign_key="sessions.id")
    position: int
    role: str
    content: str = Field(sa_column=Column(Text, nullable=False))
    status: str = "complete"
    agent_version: int | None = None
    backend: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int | None = None
    time_to_first_token_ms: int | None = None
    sources: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = Field(default_factory=utcnow)
    # Assistant messages of a tool step: `[{"id", "name", "arguments"}]`.
    tool_calls: list[dict[str, str]] | None = Field(default=None, sa_column=Column(JSON))
    # Tool messages: the call they answer, and whether the tool failed.
    tool_call_id: str | None = None
    tool_error: bool = False


class UsageRecord(SQLModel, table=True):
    """Tokens of one completion, per key, agent and session."""

    __tablename__ = "usage_records"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: str = Field(index=True)
    key_id: str | None = Field(default=None, index=True)
    agent_id: str
    session_id: str
    message_id: str | None = None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    created_at: datetime = Field(default_factory=utcnow)


class IdempotencyKey(SQLModel, table=True):
    """An `idempotency-key` sent with a turn, reserved by the API key that sent it before the
    turn runs: `running` until the turn ends, then `done` with the response to replay."""

    __tablename__ = "idempotency_keys"

    api_key_id: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    workspace_id: str
    method: str
    request_hash: str
    state: str = "running"
    response: bytes | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ServerSecret(SQLModel, table=True):
    """Random keys made once per database and shared by every replica (page-token signing)."""

    __tablename__ = "server_secrets"

    name: str = Field(primary_key=True)
    value: bytes
    created_at: datetime = Field(default_factory=utcnow)
