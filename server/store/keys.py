"""API keys: stored hashed, found by their secret through a cache, listed and revoked within
their workspace."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select

from server import ids
from server.errors import NotFound, clip
from server.store.caching import TimedCache
from server.store.database import Database
from server.store.tables import ApiKey, utcnow


class Keys:
    """The API keys of every workspace."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._found = TimedCache(database.generation)

    async def create(
        self,
        workspace_id: str,
        *,
        display_name: str,
        kind: str,
        scopes: Sequence[str],
        allowed_agents: Sequence[str] = (),
        allowed_origins: Sequence[str] = (),
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> tuple[ApiKey, str]:
        """Stores a new key and returns it with its secret, which is not stored."""
        secret = ids.new_secret("pk" if kind == "publishable" else "sk")
        key = ApiKey(
            id=ids.new_id("key"),
            workspace_id=workspace_id,
            display_name=display_name,
            kind=kind,
            secret_hash=ids.hash_secret(secret),
            prefix=secret[:7],
            scopes=list(scopes),
            allowed_agents=list(allowed_agents),
            allowed_origins=list(allowed_origins),
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )
        async with self._database.writing() as db:
            db.add(key)
            await db.commit()
        return key, secret

    async def find(self, secret: str) -> ApiKey | None:
        """The live key with this secret, or None."""
        digest = ids.hash_secret(secret)
        # Unknown secrets are remembered too (as False), so guessing costs no queries.
        found: ApiKey | bool = await self._found.fetch(digest, lambda: self._load(digest))
        return found if isinstance(found, ApiKey) else None

    async def _load(self, digest: str) -> ApiKey | bool:
        async with self._database.session() as db:
            result = await db.exec(select(ApiKey).where(col(ApiKey.secret_hash) == digest))
            key = result.first()
        return key if key is not None and key.revoked_at is None else False

    async def list_page(self, workspace_id: str, *, limit: int, after: str | None) -> list[ApiKey]:
        """The workspace's keys by id, after `after`."""
        query = select(ApiKey).where(col(ApiKey.workspace_id) == workspace_id)
        if after:
            query = query.where(col(ApiKey.id) > after)
        async with self._database.session() as db:
            result = await db.exec(query.order_by(ApiKey.id).limit(limit))
            return list(result)

    async def revoke(self, workspace_id: str, key_id: str) -> ApiKey:
        """Revokes a key of the workspace (once; revoking again changes nothing)."""
        async with self._database.writing() as db:
            key = await db.get(ApiKey, key_id)
            if key is None or key.workspace_id != workspace_id:
                raise NotFound(f"key {clip(key_id)!r} does not exist", reason="KEY_NOT_FOUND")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                db.add(key)
                await db.commit()
            self._database.generation.bump()
            return key
