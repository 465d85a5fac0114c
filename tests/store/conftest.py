"""The store suite runs against SQLite and PostgreSQL alike.

PostgreSQL comes from `SWITCHBOARD_TEST_POSTGRES_URL` (default: the `test` database on
127.0.0.1:5432); each run creates a uniquely named database and drops it afterwards. Without a
reachable PostgreSQL its tests are skipped with the reason, except under CI (`CI=true`), where
that fails the run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from server.store import Store
from server.store.database import create_engine, migrate


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    url = request.getfixturevalue(f"{request.param}_url")
    store = Store(create_engine(url))
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def workspace(store: Store) -> str:
    workspace_id = f"ws_{uuid.uuid4().hex[:12]}"
    await store.workspaces.ensure(workspace_id, "test")
    return workspace_id
