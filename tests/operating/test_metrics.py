"""`/metrics` after traffic through every door counts what happened, with one worker and with
two (whose samples meet in the supervisor's multiprocess directory)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
import httpx
import pytest
from switchboard.v1 import completion_service_pb2, completion_service_pb2_grpc

from tests.conftest import RunningServer
from tests.http.conftest import MANUAL
from tests.operating.conftest import (
    METRICS_TOKEN,
    client_of,
    publish_upstream_agent,
    samples,
    total,
    value,
    webhook_tool,
)
from tests.runtime.upstream import Reply, ToolReceiver, ToolReply, Upstream
from tests.tenancy.conftest import make_tenant

CHAT = "/v1/chat/completions"
QUESTION = {"role": "user", "content": "Do you ship to Canada?"}
GRPC_CHAT = "/switchboard.v1.CompletionService/CreateChatCompletion"


def _scrape(server: RunningServer, token: str | None = None) -> dict:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    # A new connection each time, so that any worker may answer.
    response = httpx.get(f"{server.http_url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def _grpc_chat(server: RunningServer, times: int) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = completion_service_pb2_grpc.CompletionServiceStub(channel)
        request = completion_service_pb2.CreateChatCompletionRequest(
            model="support-bot",
            messages=[
                completion_service_pb2.ChatMessage(role="user", content="When are you open?")
            ],
        )
        for _ in range(times):
            stub.CreateChatCompletion(
                request, metadata=(("authorization", f"Bearer {server.api_key}"),)
            )


@contextlib.contextmanager
def _open_stream(http: httpx.Client, slug: str) -> Iterator[None]:
    """A paced SSE reply held open for the block; read to its end afterwards."""
    body = {"model": slug, "stream": True, "messages": [{"role": "user", "content": "warranty"}]}
    first_event = threading.Event()
    failures: list[BaseException] = []

    def read() -> None:
        try:
            with http.stream("POST", CHAT, json=body) as response:
                for _ in response.iter_lines():
                    first_event.set()
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)
            first_event.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert first_event.wait(10)
    yield
    reader.join(timeout=30)
    assert not failures


def _paced_agent(http: httpx.Client) -> str:
    slug = f"paced-{uuid.uuid4().hex[:8]}"
    agent = {"slug": slug, "backend": {"builtin": {"delta_interval_ms": 100}}}
    assert http.post("/v1/agents", json=agent).status_code == 200
    document = {"title": "Manual", "content": MANUAL[:600]}
    assert http.post(f"/v1/agents/{slug}/documents", json=document).status_code == 200
    assert http.post(f"/v1/agents/{slug}:publish").status_code == 200
    return slug


def test_metrics_count_the_traffic_of_every_door(
    operated: RunningServer, upstream: Upstream, tool_receiver: ToolReceiver
) -> None:
    http = client_of(operated)
    tool_receiver.replies["/orders"] = ToolReply(body='{"status": "shipped"}')
    tool_slug, tool_model = publish_upstream_agent(
        http, upstream, [webhook_tool(tool_receiver, "lookup_order", "/orders")]
    )
    failing_slug, failing_model = publish_upstream_agent(http, upstream)
    paced = _paced_agent(http)
    before = _scrape(operated)

    for _ in range(3):
        assert http.post(CHAT, json={"model": "support-bot", "messages": [QUESTION]}).is_success
    for _ in range(2):
        streamed = http.post(
            CHAT, json={"model": "support-bot", "stream": True, "messages": [QUESTION]}
        )
        assert streamed.text.rstrip().endswith("data: [DONE]")
    assert http.get("/v1/agents").status_code == 200
    refused = httpx.get(f"{operated.http_url}/v1/agents", headers={"authorization": "Bearer sk_x"})
    assert refused.status_code == 401
    _grpc_chat(operated, 2)
    upstream.script(
        tool_model,
        Reply(chunks=[], tool_calls=[{"id": "c1", "name": "lookup_order", "arguments": "{}"}]),
        Reply(chunks=["Shipped."]),
    )
    assert http.post(CHAT, json={"model": tool_slug, "messages": [QUESTION]}).is_success
    upstream.script(failing_model, *[Reply(status=500)] * 3)
    assert http.post(CHAT, json={"model": failing_slug, "messages": [QUESTION]}).status_code == 502
    with _open_stream(http, paced):
        during = _scrape(operated)
    after = _scrape(operated)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "switchboard_requests_total"
    assert delta(requests, door="openai", route=CHAT, status="200") == 3 + 2 + 1 + 1
    assert delta(requests, door="openai", route=CHAT, status="502") == 1
    assert (
        delta(
            requests, door="native", route="/switchboard.v1.AgentService/ListAgents", status="200"
        )
        == 1
    )
    assert (
        delta(
            requests, door="native", route="/switchboard.v1.AgentService/ListAgents", status="401"
        )
        == 1
    )
    assert delta(requests, door="grpc", route=GRPC_CHAT, status="OK") == 2
    assert delta("switchboard_request_duration_seconds_count", door="grpc", route=GRPC_CHAT) == 2
    assert value(before, requests, door="http", route="/metrics", status="200") >= 0
    assert delta(requests, door="http", route="/metrics", status="200") >= 2

    turns = "switchboard_turn_duration_seconds_count"
    assert delta(turns, backend="builtin", outcome="complete") == 3 + 2 + 2 + 1
    assert delta(turns, backend="openai_compatible", outcome="complete") == 1
    assert delta(turns, backend="openai_compatible", outcome="failed") == 1
    assert delta("switchboard_time_to_first_token_seconds_count", backend="builtin") == 8
    assert delta("switchboard_upstream_calls_total", outcome="ok") == 2
    assert delta("switchboard_upstream_calls_total", outcome="error") == 1
    assert delta("switchboard_upstream_call_duration_seconds_count", outcome="ok") == 2
    assert delta("switchboard_tool_calls_total", outcome="ok") == 1
    assert total(after, "switchboard_tokens_total", direction="out") > total(
        before, "switchboard_tokens_total", direction="out"
    )
    assert total(after, "switchboard_tokens_total", direction="in") > 0
    assert delta("switchboard_write_batch_size_count") >= 1
    assert delta("switchboard_write_batch_wait_seconds_count") >= 9

    assert value(during, "switchboard_active_streams", door="openai") == 1
    assert value(after, "switchboard_active_streams", door="openai") == 0
    for reason in ("rate_limit", "balance"):
        assert ("switchboard_refusals_total", frozenset({("reason", reason)})) in after


@pytest.fixture(scope="module")
def two_workers(
    server_factory: Callable[..., contextlib.AbstractContextManager[RunningServer]],
) -> Iterator[RunningServer]:
    args = ("--workers", "2", "--metrics-token", METRICS_TOKEN)
    with server_factory(extra_args=args) as running:
        yield running


def test_two_workers_report_one_truthful_set(two_workers: RunningServer) -> None:
    headers = {"authorization": f"Bearer {two_workers.api_key}"}
    body = {"model": "support-bot", "messages": [QUESTION]}
    before = _scrape(two_workers, METRICS_TOKEN)
    for _ in range(20):
        # A connection per request: the kernel spreads them over both workers.
        response = httpx.post(f"{two_workers.http_url}{CHAT}", json=body, headers=headers)
        assert response.status_code == 200
    _grpc_chat(two_workers, 4)
    deadline = time.monotonic() + 5
    for _ in range(6):
        after = _scrape(two_workers, METRICS_TOKEN)
        counted = value(
            after, "switchboard_requests_total", door="openai", route=CHAT, status="200"
        )
        assert (
            counted
            - value(before, "switchboard_requests_total", door="openai", route=CHAT, status="200")
            == 20
        )
        turns = "switchboard_turn_duration_seconds_count"
        labels = {"backend": "builtin", "outcome": "complete"}
        assert value(after, turns, **labels) - value(before, turns, **labels) == 24
        grpc_ok = "switchboard_requests_total"
        assert value(after, grpc_ok, door="grpc", route=GRPC_CHAT, status="OK") == 4
        assert time.monotonic() < deadline


def test_the_metrics_token_guards_the_endpoint(two_workers: RunningServer) -> None:
    url = f"{two_workers.http_url}/metrics"
    assert httpx.get(url).status_code == 401
    refused = httpx.get(url, headers={"authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert "Authorization" in refused.text
    # An API key is not the metrics token.
    assert (
        httpx.get(url, headers={"authorization": f"Bearer {two_workers.api_key}"}).status_code
        == 401
    )
    assert httpx.get(url, headers={"authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200


def test_refusals_count_rate_limits_and_spent_balances(operated: RunningServer) -> None:
    http = client_of(operated)
    limited = http.post(
        "/v1/keys",
        json={
            "display_name": "one a minute",
            "scopes": ["chat:write"],
            "rate_limit": {"requests_per_minute": 1},
        },
    )
    assert limited.status_code == 200, limited.text
    broke = make_tenant(operated, balance=0)
    before = _scrape(operated)
    headers = {"authorization": f"Bearer {limited.json()['secret']}"}
    body = {"model": "support-bot", "messages": [QUESTION]}
    assert httpx.post(f"{operated.http_url}{CHAT}", json=body, headers=headers).status_code == 200
    assert httpx.post(f"{operated.http_url}{CHAT}", json=body, headers=headers).status_code == 429
    refused = broke.http.post(CHAT, json={"model": "helper", "messages": [QUESTION]})
    assert refused.status_code == 402
    after = _scrape(operated)
    for reason in ("rate_limit", "balance"):
        counted = value(after, "switchboard_refusals_total", reason=reason)
        assert counted - value(before, "switchboard_refusals_total", reason=reason) == 1
