"""Alembic environment: runs the migrations on the configured URL with a synchronous driver."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from server.store import tables

target_metadata = tables.SQLModel.metadata


def run_migrations() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
