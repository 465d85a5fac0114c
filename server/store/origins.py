"""The browser origins that live publishable keys list, for CORS preflights (which carry no key)."""

from __future__ import annotations

import asyncio
import time

from sqlmodel import col, select

from server.store.caching import CACHE_SECONDS
from server.store.database import Database
from server.store.tables import ApiKey


class ListedOrigins:
    """Answers whether any live publishable key, of any workspace, lists an origin. The set is
    read at most once per `CACHE_SECONDS`, so a flood of preflights costs no queries."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._origins: frozenset[str] = frozenset()
        self._expires = 0.0
        self._loading: asyncio.Future[frozenset[str]] | None = None

    async def is_listed(self, origin: str) -> bool:
        """Whether a live publishable key lists `origin`."""
        if time.monotonic() >= self._expires:
            if self._loading is None:
                self._loading = asyncio.ensure_future(self._load())
            await asyncio.shield(self._loading)
        return origin in self._origins

    async def _load(self) -> frozenset[str]:
        try:
            query = select(ApiKey.allowed_origins).where(
                col(ApiKey.kind) == "publishable", col(ApiKey.revoked_at).is_(None)
            )
            async with self._database.session() as db:
                rows = await db.exec(query)
                origins = frozenset(origin for listed in rows for origin in listed)
            self._origins, self._expires = origins, time.monotonic() + CACHE_SECONDS
            return origins
        finally:
            self._loading = None
