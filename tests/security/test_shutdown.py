"""SIGTERM while streams outlast the grace period: each open stream ends with an error event
instead of a silent cut, the server exits cleanly, and every cut turn is stored, marked
incomplete, with its partial reply and usage."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from switchboard.v1 import completion_service_pb2 as cpb
from switchboard.v1 import completion_service_pb2_grpc

from tests.http.conftest import MANUAL, create_published_agent

QUESTION = "What does the warranty of the espresso machine cover?"
# The reply takes about 25 s at this pace, far longer than the grace period.
DELTA_INTERVAL_MS = 300
GRACE_SECONDS = "1"


@dataclass
class CutStream:
    """What a client saw of a stream open at SIGTERM."""

    session_id: str = ""
    text: str = ""
    events: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    streaming: threading.Event = field(default_factory=threading.Event)


@dataclass
class ShutdownRun:
    openai: CutStream
    native: CutStream
    grpc: CutStream
    exit_code: int
    # `GET /v1/sessions/{id}/messages` of each cut session, asked of a restarted server.
    stored: dict[str, httpx.Response]


def _read_openai(client: httpx.Client, slug: str, cut: CutStream) -> None:
    request = {"model": slug, "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    with client.stream("POST", "/v1/chat/completions", json=request) as response:
        assert response.status_code == 200, response.read()
        cut.session_id = response.headers["x-session-id"]
        for line in response.iter_lines():
            if not line:
                continue
            cut.events.append(line)
            data = line.removeprefix("data: ")
            if data != "[DONE]" and "choices" in (chunk := json.loads(data)):
                for choice in chunk["choices"]:
                    cut.text += choice["delta"].get("content") or ""
            if cut.text:
                cut.streaming.set()


def _read_native(client: httpx.Client, session_id: str, cut: CutStream) -> None:
    cut.session_id = session_id
    with client.stream(
        "POST",
        f"/v1/sessions/{session_id}/messages:stream",
        json={"content": QUESTION},
        headers={"accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line:
                continue
            cut.events.append(line)
            event = json.loads(line.removeprefix("data: "))
            cut.text += event.get("result", {}).get("content", {}).get("text", "")
            if cut.text:
                cut.streaming.set()


def _read_grpc(target: str, api_key: str, slug: str, cut: CutStream) -> None:
    with grpc.insecure_channel(target) as channel:
        stream = completion_service_pb2_grpc.CompletionServiceStub(channel).StreamChatCompletion(
            cpb.CreateChatCompletionRequest(
                model=slug, messages=[cpb.ChatMessage(role="user", content=QUESTION)]
            ),
            metadata=(("authorization", f"Bearer {api_key}"),),
            timeout=60,
        )
        try:
            for chunk in stream:
                cut.session_id = chunk.session_id
                cut.events.append(chunk)
                cut.text += "".join(choice.delta.content for choice in chunk.choices)
                if cut.text:
                    cut.streaming.set()
        except grpc.RpcError as error:
            cut.error = error


def _run(target: Callable[..., None], *args: Any) -> threading.Thread:
    cut: CutStream = args[-1]

    def read() -> None:
        try:
            target(*args)
        except BaseException as error:
            cut.error = cut.error or error
        finally:
            # A reader that failed before streaming must not keep the test waiting.
            cut.streaming.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def shutdown_run(server_factory, tmp_path_factory) -> ShutdownRun:
    """One server with a short grace period, three streams open at SIGTERM, and a second
    server on the same SQLite file to read what was stored."""
    workdir = tmp_path_factory.mktemp("shutdown")
    cuts = CutStream(), CutStream(), CutStream()
    with server_factory(
        workdir=workdir, extra_args=("--shutdown-grace-seconds", GRACE_SECONDS)
    ) as own:
        headers = {"authorization": f"Bearer {own.api_key}"}
        with httpx.Client(base_url=own.http_url, headers=headers, timeout=60) as client:
            agent = create_published_agent(client, DELTA_INTERVAL_MS, MANUAL, QUESTION)
            session = client.post("/v1/sessions", json={"agent": f"agents/{agent.slug}"})
            assert session.status_code == 200, session.text
            readers = [
                _run(_read_openai, client, agent.slug, cuts[0]),
                _run(_read_native, client, session.json()["id"], cuts[1]),
                _run(_read_grpc, own.grpc_target, own.api_key, agent.slug, cuts[2]),
            ]
            for cut in cuts:
                assert cut.streaming.wait(timeout=30)
            assert all(cut.error is None for cut in cuts), [cut.error for cut in cuts]
            own.process.send_signal(signal.SIGTERM)
            for reader in readers:
                reader.join(timeout=30)
                assert not reader.is_alive(), "a stream was still open after the server stopped"
        exit_code = own.process.wait(timeout=30)
    stored = {}
    with server_factory(workdir=workdir) as again:
        headers = {"authorization": f"Bearer {again.api_key}"}
        with httpx.Client(base_url=again.http_url, headers=headers, timeout=30) as client:
            for cut in cuts:
                stored[cut.session_id] = client.get(f"/v1/sessions/{cut.session_id}/messages")
    return ShutdownRun(*cuts, exit_code=exit_code, stored=stored)


def test_the_server_exits_cleanly_after_ending_the_streams(shutdown_run: ShutdownRun) -> None:
    assert shutdown_run.exit_code == 0


def test_an_openai_stream_ends_with_an_error_event_then_done(shutdown_run: ShutdownRun) -> None:
    cut = shutdown_run.openai
    assert cut.error is None
    assert cut.events[-1] == "data: [DONE]"
    error = json.loads(cut.events[-2].removeprefix("data: "))
    assert error == {
        "error": {
            "message": "server is shutting down",
            "type": "server_error",
            "param": None,
            "code": "server_shutting_down",
        }
    }
    # Everything before the error is an ordinary chunk: the reply was cut, not finished.
    chunks = [json.loads(event.removeprefix("data: ")) for event in cut.events[:-2]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all(choice["finish_reason"] is None for c in chunks for choice in c["choices"])


def test_a_native_sse_stream_ends_with_an_error_event(shutdown_run: ShutdownRun) -> None:
    cut = shutdown_run.native
    assert cut.error is None
    last = json.loads(cut.events[-1].removeprefix("data: "))
    assert last["error"]["code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    assert last["error"]["message"] == "server is shutting down"
    assert all("result" in json.loads(e.removeprefix("data: ")) for e in cut.events[:-1])


def test_a_grpc_stream_ends_with_unavailable(shutdown_run: ShutdownRun) -> None:
    cut = shutdown_run.grpc
    assert isinstance(cut.error, grpc.RpcError)
    assert cut.error.code() == grpc.StatusCode.UNAVAILABLE
    assert not any(choice.finish_reason for c in cut.events for choice in c.choices)


@pytest.mark.parametrize("door", ["openai", "native", "grpc"])
def test_the_cut_turn_is_stored_incomplete_with_its_usage(
    shutdown_run: ShutdownRun, door: str
) -> None:
    cut: CutStream = getattr(shutdown_run, door)
    listed = shutdown_run.stored[cut.session_id]
    assert listed.status_code == 200, listed.text
    messages = listed.json()["messages"]
    assert [m["role"] for m in messages] == ["ROLE_USER", "ROLE_ASSISTANT"]
    assert messages[0]["content"] == QUESTION
    reply = messages[1]
    assert reply["status"] == "MESSAGE_STATUS_INCOMPLETE"
    # The stored reply holds at least what the client saw, and not the whole answer.
    assert reply["content"].startswith(cut.text)
    assert cut.text.startswith("The warranty covers part 1")
    assert len(reply["content"]) < len(MANUAL) / 2
    usage = reply["usage"]
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
