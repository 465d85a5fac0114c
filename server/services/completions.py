"""`switchboard.v1.CompletionService`: turns in the OpenAI chat completion shapes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
from switchboard.v1 import completion_service_pb2 as pb
from switchboard.v1 import completion_service_pb2_grpc, usage_pb2

from server import ids, resources
from server.auth import current_principal
from server.chat import TurnRequest, TurnRunner, send_limit_headers
from server.errors import InvalidArgument
from server.idempotency import IdempotencyKeys
from server.store import Store
from server.turn_events import ContentDelta, TurnDone, TurnStarted


def _turn_request(request: pb.CreateChatCompletionRequest) -> TurnRequest:
    agent = request.model or request.agent_id
    if not agent:
        raise InvalidArgument("model", "name the agent id or slug")
    return TurnRequest(
        agent=agent,
        messages=[(m.role, m.content) for m in request.messages],
        session_id=request.session_id or None,
        labels={"user": request.user} if request.user else {},
        response_format=request.response_format if request.HasField("response_format") else None,
    )


def _fingerprint(backend: str) -> str:
    return f"switchboard-{backend}"


def _completion(
    turn: TurnRequest, started: TurnStarted, done: TurnDone, completion_id: str, created: int
) -> pb.ChatCompletion:
    reply = done.reply
    return pb.ChatCompletion(
        id=completion_id,
        object="chat.completion",
        created=created,
        model=turn.agent,
        choices=[
            pb.ChatCompletionChoice(
                index=0,
                message=pb.ChatCompletionMessage(role="assistant", content=reply.content),
                finish_reason=done.finish_reason,
            )
        ],
        usage=resources.usage_of(reply),
        system_fingerprint=_fingerprint(started.backend),
        agent_id=started.agent_id,
        session_id=reply.session_id,
        content=reply.content,
    )


class _Chunks:
    """Chunks of one stream, sharing its id, created time and agent fields."""

    def __init__(self) -> None:
        self._base = pb.ChatCompletionChunk()

    def begin(
        self,
        completion_id: str,
        created: int,
        model: str,
        fingerprint: str,
        agent_id: str,
        session_id: str,
    ) -> pb.ChatCompletionChunk:
        self._base = pb.ChatCompletionChunk(
            id=completion_id,
            object="chat.completion.chunk",
            created=created,
            model=model,
            system_fingerprint=fingerprint,
            agent_id=agent_id,
            session_id=session_id,
        )
        return self.chunk(pb.ChatCompletionDelta(role="assistant"))

    def chunk(
        self,
        delta: pb.ChatCompletionDelta | None = None,
        finish_reason: str | None = None,
        usage: usage_pb2.Usage | None = None,
    ) -> pb.ChatCompletionChunk:
        """A chunk with a choice, or with only the usage."""
        message = pb.ChatCompletionChunk()
        message.CopyFrom(self._base)
        if delta is not None:
            message.choices.add(index=0, delta=delta, finish_reason=finish_reason)
        if usage is not None:
            message.usage.CopyFrom(usage)
        return message


def _replay(completion: pb.ChatCompletion, include_usage: bool) -> list[pb.ChatCompletionChunk]:
    """A stored completion as the stream that first delivered it, its text in one delta."""
    chunks = _Chunks()
    choice = completion.choices[0]
    replayed = [
        chunks.begin(
            completion.id,
            completion.created,
            completion.model,
            completion.system_fingerprint,
            completion.agent_id,
            completion.session_id,
        )
    ]
    if choice.message.content:
        replayed.append(chunks.chunk(pb.ChatCompletionDelta(content=choice.message.content)))
    replayed.append(chunks.chunk(pb.ChatCompletionDelta(), finish_reason=choice.finish_reason))
    if include_usage:
        replayed.append(chunks.chunk(usage=completion.usage))
    return replayed


class CompletionService(completion_service_pb2_grpc.CompletionServiceServicer):
    """OpenAI-shaped chat completions: one turn of a published agent per request."""

    def __init__(self, store: Store, turns: TurnRunner, idempotency: IdempotencyKeys) -> None:
        self._store = store
        self._turns = turns
        self._idempotency = idempotency

    async def CreateChatCompletion(
        self, request: pb.CreateChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChatCompletion:
        """Runs one turn and returns the whole reply; an idempotency key replays it."""
        principal = current_principal()

        async def produce() -> pb.ChatCompletion:
            created = int(time.time())
            turn = _turn_request(request)
            started, done = await self._turns.run_to_end(principal, turn)
            await send_limit_headers(context, started)
            return _completion(turn, started, done, ids.new_completion_id(), created)

        return await self._idempotency.once(
            context, principal, "CreateChatCompletion", request, pb.ChatCompletion, produce
        )

    async def StreamChatCompletion(
        self, request: pb.CreateChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatCompletionChunk]:
        """Runs one turn as OpenAI chunks; a finished idempotency key replays them."""
        principal = current_principal()
        turn = _turn_request(request)
        include_usage = request.stream_options.include_usage
        reserved = await self._idempotency.reserve(
            context, principal, "StreamChatCompletion", request, pb.ChatCompletion
        )
        if isinstance(reserved, pb.ChatCompletion):
            for chunk in _replay(reserved, include_usage):
                yield chunk
            return
        completion_id = ids.new_completion_id()
        created = int(time.time())
        chunks = _Chunks()
        started: TurnStarted | None = None
        # Plain try/finally rather than exit stacks: a server holds thousands of these.
        events = self._turns.run(principal, turn)
        try:
            async for event in events:
                if isinstance(event, TurnStarted):
                    started = event
                    await send_limit_headers(context, event)
                    yield chunks.begin(
                        completion_id,
                        created,
                        turn.agent,
                        _fingerprint(event.backend),
                        event.agent_id,
                        event.session_id,
                    )
                elif isinstance(event, ContentDelta):
                    yield chunks.chunk(pb.ChatCompletionDelta(content=event.text))
                elif isinstance(event, TurnDone):
                    assert started is not None
                    if reserved is not None:
                        await reserved.finish(
                            _completion(turn, started, event, completion_id, created)
                        )
                    yield chunks.chunk(pb.ChatCompletionDelta(), finish_reason=event.finish_reason)
                    if include_usage:
                        yield chunks.chunk(usage=resources.usage_of(event.reply))
        finally:
            await events.aclose()
            if reserved is not None:
                await reserved.release()
