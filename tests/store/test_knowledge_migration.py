"""Migration 0004 on SQLite and PostgreSQL: passages stored before it are indexed anew, with
their statistics, and found as before; a downgrade and an upgrade again keep them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from server.knowledge import search_terms
from server.store import Store
from server.store.database import _MIGRATIONS, sync_url
from server.store.database import create_engine as create_async_engine
from tests.conftest import POSTGRES_URL


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    request.getfixturevalue("postgresql_url")  # skips without PostgreSQL, as the suite does
    name = f"switchboard_migration_{uuid.uuid4().hex[:10]}"
    admin_url = make_url(POSTGRES_URL).set(drivername="postgresql")
    with psycopg.connect(admin_url.render_as_string(hide_password=False), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_passages_stored_before_0004_are_indexed_anew(empty_database: str) -> None:
    command.upgrade(_config(empty_database), "0003")
    engine = create_engine(sync_url(empty_database))
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO workspaces (id, name, created_at) VALUES ('ws', 'w', :now)"),
            {"now": "2026-01-01"},
        )
        connection.execute(
            text(
                "INSERT INTO agents (id, workspace_id, config, latest_version, created_at, "
                "updated_at) VALUES ('agt_old', 'ws', '{}', 0, :now, :now)"
            ),
            {"now": "2026-01-01"},
        )
        connection.execute(
            text(
                "INSERT INTO knowledge_documents (id, agent_id, title, content, mime_type, "
                "passage_count, created_at) VALUES ('doc_old', 'agt_old', 'Parcels', 'x', "
                "'text/plain', 2, :now)"
            ),
            {"now": "2026-01-01"},
        )
        connection.execute(
            text(
                "INSERT INTO passages (id, document_id, agent_id, position, heading, text) "
                "VALUES (1, 'doc_old', 'agt_old', 0, 'Norway', 'Parcels to Norway arrive "
                "within nine days.'), (2, 'doc_old', 'agt_old', 1, '', 'Gift cards never expire.')"
            )
        )
        if engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    "INSERT INTO passage_index (rowid, heading, text) "
                    "SELECT id, heading, text FROM passages"
                )
            )
    engine.dispose()

    async def search() -> list[str]:
        store = Store(create_async_engine(empty_database))
        try:
            found = await store.knowledge.search_passages(
                "agt_old", search_terms("When do parcels to Norway arrive?"), limit=3
            )
            return [p.text for p in found]
        finally:
            await store.close()

    command.upgrade(_config(empty_database), "head")
    assert (await search())[0] == "Parcels to Norway arrive within nine days."
    command.downgrade(_config(empty_database), "0003")
    command.upgrade(_config(empty_database), "head")
    assert (await search())[0] == "Parcels to Norway arrive within nine days."
