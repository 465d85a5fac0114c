"""History survives a server restart on the same SQLite file; the demo is seeded once."""

from __future__ import annotations

import grpc
from switchboard.v1 import completion_service_pb2 as cpb
from switchboard.v1 import (
    completion_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
)


def _ask(server, session_id: str = "") -> cpb.ChatCompletion:
    with grpc.insecure_channel(server.grpc_target) as channel:
        return completion_service_pb2_grpc.CompletionServiceStub(channel).CreateChatCompletion(
            cpb.CreateChatCompletionRequest(
                model="support-bot",
                session_id=session_id,
                messages=[cpb.ChatMessage(role="user", content="Do you ship to Canada?")],
            ),
            metadata=(("authorization", f"Bearer {server.api_key}"),),
        )


def test_history_survives_a_restart(server_factory, tmp_path):
    with server_factory(workdir=tmp_path, grpc_only=True) as first:
        before = _ask(first)
        first_agent = before.agent_id
    with server_factory(workdir=tmp_path, grpc_only=True) as second:
        # A fresh key is minted on every start; the demo agent is reused.
        assert second.api_key != first.api_key
        after = _ask(second, before.session_id)
        assert after.agent_id == first_agent
        with grpc.insecure_channel(second.grpc_target) as channel:
            listed = session_service_pb2_grpc.SessionServiceStub(channel).ListMessages(
                session_service_pb2.ListMessagesRequest(parent=f"sessions/{before.session_id}"),
                metadata=(("authorization", f"Bearer {second.api_key}"),),
            )
    contents = [m.content for m in listed.messages]
    assert contents == [
        "Do you ship to Canada?",
        before.choices[0].message.content,
        "Do you ship to Canada?",
        after.choices[0].message.content,
    ]
