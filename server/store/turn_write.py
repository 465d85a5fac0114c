"""The rows one turn step writes: what the grouped writes of `server.store.batching` and the
SQLite writer of `server.store.sqlite_writer` both take."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TurnWrite:
    """The rows one turn step writes.

    With `reserve`, the session `(workspace_id, session_id)` hands out the next
    `len(messages)` positions atomically, and `messages` get them in order; otherwise
    `messages` carry their positions already."""

    sessions: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)
    reserve: tuple[str, str] | None = None
    # Tokens to debit from a metered workspace's balance, in the usage record's transaction,
    # so that the ledger and the balance always agree.
    debit: tuple[str, int] | None = None
