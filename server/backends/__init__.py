"""Model backends: what writes an agent's reply. Each streams one step of a turn as events:
text deltas, then the tool calls the model asked for (if any), and the usage it reported."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from switchboard.v1 import agent_pb2

from server.store.search import ScoredPassage


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call of one of the agent's tools, as the model asked for it."""

    id: str
    name: str
    # The arguments as the model wrote them: a JSON document, not yet checked.
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call answered, fed back to the model as the tool's message."""

    call_id: str
    name: str
    content: str
    is_error: bool
    # How the call ended, as `switchboard_tool_calls_total` counts it.
    outcome: str = "ok"


@dataclass(frozen=True, slots=True)
class TextDelta:
    """The next piece of the reply's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallsRequested:
    """The tool calls the model asked for, to run before the next step."""

    calls: Sequence[ToolCall]


@dataclass(frozen=True, slots=True)
class UsageReported:
    """The prompt and completion tokens the model reported for the step."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Finished:
    """Why the model stopped, when it says: OpenAI's `finish_reason` (`stop`, `length`, …)."""

    reason: str


BackendEvent = TextDelta | ToolCallsRequested | UsageReported | Finished


@dataclass(frozen=True, slots=True)
class TurnContext:
    """Everything a backend may read for one step of a turn."""

    agent: agent_pb2.Agent
    # The prompt in OpenAI's message shape: the grounded system message, the history that
    # fits the context budget, the new messages, and the tool exchanges of earlier steps.
    messages: Sequence[dict[str, Any]]
    # Knowledge passages that scored above the agent's threshold, best first.
    passages: Sequence[ScoredPassage] = field(default_factory=list)
    # The agent's tools as OpenAI function tools; empty when none may be called this step.
    tools: Sequence[dict[str, Any]] = field(default_factory=list)
    # The client's `response_format`, for backends that can honour it.
    response_format: dict[str, Any] | None = None


class ModelBackend(Protocol):
    """Streams one step of a reply."""

    def name(self, agent: agent_pb2.Agent) -> str:
        """How replies' metrics name this backend for `agent`."""
        ...

    def stream(self, turn: TurnContext) -> AsyncGenerator[BackendEvent, None]:
        """One step: text deltas, then any tool calls, the usage and why it stopped."""
        ...
