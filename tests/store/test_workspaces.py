"""Workspaces' balances as turns read them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import event

from server.store import Store
from server.store.caching import CACHE_SECONDS
from server.store.database import Database
from server.store.workspaces import Workspaces


class _Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now


def _count_balance_reads(database: Database) -> list[str]:
    reads: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "token_balance" in statement and statement.lstrip().upper().startswith("SELECT"):
            reads.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    return reads


async def test_turns_finding_an_unmetered_entry_expired_share_one_read(
    store: Store, workspace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    monkeypatch.setattr("server.store.workspaces.time", clock)
    workspaces = Workspaces(store.database)
    assert await workspaces.balance(workspace) is None
    reads = _count_balance_reads(store.database)
    clock.now += CACHE_SECONDS + 1
    balances = await asyncio.gather(*(workspaces.balance(workspace) for _ in range(16)))
    assert balances == [None] * 16
    assert len(reads) == 1


async def test_a_metered_workspace_is_read_by_every_turn(store: Store, workspace: str) -> None:
    workspaces = Workspaces(store.database)
    await workspaces.set_balance(workspace, 100)
    reads = _count_balance_reads(store.database)
    balances = await asyncio.gather(*(workspaces.balance(workspace) for _ in range(4)))
    assert balances == [100] * 4
    assert len(reads) == 4
