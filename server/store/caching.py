"""What a replica remembers of the store: a generation that every cached write bumps, and a
timed read-through cache keyed on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

# How long a replica trusts what it read of keys, agents and knowledge rankings. Changes made
# through this replica apply at once; changes made through another replica within this time.
CACHE_SECONDS = 1.0


class Generation:
    """A counter that every write to keys, agents or knowledge bumps. Workers of one
    `switchboard serve` share it (a `multiprocessing.Value`), so that what one of them changes
    is never served stale from another's cache."""

    def __init__(self, shared: Any = None) -> None:
        self._shared = shared
        self._local = 0

    @property
    def value(self) -> int:
        """The current generation."""
        return int(self._shared.value) if self._shared is not None else self._local

    def bump(self) -> None:
        """Moves on to the next generation, so that every cached entry expires."""
        if self._shared is None:
            self._local += 1
            return
        with self._shared.get_lock():
            self._shared.value += 1


class TimedCache:
    """A small read-through cache. Entries expire after `CACHE_SECONDS`, or at once when the
    generation moves on. Concurrent misses of one key share a single load."""

    def __init__(self, generation: Generation) -> None:
        self._generation = generation
        self._entries: dict[Any, tuple[float, int, Any]] = {}
        self._loading: dict[Any, asyncio.Future[Any]] = {}

    async def fetch(self, key: Any, load: Callable[[], Awaitable[T]]) -> T:
        """The cached value of `key`, or what `load` returns (then cached)."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] >= time.monotonic():
            if entry[1] == self._generation.value:
                return entry[2]
        pending = self._loading.get(key)
        if pending is None:
            pending = self._loading[key] = asyncio.ensure_future(self._load(key, load))
        return await asyncio.shield(pending)

    async def _load(self, key: Any, load: Callable[[], Awaitable[T]]) -> T:
        generation = self._generation.value
        try:
            value = await load()
        finally:
            del self._loading[key]
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + CACHE_SECONDS, generation, value)
        return value
