"""The async engine and the schema migrations applied at start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def is_sqlite(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "sqlite"


def sync_url(database_url: str) -> str:
    """The same database through a synchronous driver, for Alembic."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        url = url.set(drivername="sqlite")
    return url.render_as_string(hide_password=False)


def migrate(database_url: str) -> None:
    """Bring the schema to the newest migration. Safe to run on every start."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(database_url).replace("%", "%%"))
    command.upgrade(config, "head")


def create_engine(database_url: str) -> AsyncEngine:
    if not is_sqlite(database_url):
        return create_async_engine(database_url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    # Readers run concurrently under WAL; the repository queues this process's writers.
    engine = create_async_engine(
        database_url,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=4,
        max_overflow=0,
        # Every transaction here ends in an explicit COMMIT or ROLLBACK, and pysqlite opens
        # none for plain reads, so returning a connection needs no extra ROLLBACK round trip.
        pool_reset_on_return=None,
        connect_args={"timeout": 30},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine
