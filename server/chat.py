"""One assistant turn, from the incoming messages to the stored reply.

`TurnRunner.run` validates the input, appends the incoming messages, ranks knowledge, streams
the backend's reply as `TurnEvent`s and stores the reply with its usage. A turn that is
cancelled or fails midway still stores its partial reply, marked incomplete."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from google.protobuf import json_format
from switchboard.v1 import agent_pb2

from server import ids
from server.auth import Principal, published_agent_for
from server.backends import ModelBackend, TurnContext
from server.backends.builtin import KnowledgeResponder
from server.errors import FailedPrecondition, InvalidArgument, clip
from server.knowledge import count_tokens, search_terms
from server.store.repository import MessageRecord, PublishedAgent, Repository, ScoredPassage
from server.store.tables import utcnow

log = logging.getLogger(__name__)

ROLES = ("system", "developer", "user", "assistant", "tool")
DEFAULT_TOP_K = 3
DEFAULT_MIN_SCORE = 0.05


@dataclass(frozen=True)
class TurnStarted:
    session_id: str
    agent_id: str
    version: int
    backend: str


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class TurnDone:
    # The turn's incoming messages, then its reply, as stored.
    messages: Sequence[MessageRecord]
    reply: MessageRecord
    quick_replies: Sequence[str]


TurnEvent = TurnStarted | ContentDelta | TurnDone


@dataclass(frozen=True)
class TurnRequest:
    """A turn as the services hand it over: the agent, the session if any, the new
    `(role, content)` messages, and labels for a new session."""

    agent: str
    messages: Sequence[tuple[str, str]]
    session_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # Set when the caller's request carries its one message as a text field (SendMessage's
    # `content`): field violations then name that field instead of `messages[i].content`.
    content_field: str | None = None


class TurnRunner:
    def __init__(self, repository: Repository) -> None:
        self._repository = repository
        self._builtin = KnowledgeResponder()
        self._configs: dict[tuple[str, int], agent_pb2.Agent] = {}

    async def run(
        self, principal: Principal, request: TurnRequest
    ) -> AsyncGenerator[TurnEvent, None]:
        started = time.perf_counter()
        _validate_messages(request)
        published = await published_agent_for(self._repository, principal, request.agent)
        agent = self._config(published)
        _apply_input_rails(agent, request)
        history: list[MessageRecord] = []
        session_id = request.session_id
        if session_id is not None:
            owner = await self._repository.session_agent(principal.workspace_id, session_id)
            principal.check_session_agent(owner, session_id)
            if owner != published.agent.id:
                raise FailedPrecondition(
                    f"session {clip(session_id)!r} belongs to another agent",
                    reason="SESSION_AGENT_MISMATCH",
                )
            history = [m for m in await self._repository.list_messages(session_id) if m.content]
        else:
            session_id = ids.new_id("sess")
        backend = self._backend(agent)
        conversation = [(m.role, m.content) for m in history] + list(request.messages)
        if agent.instructions:
            conversation.insert(0, ("system", agent.instructions))

        passages: list[ScoredPassage] = []
        parts: list[str] = []
        first_token_at: float | None = None
        complete = False
        try:
            yield TurnStarted(session_id, published.agent.id, published.version, backend.name)
            passages = await self._rank(published.agent.id, agent, request.messages)
            turn = TurnContext(agent=agent, conversation=conversation, passages=passages)
            async for delta in backend.stream_reply(turn):
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                parts.append(delta)
                yield ContentDelta(delta)
            complete = True
        finally:
            # The whole turn is written once it ends, whether it completed, was cancelled or
            # failed: the incoming messages always, the reply unless nothing of it was made.
            # Shielded, so that a cancelled turn is still written.
            reply_text = "".join(parts)
            reply, usage = None, None
            if complete or reply_text:
                reply, usage = self._reply_records(
                    principal,
                    session_id,
                    published,
                    backend.name,
                    reply_text,
                    complete=complete,
                    conversation=conversation,
                    passages=passages,
                    started=started,
                    first_token_at=first_token_at,
                )
            stored = await asyncio.shield(
                self._repository.record_turn(
                    principal.workspace_id,
                    agent_id=published.agent.id,
                    session_id=session_id,
                    new_session=request.session_id is None,
                    labels=request.labels,
                    messages=request.messages,
                    reply=reply,
                    usage=usage,
                )
            )
        assert reply is not None
        yield TurnDone(stored, reply, list(agent.quick_replies))

    async def run_to_end(
        self, principal: Principal, request: TurnRequest
    ) -> tuple[TurnStarted, TurnDone]:
        """Runs a turn for a caller that wants the whole reply at once."""
        started: TurnStarted | None = None
        done: TurnDone | None = None
        async with aclosing(self.run(principal, request)) as events:
            async for event in events:
                if isinstance(event, TurnStarted):
                    started = event
                elif isinstance(event, TurnDone):
                    done = event
        assert started is not None and done is not None
        return started, done

    def _config(self, published: PublishedAgent) -> agent_pb2.Agent:
        key = (published.agent.id, published.version)
        agent = self._configs.get(key)
        if agent is None:
            agent = json_format.ParseDict(
                published.config, agent_pb2.Agent(), ignore_unknown_fields=True
            )
            self._configs[key] = agent
        return agent

    def _backend(self, agent: agent_pb2.Agent) -> ModelBackend:
        if agent.backend.WhichOneof("kind") == "openai_compatible":
            raise FailedPrecondition(
                "the openai_compatible backend is not available on this server yet",
                reason="BACKEND_NOT_SUPPORTED",
            )
        return self._builtin

    async def _rank(
        self, agent_id: str, agent: agent_pb2.Agent, messages: Sequence[tuple[str, str]]
    ) -> list[ScoredPassage]:
        question = next((c for r, c in reversed(messages) if r == "user"), "")
        top_k = agent.knowledge.top_k or DEFAULT_TOP_K
        min_score = agent.knowledge.min_score or DEFAULT_MIN_SCORE
        ranked = await self._repository.search_passages(
            agent_id, search_terms(question), limit=top_k
        )
        return [p for p in ranked if p.score >= min_score]

    @staticmethod
    def _reply_records(
        principal: Principal,
        session_id: str,
        published: PublishedAgent,
        backend: str,
        text: str,
        *,
        complete: bool,
        conversation: Sequence[tuple[str, str]],
        passages: Sequence[ScoredPassage],
        started: float,
        first_token_at: float | None,
    ) -> tuple[MessageRecord, dict[str, object]]:
        now = time.perf_counter()
        prompt_tokens = sum(count_tokens(content) for _, content in conversation)
        completion_tokens = count_tokens(text)
        reply = MessageRecord(
            id=ids.new_id("msg"),
            session_id=session_id,
            position=0,
            role="assistant",
            content=text,
            created_at=utcnow(),
            status="complete" if complete else "incomplete",
            agent_version=published.version,
            backend=backend,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=round((now - started) * 1000),
            time_to_first_token_ms=(
                round((first_token_at - started) * 1000) if first_token_at else None
            ),
            sources=[
                {
                    "document": f"agents/{published.agent.id}/documents/{p.document_id}",
                    "title": p.title,
                    "passage": p.position,
                    "score": round(p.score, 6),
                    "text": p.text,
                }
                for p in passages
            ],
        )
        usage = {
            "workspace_id": principal.workspace_id,
            "key_id": principal.key_id,
            "agent_id": published.agent.id,
            "session_id": session_id,
            "message_id": reply.id,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "created_at": reply.created_at,
        }
        return reply, usage


def _field(request: TurnRequest, index: int, attribute: str) -> str:
    """The path of a message's attribute in the caller's request, for field violations."""
    if request.content_field is not None:
        return request.content_field
    return f"messages[{index}].{attribute}"


def _validate_messages(request: TurnRequest) -> None:
    if not request.messages:
        raise InvalidArgument("messages", "must contain at least one message")
    for index, (role, _content) in enumerate(request.messages):
        if role not in ROLES:
            raise InvalidArgument(
                _field(request, index, "role"),
                f"unknown role {clip(role)!r}; expected one of {', '.join(ROLES)}",
            )
    if not any(role == "user" for role, _ in request.messages):
        raise InvalidArgument("messages", "must contain a message with role 'user'")


def _apply_input_rails(agent: agent_pb2.Agent, request: TurnRequest) -> None:
    limit = agent.guardrails.max_input_chars
    if not limit:
        return
    for index, (role, content) in enumerate(request.messages):
        if role == "user" and len(content) > limit:
            raise InvalidArgument(
                _field(request, index, "content"),
                f"is {len(content)} characters long; this agent accepts at most {limit}",
            )
