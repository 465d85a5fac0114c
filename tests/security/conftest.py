"""Fixtures of the security suite: the gRPC and HTTP clients of the shared server, and
servers of their own on SQLite or PostgreSQL for the concurrency tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text

from server.store.database import sync_url
from tests.conftest import RunningServer
from tests.grpc.conftest import (  # noqa: F401
    auth,
    channel,
    key_with_scopes,
    make_agent,
    stubs,
)
from tests.http.conftest import anonymous, async_http, http  # noqa: F401


@pytest.fixture(scope="session")
def pg_server(
    server_factory: Callable[..., contextlib.AbstractContextManager[RunningServer]],
    postgresql_url: str,
) -> Iterator[RunningServer]:
    """A server of its own on PostgreSQL, for what must hold on the replicas' database."""
    with server_factory(database_url=postgresql_url) as running:
        yield running


@pytest.fixture(params=["sqlite", "postgresql"])
def any_server(request: pytest.FixtureRequest) -> RunningServer:
    """The shared SQLite server, then the PostgreSQL one."""
    return request.getfixturevalue("server" if request.param == "sqlite" else "pg_server")


def count_rows(server: RunningServer, table: str, **where: str) -> int:
    """Rows of `table` matching `where`, read straight from the server's database."""
    engine = create_engine(sync_url(server.database_url))
    try:
        with engine.connect() as connection:
            clause = " AND ".join(f"{column} = :{column}" for column in where) or "1 = 1"
            query = text(f"SELECT count(*) FROM {table} WHERE {clause}")
            return int(connection.execute(query, where).scalar_one())
    finally:
        engine.dispose()
