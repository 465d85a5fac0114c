"""OpenTelemetry traces, recorded by the SDK's in-memory exporter from a server built in this
process: one trace per request from the edge through the core, retrieval, the model steps, the
upstream calls and each tool call, continuing the client's `traceparent` and passing it on."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from switchboard.v1 import completion_service_pb2, completion_service_pb2_grpc

from http_edge.app import create_app
from http_edge.server import EdgeServer
from http_edge.streaming import GracePeriod
from launcher.demo import DEFAULT_WORKSPACE_ID, ensure_demo
from observability import tracing
from server.app import Core
from server.auth import ALL_SCOPES
from server.store import Store
from server.store.database import create_engine, migrate
from tests.conftest import free_port
from tests.operating.conftest import (
    HOOK_SECRET,
    UPSTREAM_KEY,
    publish_upstream_agent,
    webhook_tool,
)
from tests.runtime.upstream import Reply, ToolReceiver, ToolReply, Upstream

CHAT = "/v1/chat/completions"


@dataclass
class InProcessServer:
    http_url: str
    grpc_target: str
    api_key: str
    spans: InMemorySpanExporter


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    exporter = InMemorySpanExporter()
    tracing.configure(exporter)
    os.environ["SWITCHBOARD_TEST_OPERATING_KEY"] = UPSTREAM_KEY
    os.environ["SWITCHBOARD_TEST_OPERATING_HOOK"] = HOOK_SECRET
    url = f"sqlite+aiosqlite:///{Path(tmp_path_factory.mktemp('traces')) / 'traces.db'}"
    migrate(url)
    http_port, grpc_port = free_port(), free_port()
    started = threading.Event()
    state: dict[str, object] = {}

    async def serve() -> None:
        store = Store(create_engine(url))
        await ensure_demo(store)
        _, key = await store.keys.create(
            DEFAULT_WORKSPACE_ID, display_name="traces", kind="secret", scopes=ALL_SCOPES
        )
        core = Core(store)
        await core.start()
        grpc_server = await core.serve_grpc(f"127.0.0.1:{grpc_port}")
        grace = GracePeriod()
        app = create_app(f"127.0.0.1:{grpc_port}", channel=core.local_channel(), grace=grace)
        edge = EdgeServer(
            app,
            grace,
            shutdown_grace_seconds=1,
            max_header_bytes=65_536,
            handle_signals=False,
            host="127.0.0.1",
            port=http_port,
        )
        state["key"], state["edge"] = key, edge
        serving = asyncio.ensure_future(edge.serve())
        await edge.listening.wait()
        started.set()
        await serving
        await grpc_server.stop(grace=1)
        await core.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert started.wait(20), "in-process server did not start"
    yield InProcessServer(
        f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", str(state["key"]), exporter
    )
    state["edge"].should_exit = True  # type: ignore[attr-defined]
    thread.join(timeout=15)
    tracing.shutdown()
    os.environ.pop("SWITCHBOARD_TEST_OPERATING_KEY", None)
    os.environ.pop("SWITCHBOARD_TEST_OPERATING_HOOK", None)


def _trace_of(exporter: InMemorySpanExporter, trace_id: int, timeout: float = 5) -> list:
    """The finished spans of one trace, once its server span has ended."""
    deadline = time.monotonic() + timeout
    while True:
        spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
        if any(s.kind == SpanKind.SERVER for s in spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.02)


def test_one_trace_runs_from_the_edge_to_each_tool_call(
    traced: InProcessServer, upstream: Upstream, tool_receiver: ToolReceiver
) -> None:
    http = httpx.Client(
        base_url=traced.http_url, headers={"authorization": f"Bearer {traced.api_key}"}, timeout=30
    )
    tool_receiver.replies["/trace-orders"] = ToolReply(body='{"status": "shipped"}')
    slug, model = publish_upstream_agent(
        http, upstream, [webhook_tool(tool_receiver, "lookup_order", "/trace-orders")]
    )
    upstream.script(
        model,
        Reply(chunks=[], tool_calls=[{"id": "c1", "name": "lookup_order", "arguments": "{}"}]),
        Reply(chunks=["It shipped."]),
    )
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    request_id = "req-" + secrets.token_hex(8)
    response = http.post(
        CHAT,
        headers={"traceparent": f"00-{trace_id}-{client_span}-01", "x-request-id": request_id},
        json={"model": slug, "messages": [{"role": "user", "content": "Where is order A1?"}]},
    )
    assert response.status_code == 200, response.text

    spans = _trace_of(traced.spans, int(trace_id, 16))
    by_name: dict[str, list] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    [edge] = by_name[f"POST {CHAT}"]
    assert edge.kind == SpanKind.SERVER
    assert edge.parent is not None and edge.parent.span_id == int(client_span, 16)
    assert edge.attributes["switchboard.request_id"] == request_id
    assert edge.attributes["http.response.status_code"] == 200
    [core] = by_name["core /switchboard.v1.CompletionService/CreateChatCompletion"]
    assert core.parent.span_id == edge.context.span_id
    assert core.attributes["switchboard.request_id"] == request_id
    [turn] = by_name["turn"]
    assert turn.parent.span_id == core.context.span_id
    assert turn.attributes["switchboard.outcome"] == "complete"
    [retrieval] = by_name["retrieval"]
    assert retrieval.parent.span_id == turn.context.span_id
    steps = by_name["model step"]
    assert len(steps) == 2 and all(s.parent.span_id == turn.context.span_id for s in steps)
    calls = by_name["upstream chat completion"]
    assert len(calls) == 2
    assert {c.parent.span_id for c in calls} == {s.context.span_id for s in steps}
    assert all(
        c.kind == SpanKind.CLIENT and c.attributes["switchboard.outcome"] == "ok" for c in calls
    )
    [tool] = by_name["tool lookup_order"]
    assert tool.parent.span_id == turn.context.span_id
    assert tool.attributes["switchboard.outcome"] == "ok"

    # The upstream and the webhook were called within the same trace, by those spans.
    sent = [r.headers["traceparent"] for r in upstream.received[model]]
    assert [t.split("-")[1] for t in sent] == [trace_id, trace_id]
    assert {int(t.split("-")[2], 16) for t in sent} == {c.context.span_id for c in calls}
    [(_, hook_headers)] = tool_receiver.received["/trace-orders"]
    assert hook_headers["traceparent"].split("-")[1] == trace_id
    assert int(hook_headers["traceparent"].split("-")[2], 16) == tool.context.span_id


def test_a_request_without_traceparent_starts_its_own_trace(traced: InProcessServer) -> None:
    headers = {"authorization": f"Bearer {traced.api_key}"}
    body = {"model": "support-bot", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    response = httpx.post(f"{traced.http_url}{CHAT}", headers=headers, json=body)
    request_id = response.headers["x-request-id"]
    deadline = time.monotonic() + 5
    while True:
        edges = [
            s
            for s in traced.spans.get_finished_spans()
            if s.attributes.get("switchboard.request_id") == request_id
            and s.kind == SpanKind.SERVER
        ]
        if edges or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    [edge] = edges
    assert edge.parent is None
    names = {s.name for s in _trace_of(traced.spans, edge.context.trace_id)}
    assert {f"POST {CHAT}", "turn", "retrieval", "model step"} <= names


def test_a_grpc_call_continues_the_traceparent_in_its_metadata(traced: InProcessServer) -> None:
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    with grpc.insecure_channel(traced.grpc_target) as channel:
        stub = completion_service_pb2_grpc.CompletionServiceStub(channel)
        stub.CreateChatCompletion(
            completion_service_pb2.CreateChatCompletionRequest(
                model="support-bot",
                messages=[completion_service_pb2.ChatMessage(role="user", content="Hours?")],
            ),
            metadata=(
                ("authorization", f"Bearer {traced.api_key}"),
                ("traceparent", f"00-{trace_id}-{client_span}-01"),
                ("x-request-id", "grpc-trace-1"),
            ),
        )
    spans = _trace_of(traced.spans, int(trace_id, 16))
    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    assert server.name == "/switchboard.v1.CompletionService/CreateChatCompletion"
    assert server.parent.span_id == int(client_span, 16)
    assert server.attributes["switchboard.request_id"] == "grpc-trace-1"
    assert {"turn", "retrieval", "model step"} <= {s.name for s in spans}
