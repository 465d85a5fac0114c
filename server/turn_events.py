"""What a turn yields as it runs, for the services to frame for their door: it started, a piece
of the reply, a tool call and its result, and the stored turn at its end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from server.backends import ToolCall, ToolResult
from server.limits import LimitState
from server.store.sessions import MessageRecord


@dataclass(frozen=True, slots=True)
class TurnStarted:
    """The turn was admitted: its session, and the agent version and backend that answer."""

    session_id: str
    agent_id: str
    version: int
    backend: str
    # What a rate-limited key has left, for the response headers.
    limits: LimitState | None = None


@dataclass(frozen=True, slots=True)
class ContentDelta:
    """The next piece of the reply, through the output rails."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """A tool call the model asked for, about to run."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    """What a tool call answered, fed to the model in the next step."""

    result: ToolResult


@dataclass(frozen=True, slots=True)
class TurnDone:
    """The end of a turn: its messages as stored, quick replies and finish reason."""

    # The turn's incoming messages, its tool exchange, then its reply, as stored.
    messages: Sequence[MessageRecord]
    reply: MessageRecord
    quick_replies: Sequence[str]
    # OpenAI's `finish_reason`: `stop`, `length` or `content_filter`.
    finish_reason: str = "stop"


TurnEvent = TurnStarted | ContentDelta | ToolCallStarted | ToolCallFinished | TurnDone
