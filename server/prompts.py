"""The prompt a model backend is given: the agent's instructions grounded in its knowledge, and
as much of the session's history as fits the context budget, newest turns first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from switchboard.v1 import agent_pb2

from server.store.search import ScoredPassage
from server.store.sessions import HistoryMessage

# Tokens are estimated, never counted with a model's vocabulary (these servers are offline):
# a token per three characters overestimates every common tokenizer, plus a few per message.
_CHARS_PER_TOKEN = 3
_TOKENS_PER_MESSAGE = 4


def estimate_tokens(message: dict[str, Any]) -> int:
    """An overestimate of a message's tokens: one per three characters, plus a few."""
    size = len(message.get("content") or "")
    for call in message.get("tool_calls") or ():
        size += len(call["function"]["name"]) + len(call["function"]["arguments"])
    return _TOKENS_PER_MESSAGE + -(-size // _CHARS_PER_TOKEN)


def system_message(agent: agent_pb2.Agent, passages: Sequence[ScoredPassage]) -> str:
    """The agent's instructions, then the retrieved passages, each labelled to be cited."""
    parts = [agent.instructions.strip()] if agent.instructions.strip() else []
    if passages:
        lines = [
            "Answer from the knowledge passages below when they are relevant, and cite the "
            "passages you use by their label, e.g. [1]."
        ]
        for index, passage in enumerate(passages, start=1):
            title = f"{passage.title} " if passage.title else ""
            lines.append(f"[{index}] {title}(passage {passage.position}):\n{passage.text}")
        parts.append("\n\n".join(lines))
    return "\n\n".join(parts)


def stored_message(record: HistoryMessage) -> dict[str, Any]:
    """A stored message in OpenAI's message shape."""
    message: dict[str, Any] = {"role": record.role, "content": record.content}
    if record.tool_calls:
        message["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for call in record.tool_calls
        ]
    if record.role == "tool":
        message["tool_call_id"] = record.tool_call_id or ""
    return message


def fit_history(records: Sequence[HistoryMessage], budget: int) -> list[dict[str, Any]]:
    """The newest whole turns of `records` (oldest first) whose estimate fits `budget` tokens.
    A turn starts at a user message, so a tool result never loses the call it answers."""
    turns: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    for record in records:
        if not record.content and not record.tool_calls:
            continue
        message = stored_message(record)
        if record.role == "user" and current:
            turns.append(current)
            current = []
        current.append(message)
    if current:
        turns.append(current)
    kept: list[list[dict[str, Any]]] = []
    for turn in reversed(turns):
        cost = sum(estimate_tokens(message) for message in turn)
        if cost > budget:
            break
        budget -= cost
        kept.append(turn)
    # The oldest kept turn may begin mid-turn (the read limit cut it): drop leading replies.
    history = [message for turn in reversed(kept) for message in turn]
    while history and history[0]["role"] in ("assistant", "tool"):
        history.pop(0)
    return history


def tool_calls_json(calls: Sequence[Any]) -> list[dict[str, str]]:
    """Tool calls as stored with their assistant message."""
    return [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
