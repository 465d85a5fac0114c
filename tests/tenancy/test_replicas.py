"""Two serving processes on one PostgreSQL database and one Redis behave as one server:
sessions, idempotency, rate limits, cancels and publishing cross between them.

The processes are two `switchboard serve` replicas, then the two workers of one `serve --workers
2`. Workers share their ports, and the kernel hands each new connection to one of them; so each
client here keeps one connection, opened again until it reaches the process wanted, and after
every test the log (whose lines name their process) shows which process answered each request."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from tests.conftest import RunningServer
from tests.http.conftest import MANUAL
from tests.security.conftest import count_rows
from tests.tenancy.conftest import REDIS_URL

QUESTION = [{"role": "user", "content": "Do you ship to Canada?"}]
# How long a connection may take to reach the process wanted, and an access line to be logged.
_WAIT_SECONDS = 15


def _pids_by_request(server: RunningServer) -> dict[str, set[int]]:
    """The processes that logged each request id in the server's log."""
    pids: dict[str, set[int]] = {}
    for line in server.output().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "request_id" in record:
            pids.setdefault(record["request_id"], set()).add(record["pid"])
    return pids


def _served_by(server: RunningServer, response: httpx.Response) -> set[int]:
    """The processes that logged answering `response`, once its access line is written."""
    request_id = response.headers["x-request-id"]
    deadline = time.monotonic() + _WAIT_SECONDS
    while (pids := _pids_by_request(server).get(request_id)) is None:
        assert time.monotonic() < deadline, f"request {request_id} is not in the log"
        time.sleep(0.01)
    return pids


@dataclass
class Deployment:
    """Serving processes on one database and one Redis: the `serve` replicas in `servers`, or
    the workers of the one `serve` there."""

    servers: tuple[RunningServer, ...]
    # The ids of the two serving processes the tests talk to.
    pids: list[int] = field(default_factory=list)
    # Every response a client received, with the server it came through and the process that
    # was meant to answer it.
    answers: list[tuple[httpx.Response, RunningServer, int]] = field(default_factory=list)

    @property
    def api_key(self) -> str:
        return self.servers[0].api_key

    def client(self, process: int, key: str | None = None) -> httpx.Client:
        """A client of serving process 0 or 1 (the first two found), with one connection."""
        server = self.servers[process % len(self.servers)]
        headers = {"authorization": f"Bearer {key or self.api_key}"}
        deadline = time.monotonic() + _WAIT_SECONDS
        while True:
            client = httpx.Client(
                base_url=server.http_url,
                headers=headers,
                timeout=30,
                limits=httpx.Limits(max_connections=1),
            )
            (pid,) = _served_by(server, client.get("/healthz"))
            if len(self.pids) == process and pid not in self.pids:
                self.pids.append(pid)
            if process < len(self.pids) and self.pids[process] == pid:
                client.event_hooks["response"].append(
                    lambda response, s=server, p=pid: self.answers.append((response, s, p))
                )
                return client
            client.close()
            assert time.monotonic() < deadline, f"no connection reached process {process}"

    def check_answers(self) -> None:
        """Every answer came from the process its client was opened to reach."""
        for response, server, pid in self.answers:
            served = _served_by(server, response)
            assert served == {pid}, (
                f"{response.request.method} {response.request.url.path} was meant for process "
                f"{pid} and answered by {served}: its connection was opened again elsewhere"
            )
        self.answers.clear()


@pytest.fixture(scope="module", params=["two replicas", "two workers"])
def deployment(
    request: pytest.FixtureRequest, server_factory, postgresql_url: str
) -> Iterator[Deployment]:
    def serve(*args: str) -> RunningServer:
        started = server_factory(
            database_url=postgresql_url, extra_args=("--redis-url", REDIS_URL, *args)
        )
        return stack.enter_context(started)

    with contextlib.ExitStack() as stack:
        if request.param == "two replicas":
            servers = (serve(), serve())
        else:
            servers = (serve("--workers", "2"),)
        deployment = Deployment(servers)
        deployment.client(0).close()
        deployment.client(1).close()
        if request.param == "two replicas":
            assert deployment.pids == [server.process.pid for server in servers]
        else:
            # Two workers, neither of them the `serve` process that supervises them.
            assert servers[0].process.pid not in deployment.pids
        deployment.answers.clear()
        yield deployment


@pytest.fixture
def reach(deployment: Deployment) -> Iterator[Callable[..., httpx.Client]]:
    """`reach(0)` and `reach(1)`: new clients of the first and the second serving process.
    After the test, the log must show that each of their answers came from that process."""
    clients: list[httpx.Client] = []

    def open_client(process: int, key: str | None = None) -> httpx.Client:
        clients.append(deployment.client(process, key))
        return clients[-1]

    yield open_client
    for client in clients:
        client.close()
    deployment.check_answers()


def test_a_session_continues_on_the_other_process(reach):
    on_a, on_b = reach(0), reach(1)
    session = on_a.post("/v1/sessions", json={"agent": "agents/support-bot"}).json()["id"]
    assert on_a.post(f"/v1/sessions/{session}/messages", json={"content": "Returns?"})
    assert on_b.post(f"/v1/sessions/{session}/messages", json={"content": "Canada?"})
    messages = on_b.get(f"/v1/sessions/{session}/messages").json()["messages"]
    assert [m["position"] for m in messages] == [1, 2, 3, 4]
    assert messages[0]["content"] == "Returns?" and messages[2]["content"] == "Canada?"


def test_one_idempotent_request_sent_to_both_runs_once(deployment, reach):
    headers = {"idempotency-key": f"both-{uuid.uuid4().hex}"}
    body = {"model": "support-bot", "messages": QUESTION}
    clients = [reach(n % 2) for n in range(6)]

    def send(client: httpx.Client) -> httpx.Response:
        return client.post("/v1/chat/completions", json=body, headers=headers)

    with ThreadPoolExecutor(len(clients)) as pool:
        answers = list(pool.map(send, clients))
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.json()["id"] for answer in answers}) == 1
    session = answers[0].json()["session_id"]
    assert count_rows(deployment.servers[0], "usage_records", session_id=session) == 1


def test_a_rate_limit_is_shared(reach):
    key = (
        reach(0)
        .post("/v1/keys", json={"scopes": ["chat:write"], "rate_limit": {"requests_per_minute": 3}})
        .json()["secret"]
    )
    on_a, on_b = reach(0, key), reach(1, key)
    body = {"model": "support-bot", "messages": QUESTION}
    statuses = [
        client.post("/v1/chat/completions", json=body).status_code
        for client in (on_a, on_a, on_b, on_b)
    ]
    assert statuses == [200, 200, 200, 429]


def test_a_cancel_sent_to_one_process_stops_the_turn_on_the_other(reach):
    on_a, on_b = reach(0), reach(1)
    slug = f"slow-{uuid.uuid4().hex[:8]}"
    agent = {"slug": slug, "backend": {"builtin": {"delta_interval_ms": 100}}}
    assert on_a.post("/v1/agents", json=agent).status_code == 200
    document = {"title": "Manual", "content": MANUAL}
    assert on_a.post(f"/v1/agents/{slug}/documents", json=document).status_code == 200
    assert on_a.post(f"/v1/agents/{slug}:publish").status_code == 200
    session = on_a.post("/v1/sessions", json={"agent": f"agents/{slug}"}).json()["id"]
    events: list[dict[str, object]] = []
    started = threading.Event()

    def stream() -> None:
        with on_a.stream(
            "POST",
            f"/v1/sessions/{session}/messages:stream",
            json={"content": "What does the warranty of the espresso machine cover?"},
        ) as response:
            for line in response.iter_lines():
                if line.strip():
                    events.append(json.loads(line)["result"])
                    started.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert started.wait(10)
    cancelled = on_b.post(f"/v1/sessions/{session}:cancel", json={})
    reader.join(timeout=20)
    assert cancelled.json() == {"cancelled_turns": 1}
    assert events[-1]["error"]["reason"] == "TURN_CANCELLED"  # type: ignore[index]


def test_an_agent_published_on_one_process_is_served_by_the_other_within_a_second(reach):
    on_a, on_b = reach(0), reach(1)
    slug = f"fresh-{uuid.uuid4().hex[:8]}"
    assert on_a.post("/v1/agents", json={"slug": slug, "fallback_reply": "v1"}).status_code == 200
    assert on_a.post(f"/v1/agents/{slug}:publish").status_code == 200
    body = {"model": slug, "messages": QUESTION}
    assert on_b.post("/v1/chat/completions", json=body).json()["content"] == "v1"
    assert on_a.patch(f"/v1/agents/{slug}", json={"fallback_reply": "v2"}).status_code == 200
    assert on_a.post(f"/v1/agents/{slug}:publish").status_code == 200
    published = time.monotonic()
    while on_b.post("/v1/chat/completions", json=body).json()["content"] != "v2":
        assert time.monotonic() - published < 1.5
        time.sleep(0.05)


def test_sigterm_stops_a_server_with_redis_at_once(server_factory):
    """Its listener for other replicas' cancels is no turn to wait for."""
    with server_factory(extra_args=("--redis-url", REDIS_URL)) as own:
        own.process.terminate()
        began = time.monotonic()
        assert own.process.wait(timeout=15) == 0
        stopped = time.monotonic() - began
    assert stopped < 3, f"the server took {stopped:.1f} s to stop"
    assert "still running at exit" not in own.output()
