"""knowledge ranked inside the index: analysed terms, per-agent statistics, document sources

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.knowledge import content_hash
from server.store.search import sqlite_table, sync_rebuild_agent

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    with op.batch_alter_table("knowledge_documents") as batch:
        batch.add_column(sa.Column("source", sa.String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("content_hash", sa.String(), nullable=False, server_default=""))
    op.create_index(
        "ux_knowledge_documents_agent_source",
        "knowledge_documents",
        ["agent_id", "source"],
        unique=True,
        sqlite_where=sa.text("source <> ''"),
        postgresql_where=sa.text("source <> ''"),
    )
    documents = bind.execute(sa.text("SELECT id, content FROM knowledge_documents")).all()
    if documents:
        bind.execute(
            sa.text("UPDATE knowledge_documents SET content_hash = :hash WHERE id = :id"),
            [
                {"id": document_id, "hash": content_hash(content)}
                for document_id, content in documents
            ],
        )
    op.create_table(
        "knowledge_terms",
        sa.Column("agent_id", sa.String(), nullable=False),
        sa.Column("term", sa.String(), nullable=False),
        sa.Column("passages", sa.Integer(), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "term"),
    )
    # The index held raw text ranked in Python; it now holds analysed terms ranked inside it.
    if sqlite:
        op.execute("DROP TABLE passage_index")
    else:
        op.execute("DROP INDEX ix_passages_search")
        op.execute("ALTER TABLE passages DROP COLUMN search")
        op.execute("ALTER TABLE passages ADD COLUMN search tsvector NOT NULL DEFAULT ''")
    agents = bind.execute(sa.text("SELECT DISTINCT agent_id FROM passages")).scalars().all()
    for agent_id in agents:
        sync_rebuild_agent(bind, agent_id, sqlite)
    if not sqlite:
        # A composite GIN index, so that the agent restricts the full-text match itself. It
        # also serves lookups by agent alone: with a B-tree on agent_id beside it, the planner
        # (before statistics exist) filtered all of an agent's passages instead. Entries go
        # straight into it, not through a pending list that every search would scan after a
        # bulk load.
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
        op.execute("DROP INDEX ix_passages_agent_id")
        op.execute(
            "CREATE INDEX ix_passages_agent_search ON passages "
            "USING gin (agent_id, search) WITH (fastupdate = off)"
        )
        op.execute("ANALYZE passages")


def downgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    agents = bind.execute(sa.text("SELECT id FROM agents")).scalars().all()
    if sqlite:
        for agent_id in agents:
            op.execute(f"DROP TABLE IF EXISTS {sqlite_table(agent_id)}")
        op.execute(
            "CREATE VIRTUAL TABLE passage_index "
            "USING fts5(heading, text, tokenize='porter unicode61')"
        )
        op.execute(
            "INSERT INTO passage_index(rowid, heading, text) SELECT id, heading, text FROM passages"
        )
    else:
        op.execute("DROP INDEX ix_passages_agent_search")
        op.execute("CREATE INDEX ix_passages_agent_id ON passages (agent_id)")
        op.execute("ALTER TABLE passages DROP COLUMN search")
        op.execute(
            "ALTER TABLE passages ADD COLUMN search tsvector "
            "GENERATED ALWAYS AS (to_tsvector('english', heading || ' ' || text)) STORED"
        )
        op.execute("CREATE INDEX ix_passages_search ON passages USING gin (search)")
    op.drop_table("knowledge_terms")
    op.drop_index("ux_knowledge_documents_agent_source", table_name="knowledge_documents")
    with op.batch_alter_table("knowledge_documents") as batch:
        batch.drop_column("content_hash")
        batch.drop_column("source")
