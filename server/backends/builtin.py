"""The builtin backend: a deterministic knowledge responder that needs no network or model.

It answers with the best-ranked knowledge passage, or the agent's fallback reply when no
passage scored above the threshold, streamed as groups of words."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import re
from collections.abc import AsyncGenerator

from switchboard.v1 import agent_pb2

from server.backends import BackendEvent, TextDelta, TurnContext

DEFAULT_FALLBACK_REPLY = (
    "I'm sorry, I don't have information about that. Could you rephrase, or ask about "
    "something else?"
)
_WORDS_PER_DELTA = 4
_PACING_SLACK_SECONDS = 0.001
# A word with the whitespace after it, so that deltas concatenate to the exact reply.
_WORD_WITH_SPACE = re.compile(r"\S+\s*|\s+")
# The next delta: up to `_WORDS_PER_DELTA` of those.
_GROUP = re.compile(rf"(?:\S+\s*|\s+){{1,{_WORDS_PER_DELTA}}}")


class _Pacer:
    """Wakes the paced replies of an event loop from one timer: a waiting reply holds a
    future and a heap entry rather than a timer of its own (a timer, its handle and its
    context cost several times more, and a server may hold thousands of paced replies)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        # (when, order, future) of each wait, soonest first.
        self._due: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def wait(self, delay: float) -> asyncio.Future[None]:
        """A future done `delay` seconds from now."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new event loop: what waited on another one is no longer awaited.
            self._loop, self._due, self._timer, self._timer_at = loop, [], None, math.inf
        when = loop.time() + delay
        future = loop.create_future()
        heapq.heappush(self._due, (when, next(self._order), future))
        if when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(when, self._wake)
            self._timer_at = when
        return future

    def _wake(self) -> None:
        loop = asyncio.get_running_loop()
        # Waits due within a millisecond wake together, to fire the timer less often.
        now = loop.time() + _PACING_SLACK_SECONDS
        due = self._due
        while due and due[0][0] <= now:
            future = heapq.heappop(due)[2]
            if not future.done():
                future.set_result(None)
        if due:
            self._timer_at = due[0][0]
            self._timer = loop.call_at(self._timer_at, self._wake)
        else:
            self._timer, self._timer_at = None, math.inf


class KnowledgeResponder:
    """The builtin backend: the best passage or the fallback reply, in groups of words."""

    def __init__(self) -> None:
        self._pacer = _Pacer()

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
            if interval and position:
                await self._pacer.wait(interval)
            group, position = _next_group(text, position)
            yield TextDelta(group)


def _next_group(text: str, position: int) -> tuple[str, int]:
    """The group of words at `position` in `text`, and where the next one begins."""
    group = _GROUP.match(text, position)
    assert group is not None
    return group.group(), group.end()


def reply_text(turn: TurnContext) -> str:
    """The best-ranked passage, else the agent's fallback reply, else the default one."""
    if turn.passages:
        return turn.passages[0].text
    return turn.agent.fallback_reply or DEFAULT_FALLBACK_REPLY


def word_groups(text: str, size: int = _WORDS_PER_DELTA) -> list[str]:
    """`text` cut into deltas of `size` words, each with the whitespace after it."""
    words = _WORD_WITH_SPACE.findall(text)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]
