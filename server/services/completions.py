"""`switchboard.v1.CompletionService`: turns in the OpenAI chat completion shapes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc
from switchboard.v1 import completion_service_pb2 as pb
from switchboard.v1 import completion_service_pb2_grpc, usage_pb2

from server import idempotency, ids, resources
from server.auth import current_principal
from server.chat import ContentDelta, TurnDone, TurnRequest, TurnRunner, TurnStarted
from server.errors import InvalidArgument
from server.store.repository import Repository


def _turn_request(request: pb.CreateChatCompletionRequest) -> TurnRequest:
    agent = request.model or request.agent_id
    if not agent:
        raise InvalidArgument("model", "name the agent id or slug")
    return TurnRequest(
        agent=agent,
        messages=[(m.role, m.content) for m in request.messages],
        session_id=request.session_id or None,
        labels={"user": request.user} if request.user else {},
    )


def _fingerprint(backend: str) -> str:
    return f"switchboard-{backend}"


class CompletionService(completion_service_pb2_grpc.CompletionServiceServicer):
    def __init__(self, repository: Repository, turns: TurnRunner) -> None:
        self._repository = repository
        self._turns = turns

    async def CreateChatCompletion(
        self, request: pb.CreateChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChatCompletion:
        principal = current_principal()

        async def produce() -> pb.ChatCompletion:
            created = int(time.time())
            turn = _turn_request(request)
            started, done = await self._turns.run_to_end(principal, turn)
            reply = done.reply
            return pb.ChatCompletion(
                id=ids.new_completion_id(),
                object="chat.completion",
                created=created,
                model=turn.agent,
                choices=[
                    pb.ChatCompletionChoice(
                        index=0,
                        message=pb.ChatCompletionMessage(role="assistant", content=reply.content),
                        finish_reason="stop",
                    )
                ],
                usage=resources.usage_of(reply),
                system_fingerprint=_fingerprint(started.backend),
                agent_id=started.agent_id,
                session_id=reply.session_id,
                content=reply.content,
            )

        return await idempotency.once(
            self._repository,
            principal.workspace_id,
            idempotency.idempotency_key(context),
            "CreateChatCompletion",
            request,
            pb.ChatCompletion,
            produce,
        )

    async def StreamChatCompletion(
        self, request: pb.CreateChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatCompletionChunk]:
        turn = _turn_request(request)
        completion_id = ids.new_completion_id()
        created = int(time.time())
        base = pb.ChatCompletionChunk()

        def chunk(
            delta: pb.ChatCompletionDelta | None = None,
            finish_reason: str | None = None,
            usage: usage_pb2.Usage | None = None,
        ) -> pb.ChatCompletionChunk:
            """A chunk sharing the stream's id and created; a choice, or only the usage."""
            message = pb.ChatCompletionChunk()
            message.CopyFrom(base)
            if delta is not None:
                message.choices.add(index=0, delta=delta, finish_reason=finish_reason)
            if usage is not None:
                message.usage.CopyFrom(usage)
            return message

        async with aclosing(self._turns.run(current_principal(), turn)) as events:
            async for event in events:
                if isinstance(event, TurnStarted):
                    base = pb.ChatCompletionChunk(
                        id=completion_id,
                        object="chat.completion.chunk",
                        created=created,
                        model=turn.agent,
                        system_fingerprint=_fingerprint(event.backend),
                        agent_id=event.agent_id,
                        session_id=event.session_id,
                    )
                    yield chunk(pb.ChatCompletionDelta(role="assistant"))
                elif isinstance(event, ContentDelta):
                    yield chunk(pb.ChatCompletionDelta(content=event.text))
                elif isinstance(event, TurnDone):
                    yield chunk(pb.ChatCompletionDelta(), finish_reason="stop")
                    if request.stream_options.include_usage:
                        yield chunk(usage=resources.usage_of(event.reply))
