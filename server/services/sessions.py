"""`switchboard.v1.SessionService`: sessions, their messages, and turns with typed events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2
from switchboard.v1 import session_pb2, session_service_pb2, session_service_pb2_grpc

from server import resources
from server.auth import current_principal, published_agent_for
from server.chat import TurnRequest, TurnRunner, send_limit_headers
from server.errors import InvalidArgument, SwitchboardError
from server.idempotency import IdempotencyKeys
from server.paging import PageTokens
from server.replicas import ReplicaBus
from server.store import Store
from server.turn_events import (
    ContentDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnDone,
    TurnStarted,
)


def _done_event(done: TurnDone) -> session_service_pb2.Done:
    reply = done.reply
    return session_service_pb2.Done(
        session=f"sessions/{reply.session_id}",
        message=f"sessions/{reply.session_id}/messages/{reply.id}",
        usage=resources.usage_of(reply),
        sources=resources.sources_to_proto(reply),
        metrics=resources.metrics_of(reply),
    )


def _send_response(done: TurnDone) -> session_service_pb2.SendMessageResponse:
    return session_service_pb2.SendMessageResponse(
        message=resources.message_to_proto(done.messages[0]),
        reply=resources.message_to_proto(done.reply),
        quick_replies=done.quick_replies,
    )


def _replay(
    response: session_service_pb2.SendMessageResponse,
) -> list[session_service_pb2.MessageEvent]:
    """A stored turn as the events that first delivered it, its text in one delta."""
    reply = response.reply
    events = []
    if reply.content:
        events.append(
            session_service_pb2.MessageEvent(
                content=session_service_pb2.ContentDelta(text=reply.content)
            )
        )
    if response.quick_replies:
        events.append(
            session_service_pb2.MessageEvent(
                quick_replies=session_service_pb2.QuickReplies(replies=response.quick_replies)
            )
        )
    session = reply.name.split("/messages/", 1)[0]
    done = session_service_pb2.Done(
        session=session,
        message=reply.name,
        usage=reply.usage,
        sources=reply.sources,
        metrics=reply.metrics,
    )
    events.append(session_service_pb2.MessageEvent(done=done))
    return events


class SessionService(session_service_pb2_grpc.SessionServiceServicer):
    """Sessions, their messages, and the turns that add to them."""

    def __init__(
        self,
        store: Store,
        turns: TurnRunner,
        idempotency: IdempotencyKeys,
        pages: PageTokens,
        replicas: ReplicaBus | None = None,
    ) -> None:
        self._replicas = replicas
        self._store = store
        self._turns = turns
        self._idempotency = idempotency
        self._pages = pages

    async def CreateSession(
        self,
        request: session_service_pb2.CreateSessionRequest,
        context: grpc.aio.ServicerContext,
    ) -> session_pb2.Session:
        """Starts a session with a published agent the key may use."""
        if not request.session.agent:
            raise InvalidArgument("session.agent", "name the agent, `agents/{id or slug}`")
        agent = resources.parse_name(request.session.agent, "agents", "session.agent")
        principal = current_principal()
        published = await published_agent_for(self._store.agents, principal, agent)
        row = await self._store.sessions.create(
            principal.workspace_id, published.agent.id, labels=dict(request.session.labels)
        )
        return resources.session_to_proto(row, 0)

    async def GetSession(
        self, request: session_service_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.Session:
        """A session of the workspace, with its message count."""
        session = resources.parse_name(request.name, "sessions", "name")
        row, count = await self._store.sessions.get(current_principal().workspace_id, session)
        return resources.session_to_proto(row, count)

    async def ListSessions(
        self,
        request: session_service_pb2.ListSessionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> session_service_pb2.ListSessionsResponse:
        """The workspace's sessions, newest first, optionally of one agent."""
        workspace = current_principal().workspace_id
        agent_id = None
        if request.agent:
            agent = resources.parse_name(request.agent, "agents", "agent")
            agent_id = (await self._store.agents.get(workspace, agent)).id
        limit = resources.page_size(request.page_size)
        rows = await self._store.sessions.list_page(
            workspace,
            agent_id=agent_id,
            limit=limit + 1,
            before=await self._pages.read(request, workspace),
        )
        page, next_token = await self._pages.page(
            request, workspace, rows, limit, lambda row: row[0].id
        )
        return session_service_pb2.ListSessionsResponse(
            sessions=[resources.session_to_proto(row, count) for row, count in page],
            next_page_token=next_token,
        )

    async def DeleteSession(
        self,
        request: session_service_pb2.DeleteSessionRequest,
        context: grpc.aio.ServicerContext,
    ) -> empty_pb2.Empty:
        """Deletes a session and its messages."""
        session = resources.parse_name(request.name, "sessions", "name")
        await self._store.sessions.delete(current_principal().workspace_id, session)
        return empty_pb2.Empty()

    async def ListMessages(
        self,
        request: session_service_pb2.ListMessagesRequest,
        context: grpc.aio.ServicerContext,
    ) -> session_service_pb2.ListMessagesResponse:
        """A session's messages in order; a publishable key reads only its agents'."""
        session = resources.parse_name(request.parent, "sessions", "parent")
        principal = current_principal()
        owner = await self._store.sessions.agent_of(principal.workspace_id, session)
        principal.check_session_agent(owner, session)
        limit = resources.page_size(request.page_size, default=100)
        after = await self._pages.read_number(request, principal.workspace_id) or 0
        rows = await self._store.sessions.list_messages(session, limit=limit + 1, after=after)
        page, next_token = await self._pages.page(
            request, principal.workspace_id, rows, limit, lambda row: row.position
        )
        return session_service_pb2.ListMessagesResponse(
            messages=[resources.message_to_proto(row) for row in page],
            next_page_token=next_token,
        )

    async def SendMessage(
        self,
        request: session_service_pb2.SendMessageRequest,
        context: grpc.aio.ServicerContext,
    ) -> session_service_pb2.SendMessageResponse:
        """Sends a user message and returns the whole reply; an idempotency key replays it."""
        principal = current_principal()

        async def produce() -> session_service_pb2.SendMessageResponse:
            turn = await self._turn_request(request)
            started, done = await self._turns.run_to_end(principal, turn)
            await send_limit_headers(context, started)
            return _send_response(done)

        return await self._idempotency.once(
            context,
            principal,
            "SendMessage",
            request,
            session_service_pb2.SendMessageResponse,
            produce,
        )

    async def StreamMessage(
        self,
        request: session_service_pb2.SendMessageRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[session_service_pb2.MessageEvent]:
        """Streams the reply as events; a failure after the first delta ends in `error`."""
        principal = current_principal()
        turn = await self._turn_request(request)
        reserved = await self._idempotency.reserve(
            context, principal, "StreamMessage", request, session_service_pb2.SendMessageResponse
        )
        if isinstance(reserved, session_service_pb2.SendMessageResponse):
            for replayed in _replay(reserved):
                yield replayed
            return
        began = False
        # Plain try/finally rather than exit stacks: a server holds thousands of these.
        events = self._turns.run(principal, turn)
        try:
            try:
                async for event in events:
                    if isinstance(event, TurnStarted):
                        await send_limit_headers(context, event)
                    elif isinstance(event, ContentDelta):
                        began = True
                        yield session_service_pb2.MessageEvent(
                            content=session_service_pb2.ContentDelta(text=event.text)
                        )
                    elif isinstance(event, ToolCallStarted):
                        began = True
                        yield session_service_pb2.MessageEvent(
                            tool_call=session_service_pb2.ToolCall(
                                id=event.call.id,
                                name=event.call.name,
                                arguments_json=event.call.arguments,
                            )
                        )
                    elif isinstance(event, ToolCallFinished):
                        yield session_service_pb2.MessageEvent(
                            tool_result=session_service_pb2.ToolResult(
                                tool_call_id=event.result.call_id,
                                name=event.result.name,
                                content=event.result.content,
                                is_error=event.result.is_error,
                            )
                        )
                    elif isinstance(event, TurnDone):
                        if reserved is not None:
                            await reserved.finish(_send_response(event))
                        if event.quick_replies:
                            yield session_service_pb2.MessageEvent(
                                quick_replies=session_service_pb2.QuickReplies(
                                    replies=event.quick_replies
                                )
                            )
                        yield session_service_pb2.MessageEvent(done=_done_event(event))
            finally:
                await events.aclose()
                if reserved is not None:
                    await reserved.release()
        except SwitchboardError as error:
            if not began:
                raise
            yield session_service_pb2.MessageEvent(
                error=session_service_pb2.StreamError(
                    code=error.code.name, message=error.message, reason=error.reason
                )
            )

    async def CancelTurn(
        self,
        request: session_service_pb2.CancelTurnRequest,
        context: grpc.aio.ServicerContext,
    ) -> session_service_pb2.CancelTurnResponse:
        """Cancels the session's running turns, here or on another replica; says how many."""
        session = resources.parse_name(request.name, "sessions", "name")
        principal = current_principal()
        owner = await self._store.sessions.agent_of(principal.workspace_id, session)
        principal.check_session_agent(owner, session)
        cancelled = self._turns.cancel(session)
        if not cancelled and self._replicas is not None:
            cancelled = await self._replicas.cancel_elsewhere(session)
        return session_service_pb2.CancelTurnResponse(cancelled_turns=cancelled)

    async def _turn_request(self, request: session_service_pb2.SendMessageRequest) -> TurnRequest:
        session_id = resources.parse_name(request.parent, "sessions", "parent")
        if not request.content.strip():
            raise InvalidArgument("content", "must not be empty")
        principal = current_principal()
        # The owner alone, by primary key: a turn costs the same however long the session.
        owner = await self._store.sessions.agent_of(principal.workspace_id, session_id)
        principal.check_session_agent(owner, session_id)
        return TurnRequest(
            agent=owner,
            messages=[("user", request.content)],
            session_id=session_id,
            content_field="content",
        )
