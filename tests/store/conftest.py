"""The store suite runs against SQLite and PostgreSQL alike.

PostgreSQL comes from `SWITCHBOARD_TEST_POSTGRES_URL` (default: the `test` database on
127.0.0.1:5432); each run creates a uniquely named database and drops it afterwards. Without a
reachable PostgreSQL its tests are skipped with the reason, except under CI (`CI=true`), where
that fails the run."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from server.store.database import create_engine, migrate
from server.store.repository import Repository

POSTGRES_URL = os.environ.get(
    "SWITCHBOARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _admin_conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    name = f"switchboard_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(_admin_conninfo(POSTGRES_URL), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable under CI: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
            migrate(url)
            yield url
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
async def repository(request: pytest.FixtureRequest) -> AsyncIterator[Repository]:
    url = request.getfixturevalue(f"{request.param}_url")
    repository = Repository(create_engine(url))
    try:
        yield repository
    finally:
        await repository.close()


@pytest.fixture
async def workspace(repository: Repository) -> str:
    workspace_id = f"ws_{uuid.uuid4().hex[:12]}"
    await repository.ensure_workspace(workspace_id, "test")
    return workspace_id
