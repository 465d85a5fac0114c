"""One assistant turn, from the incoming messages to the stored reply.

`TurnRunner.run` validates the input, applies the input rails, ranks knowledge, builds the
grounded prompt, streams the backend's reply (running the agent's tools between steps) through
the output rails as `TurnEvent`s, and stores the turn with its usage. A turn that is
cancelled or fails midway still stores its partial reply, marked incomplete."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format
from switchboard.v1 import agent_pb2, completion_service_pb2

from contract.roles import ROLES
from server import ids, prompts, tools
from server.auth import Principal, published_agent_for
from server.backends import (
    Finished,
    ModelBackend,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
    ToolResult,
    TurnContext,
    UsageReported,
)
from server.backends.builtin import KnowledgeResponder
from server.backends.openai_compatible import OpenAICompatibleBackend, SharedClient
from server.errors import (
    FailedPrecondition,
    InsufficientBalance,
    InvalidArgument,
    RateLimited,
    TurnCancelled,
    Unsupported,
    UpstreamError,
    clip,
)
from server.guardrails import Redactor, blocked_term, redactor_for
from server.knowledge import count_tokens, search_terms
from server.limits import MemoryRateLimiter, RateLimiter
from server.store import Store
from server.store.agents import PublishedAgent
from server.store.search import ScoredPassage
from server.store.sessions import MessageRecord
from server.store.tables import utcnow
from server.telemetry import (
    TurnMeter,
    count_refusals,
    counted_tokens,
    traced,
    traced_step,
    traced_turn,
)
from server.turn_events import (
    ContentDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnDone,
    TurnEvent,
    TurnStarted,
)

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 3
DEFAULT_MIN_SCORE = 0.05
DEFAULT_REFUSAL_REPLY = "I can't help with that request."
_JSON_FORMATS = ("json_object", "json_schema")


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """Server-wide settings of turns."""

    # The history sent to a model backend fits this many (estimated) tokens.
    context_tokens: int = 8192
    # Model steps per turn; the last one is offered no tools, so it must answer.
    max_tool_steps: int = 5
    # A turn reads at most this many of the session's newest messages.
    history_messages: int = 200


@dataclass(frozen=True, slots=True)
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
    response_format: completion_service_pb2.ResponseFormat | None = None


@dataclass(slots=True)
class _Usage:
    prompt: int = 0
    completion: int = 0
    reported: bool = False


class TurnRunner:
    """Runs turns, from the incoming messages to the stored reply, and cancels them."""

    def __init__(
        self,
        store: Store,
        client: SharedClient,
        settings: TurnSettings | None = None,
        *,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._store = store
        self._workspaces = store.workspaces
        self._limiter: RateLimiter = limiter or MemoryRateLimiter()
        self._settings = settings or TurnSettings()
        self._builtin = KnowledgeResponder()
        self._upstream = OpenAICompatibleBackend(client)
        self._tools = tools.WebhookTools(client)
        self._configs: dict[tuple[str, int], agent_pb2.Agent] = {}
        # The tasks running each session's turns, for `cancel`.
        self._running: dict[str, set[asyncio.Task[Any]]] = {}
        self._cancelled: set[asyncio.Task[Any]] = set()
        # Token counts on their way to the rate limiter, held until they land.
        self._spending: set[asyncio.Task[None]] = set()

    def cancel(self, session_id: str) -> int:
        """Cancels the running turns of a session on this server; returns how many."""
        tasks = [task for task in self._running.get(session_id, ()) if not task.done()]
        for task in tasks:
            self._cancelled.add(task)
            task.cancel()
        return len(tasks)

    def run(self, principal: Principal, request: TurnRequest) -> AsyncGenerator[TurnEvent, None]:
        """Runs one turn: `TurnStarted`, the reply's events, then `TurnDone`."""
        return traced_turn(self._turn(principal, request))

    async def _turn(
        self, principal: Principal, request: TurnRequest
    ) -> AsyncGenerator[TurnEvent, None]:
        started = time.perf_counter()
        _validate_messages(request)
        published = await published_agent_for(self._store.agents, principal, request.agent)
        agent = self._config(published)
        _check_input_length(agent, request)
        backend = self._backend(agent)
        response_format = _response_format(request, backend)
        session_id = request.session_id
        history: list[dict[str, Any]] = []
        if session_id is not None:
            owner = await self._store.sessions.agent_of(principal.workspace_id, session_id)
            principal.check_session_agent(owner, session_id)
            if owner != published.agent.id:
                raise FailedPrecondition(
                    f"session {clip(session_id)!r} belongs to another agent",
                    reason="SESSION_AGENT_MISMATCH",
                )
            if backend is not self._builtin:
                # The builtin responder reads only the new question; models read the history.
                records = await self._store.sessions.history(
                    session_id, limit=self._settings.history_messages
                )
                history = prompts.fit_history(records, self._settings.context_tokens)
        else:
            session_id = ids.new_id("sess")
        balance = await self._workspaces.balance(principal.workspace_id)
        limits = None
        try:
            if balance is not None and balance <= 0:
                raise InsufficientBalance(
                    "the workspace's token balance is used up; ask its operator to add tokens"
                )
            if principal.rate.limited:
                limits = await self._limiter.admit(principal.key_id, principal.rate)
        except (InsufficientBalance, RateLimited) as refused:
            count_refusals(refused)
            raise
        blocked = blocked_term(agent.guardrails, _user_text(request))
        backend_name = backend.name(agent)
        redactor = redactor_for(agent.guardrails)

        passages: list[ScoredPassage] = []
        prompt: list[dict[str, Any]] = []
        exchange: list[MessageRecord] = []
        # The reply so far, as one string rather than a list of its deltas: a turn may stream
        # for minutes, and a server may hold thousands of them.
        reply_text = ""
        usage = _Usage()
        finish_reason = "stop"
        first_token_at: float | None = None
        complete = False
        task = asyncio.current_task()
        assert task is not None
        self._running.setdefault(session_id, set()).add(task)
        turn_started = TurnStarted(
            session_id, published.agent.id, published.version, backend_name, limits
        )
        meter = TurnMeter(started, turn_started)
        ended: BaseException | None = None
        try:
            try:
                yield turn_started
                if blocked is not None:
                    finish_reason = "content_filter"
                    refusal = agent.guardrails.refusal_reply or DEFAULT_REFUSAL_REPLY
                    reply_text += refusal
                    first_token_at = time.perf_counter()
                    meter.first_token(first_token_at)
                    yield ContentDelta(refusal)
                else:
                    passages = await self._rank(published.agent.id, agent, request.messages)
                    # The builtin responder reads no prompt: it is given only the instructions.
                    grounding = () if backend is self._builtin else passages
                    system = prompts.system_message(agent, grounding)
                    prompt = [{"role": "system", "content": system}] if system else []
                    prompt += history
                    prompt += [{"role": r, "content": c} for r, c in request.messages]
                    steps = self._steps(
                        agent, backend, prompt, passages, response_format, exchange, usage, redactor
                    )
                    try:
                        async for event in steps:
                            if isinstance(event, ContentDelta):
                                if first_token_at is None:
                                    first_token_at = time.perf_counter()
                                    meter.first_token(first_token_at)
                                reply_text += event.text
                            elif isinstance(event, Finished):
                                finish_reason = "length" if event.reason == "length" else "stop"
                                continue
                            yield event
                    finally:
                        await steps.aclose()
                tail = redactor.finish()
                if tail:
                    reply_text += tail
                    meter.first_token(time.perf_counter())
                    yield ContentDelta(tail)
                complete = True
            except asyncio.CancelledError:
                if task not in self._cancelled:
                    raise
                # Cancelled through the cancel RPC: the turn ends as an error of its own.
                self._cancelled.discard(task)
                task.uncancel()
                raise TurnCancelled("the turn was cancelled") from None
            finally:
                self._running[session_id].discard(task)
                if not self._running[session_id]:
                    del self._running[session_id]
                # The whole turn is written once it ends, whether it completed, was cancelled or
                # failed: the incoming messages always, the reply unless nothing of it was made.
                # Shielded, so that a cancelled turn is still written.
                if not complete:
                    pending = redactor.finish()
                    if pending:
                        reply_text += pending
                reply, usage_row = None, None
                if complete or reply_text:
                    reply, usage_row = self._reply_records(
                        principal,
                        session_id,
                        published,
                        backend_name,
                        reply_text,
                        complete=complete,
                        prompt=prompt or [{"role": r, "content": c} for r, c in request.messages],
                        usage=usage,
                        passages=passages,
                        started=started,
                        first_token_at=first_token_at,
                    )
                spent = reply.prompt_tokens + reply.completion_tokens if reply is not None else 0
                stored = await asyncio.shield(
                    self._store.sessions.record_turn(
                        principal.workspace_id,
                        agent_id=published.agent.id,
                        session_id=session_id,
                        new_session=request.session_id is None,
                        labels=request.labels,
                        messages=request.messages,
                        exchange=exchange,
                        reply=reply,
                        usage=usage_row,
                        debit=spent if balance is not None else 0,
                    )
                )
                if spent and principal.rate.tokens_per_minute:
                    # Counted beside the reply rather than before it: the key's next request sees
                    # the tokens, and this one does not wait a round trip to Redis for them.
                    spending = asyncio.ensure_future(
                        self._limiter.spend(principal.key_id, principal.rate, spent)
                    )
                    self._spending.add(spending)
                    spending.add_done_callback(self._spending.discard)
            assert reply is not None
            meter.outcome = "complete"
            yield TurnDone(stored, reply, list(agent.quick_replies), finish_reason)
        except BaseException as error:
            ended = error
            raise
        finally:
            meter.end(ended)

    async def _steps(
        self,
        agent: agent_pb2.Agent,
        backend: ModelBackend,
        prompt: list[dict[str, Any]],
        passages: Sequence[ScoredPassage],
        response_format: dict[str, Any] | None,
        exchange: list[MessageRecord],
        usage: _Usage,
        redactor: Redactor,
    ) -> AsyncGenerator[ContentDelta | ToolCallStarted | ToolCallFinished | Finished, None]:
        """The model steps of a turn: text through the output rails, and the agent's tools
        run between steps until the model answers or the step limit is reached."""
        offered = tools.definitions(agent)
        retried_format = False
        step = 0
        while True:
            last = step + 1 >= self._settings.max_tool_steps
            context = TurnContext(
                agent=agent,
                messages=prompt,
                passages=passages,
                tools=[] if last else offered,
                response_format=response_format,
            )
            calls: Sequence[ToolCall] = ()
            text = ""
            events = traced_step(backend, context)
            try:
                async for event in events:
                    if isinstance(event, TextDelta):
                        text += event.text
                        if response_format is None:
                            safe = redactor.feed(event.text)
                            if safe:
                                yield ContentDelta(safe)
                    elif isinstance(event, ToolCallsRequested):
                        calls = event.calls
                    elif isinstance(event, UsageReported):
                        usage.prompt += event.prompt_tokens
                        usage.completion += event.completion_tokens
                        usage.reported = True
                    elif isinstance(event, Finished):
                        yield event
            finally:
                await events.aclose()
            if not usage.reported:
                usage.prompt += sum(prompts.estimate_tokens(m) for m in prompt)
                usage.completion += count_tokens(text)
            if calls:
                step += 1
                prompt.append(_assistant_calls(text, calls))
                exchange.append(_exchange_record("assistant", text, tool_calls=calls))
                for call in calls:
                    yield ToolCallStarted(call)
                for result in await self._tools.run_all(agent, calls):
                    prompt.append(
                        {"role": "tool", "tool_call_id": result.call_id, "content": result.content}
                    )
                    exchange.append(_exchange_record("tool", result.content, result=result))
                    yield ToolCallFinished(result)
                continue
            if response_format is not None:
                problem = _format_problem(text, response_format)
                if problem is not None:
                    if retried_format:
                        raise UpstreamError(
                            f"the agent's model did not follow response_format twice: {problem}",
                            reason="UPSTREAM_INVALID_OUTPUT",
                        )
                    retried_format = True
                    prompt.append({"role": "assistant", "content": text})
                    prompt.append(
                        {
                            "role": "user",
                            "content": f"That reply is not valid: {problem}. Answer again with "
                            "only the JSON document the response format asks for.",
                        }
                    )
                    continue
                safe = redactor.feed(text)
                if safe:
                    yield ContentDelta(safe)
            return

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
            return self._upstream
        return self._builtin

    @traced("retrieval")
    async def _rank(
        self, agent_id: str, agent: agent_pb2.Agent, messages: Sequence[tuple[str, str]]
    ) -> list[ScoredPassage]:
        question = next((c for r, c in reversed(messages) if r == "user"), "")
        top_k = agent.knowledge.top_k or DEFAULT_TOP_K
        min_score = agent.knowledge.min_score or DEFAULT_MIN_SCORE
        ranked = await self._store.knowledge.search_passages(
            agent_id, search_terms(question), limit=top_k
        )
        return [p for p in ranked if p.score >= min_score]

    @staticmethod
    @counted_tokens
    def _reply_records(
        principal: Principal,
        session_id: str,
        published: PublishedAgent,
        backend: str,
        text: str,
        *,
        complete: bool,
        prompt: Sequence[dict[str, Any]],
        usage: _Usage,
        passages: Sequence[ScoredPassage],
        started: float,
        first_token_at: float | None,
    ) -> tuple[MessageRecord, dict[str, object]]:
        now = time.perf_counter()
        if backend != "builtin" and usage.prompt:
            prompt_tokens, completion_tokens = usage.prompt, usage.completion
        else:
            # The builtin responder counts words and marks of everything it was given; so is
            # a turn counted that ended before a model step finished, or called no model.
            prompt_tokens = sum(count_tokens(m.get("content") or "") for m in prompt)
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
        usage_row = {
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
        return reply, usage_row


async def send_limit_headers(context: grpc.aio.ServicerContext, started: TurnStarted) -> None:
    """Tells the caller what its rate-limited key has left, as response metadata that the HTTP
    edge turns into OpenAI's `x-ratelimit-*` headers."""
    if started.limits is not None:
        await context.send_initial_metadata(started.limits.headers())


def _assistant_calls(text: str, calls: Sequence[ToolCall]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ],
    }


def _exchange_record(
    role: str,
    content: str,
    *,
    tool_calls: Sequence[ToolCall] = (),
    result: ToolResult | None = None,
) -> MessageRecord:
    return MessageRecord(
        id=ids.new_id("msg"),
        session_id="",
        position=0,
        role=role,
        content=content,
        created_at=utcnow(),
        tool_calls=prompts.tool_calls_json(tool_calls) if tool_calls else None,
        tool_call_id=result.call_id if result is not None else None,
        tool_error=bool(result and result.is_error),
    )


def _response_format(request: TurnRequest, backend: ModelBackend) -> dict[str, Any] | None:
    """The client's `response_format` as sent upstream, or None for plain text."""
    requested = request.response_format
    if requested is None or requested.type in ("", "text"):
        return None
    if requested.type not in _JSON_FORMATS:
        raise InvalidArgument(
            "response_format.type", "must be one of text, json_object, json_schema"
        )
    if isinstance(backend, KnowledgeResponder):
        raise Unsupported(
            "response_format",
            "this agent's builtin backend answers with knowledge passages and cannot produce "
            "JSON; only agents with an openai_compatible backend honour response_format",
        )
    if requested.type == "json_object":
        return {"type": "json_object"}
    try:
        schema = json.loads(requested.json_schema_json or "null")
    except ValueError:
        schema = None
    if not isinstance(schema, dict) or not isinstance(schema.get("schema", {}), dict):
        raise InvalidArgument(
            "response_format.json_schema", "must be an object with a `schema` JSON Schema"
        )
    return {"type": "json_schema", "json_schema": schema}


def _format_problem(text: str, response_format: dict[str, Any]) -> str | None:
    """What is wrong with a reply for the requested format, or None when it fits."""
    try:
        document = json.loads(text)
    except ValueError:
        return "it is not a JSON document"
    schema = response_format.get("json_schema", {}).get("schema")
    if response_format["type"] == "json_object" and not isinstance(document, dict):
        return "it is not a JSON object"
    if schema:
        # Imported here: only structured outputs need it, and it costs every process 2.5 MB.
        import jsonschema

        try:
            jsonschema.validate(document, schema)
        except jsonschema.ValidationError as error:
            return clip(f"it does not match the schema: {error.message}")
        except jsonschema.SchemaError as error:
            raise InvalidArgument(
                "response_format.json_schema", clip(f"is not a valid JSON Schema: {error.message}")
            ) from None
    return None


def _user_text(request: TurnRequest) -> str:
    return "\n".join(content for role, content in request.messages if role == "user")


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


def _check_input_length(agent: agent_pb2.Agent, request: TurnRequest) -> None:
    limit = agent.guardrails.max_input_chars
    if not limit:
        return
    for index, (role, content) in enumerate(request.messages):
        if role == "user" and len(content) > limit:
            raise InvalidArgument(
                _field(request, index, "content"),
                f"is {len(content)} characters long; this agent accepts at most {limit}",
            )
