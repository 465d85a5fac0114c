"""The builtin backend: a deterministic knowledge responder that needs no network or model.

It answers with the best-ranked knowledge passage, or the agent's fallback reply when no
passage scored above the threshold, streamed as groups of words."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator

from switchboard.v1 import agent_pb2

from server.backends import BackendEvent, TextDelta, TurnContext

DEFAULT_FALLBACK_REPLY = (
    "I'm sorry, I don't have information about that. Could you rephrase, or ask about "
    "something else?"
)
_WORDS_PER_DELTA = 4
# A word with the whitespace after it, so that deltas concatenate to the exact reply.
_WORD_WITH_SPACE = re.compile(r"\S+\s*|\s+")
# The next delta: up to `_WORDS_PER_DELTA` of those.
_GROUP = re.compile(rf"(?:\S+\s*|\s+){{1,{_WORDS_PER_DELTA}}}")


class KnowledgeResponder:
    """The builtin backend: the best passage or the fallback reply, in groups of words."""

    def name(self, agent: agent_pb2.Agent) -> str:
        """`builtin`, whatever the agent."""
        return "builtin"

    async def stream(self, turn: TurnContext) -> AsyncGenerator[BackendEvent, None]:
        """The reply as groups of words, the agent's `delta_interval_ms` apart."""
        interval = turn.agent.backend.builtin.delta_interval_ms / 1000
        text = reply_text(turn)
        # Groups are cut as they are sent, not all at once: a paced reply holds only its text.
        position = 0
        while position < len(text):
            group = _GROUP.match(text, position)
            assert group is not None
            if interval and position:
                await asyncio.sleep(interval)
            position = group.end()
            yield TextDelta(group.group())


def reply_text(turn: TurnContext) -> str:
    """The best-ranked passage, else the agent's fallback reply, else the default one."""
    if turn.passages:
        return turn.passages[0].text
    return turn.agent.fallback_reply or DEFAULT_FALLBACK_REPLY


def word_groups(text: str, size: int = _WORDS_PER_DELTA) -> list[str]:
    """`text` cut into deltas of `size` words, each with the whitespace after it."""
    words = _WORD_WITH_SPACE.findall(text)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]
