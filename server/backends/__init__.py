"""Model backends: what writes an agent's reply. Each streams the reply as text deltas."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from switchboard.v1 import agent_pb2

from server.store.repository import ScoredPassage


@dataclass(frozen=True)
class TurnContext:
    """Everything a backend may read for one turn."""

    agent: agent_pb2.Agent
    # The conversation, oldest first, as (role, content); the new messages last.
    conversation: Sequence[tuple[str, str]]
    # Knowledge passages that scored above the agent's threshold, best first.
    passages: Sequence[ScoredPassage] = field(default_factory=list)


class ModelBackend(Protocol):
    """Streams a reply as text deltas whose concatenation is the reply."""

    @property
    def name(self) -> str: ...

    def stream_reply(self, turn: TurnContext) -> AsyncIterator[str]: ...
