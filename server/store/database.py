"""The database: its URLs, its async engine, the schema migrations applied at start, and the
handle the store's repositories share."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool
from sqlmodel.ext.asyncio.session import AsyncSession

from server.store.batching import WriteBatcher
from server.store.caching import Generation
from server.store.tables import ServerSecret

_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseUrlError(ValueError):
    """A database URL that names no database Switchboard can use; the message says why."""


# The async driver of each database, whichever driver (or none) a URL names.
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_BACKEND_ALIASES = {"postgres": "postgresql"}


def async_url(database_url: str) -> str:
    """The URL with the async driver of its database: `sqlite:///x.db` becomes
    `sqlite+aiosqlite:///x.db`, `postgresql://…` (or `postgres://…`, or another driver)
    `postgresql+psycopg://…`. Raises `DatabaseUrlError` for anything else."""
    if "://" not in database_url:
        raise DatabaseUrlError(
            f"{database_url!r} is not a database URL; use sqlite:///FILE.db or "
            "postgresql://USER@HOST/DB"
        )
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise DatabaseUrlError(f"{safe_url(database_url)} is not a valid database URL") from None
    backend = url.get_backend_name()
    backend = _BACKEND_ALIASES.get(backend, backend)
    driver = _ASYNC_DRIVERS.get(backend)
    if driver is None:
        raise DatabaseUrlError(
            f"{safe_url(database_url)}: Switchboard stores its data in SQLite or PostgreSQL, "
            f"not {backend}"
        )
    if backend == "sqlite" and not url.database:
        raise DatabaseUrlError(
            f"{safe_url(database_url)} names no file; use sqlite:///FILE.db "
            "(sqlite:////abs/path.db for an absolute path)"
        )
    return url.set(drivername=driver).render_as_string(hide_password=False)


def safe_url(database_url: str) -> str:
    """The URL as messages may show it: without its password."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the database URL"


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    url: URL = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).resolve()


def is_sqlite(database_url: str) -> bool:
    """Whether the URL names a SQLite database."""
    return make_url(database_url).get_backend_name() == "sqlite"


def sync_url(database_url: str) -> str:
    """The same database through a synchronous driver, for Alembic."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        url = url.set(drivername="sqlite")
    return url.render_as_string(hide_password=False)


def migrate(database_url: str) -> None:
    """Bring the schema to the newest migration. Safe to run on every start: a schema already
    there is recognised without loading Alembic."""
    if schema_current(database_url):
        return
    # Alembic (with Mako) is loaded only to migrate, not by every process that opens the store.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(database_url).replace("%", "%%"))
    command.upgrade(config, "head")


def schema_current(database_url: str) -> bool:
    """Whether the schema is at the newest migration: Alembic's version table names exactly
    the heads of the migration scripts. A database that cannot be reached raises, as
    `migrate` would."""
    heads = _script_heads()
    path = sqlite_file(database_url)
    if heads is None or (is_sqlite(database_url) and (path is None or not path.exists())):
        return False
    engine = create_sync_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            try:
                rows = connection.execute(text("SELECT version_num FROM alembic_version"))
                versions = set(rows.scalars())
            except DBAPIError:
                return False
    finally:
        engine.dispose()
    return versions == heads


@functools.cache
def _script_heads() -> frozenset[str] | None:
    """The revisions that no migration script revises, as `upgrade head` reaches them; None if
    a script does not declare its revisions as literals."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in (_MIGRATIONS / "versions").glob("*.py"):
        declared = _declared_revisions(script)
        if declared is None:
            return None
        revisions.add(declared[0])
        revised.update(declared[1])
    return frozenset(revisions - revised) or None


def _declared_revisions(script: Path) -> tuple[str, tuple[str, ...]] | None:
    """A migration script's `revision` and the revisions its `down_revision` names."""
    declared: dict[str, object] = {}
    try:
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                declared[target.id] = ast.literal_eval(value)
    except (OSError, SyntaxError, ValueError, TypeError):
        return None
    revision, down = declared.get("revision"), declared.get("down_revision")
    downs = (down,) if isinstance(down, str) else () if down is None else down
    if not isinstance(revision, str) or not isinstance(downs, tuple | list):
        return None
    if not all(isinstance(d, str) for d in downs):
        return None
    return revision, tuple(downs)


def create_engine(database_url: str) -> AsyncEngine:
    """The async engine of `database_url`; its errors never quote parameters (message texts,
    key hashes), so that they can be logged."""
    if not is_sqlite(database_url):
        return create_async_engine(
            database_url,
            pool_size=10,
            max_overflow=10,
            pool_pre_ping=True,
            hide_parameters=True,
        )
    # Readers run concurrently under WAL; `Database.writing` queues this process's writers.
    engine = create_async_engine(
        database_url,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=4,
        max_overflow=0,
        # Every transaction here ends in an explicit COMMIT or ROLLBACK, and pysqlite opens
        # none for plain reads, so returning a connection needs no extra ROLLBACK round trip.
        pool_reset_on_return=None,
        connect_args={"timeout": 30},
        # Errors quote their statement but not its parameters: those hold message texts.
        hide_parameters=True,
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


class Database:
    """One database as the store's repositories share it: the engine, its sessions, the write
    transaction, the cache generation and the one unit of work for grouped turn writes."""

    def __init__(self, engine: AsyncEngine, generation: Generation | None = None) -> None:
        self.engine = engine
        self.sqlite = is_sqlite(str(engine.url))
        self.generation = generation or Generation()
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        # SQLite takes one writer at a time; this process's writes queue here rather than
        # failing with "database is locked". Reads run concurrently.
        self._write_lock = asyncio.Lock() if self.sqlite else None
        self.batcher = WriteBatcher(engine, self._write_lock)

    def session(self) -> AsyncSession:
        """A session for reads."""
        return self._sessions()

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """A session for a write transaction (on SQLite, holding this process's write lock)."""
        if self._write_lock is None:
            async with self.session() as db:
                yield db
            return
        async with self._write_lock, self.session() as db:
            yield db

    async def server_secret(self, name: str) -> bytes:
        """A random key made once per database by the migrations."""
        async with self.session() as db:
            row = await db.get(ServerSecret, name)
        if row is None:
            raise RuntimeError(f"the database has no server secret {name!r}; run the migrations")
        return row.value

    async def close(self) -> None:
        """Closes the engine's connections."""
        await self.engine.dispose()
