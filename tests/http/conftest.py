"""Fixtures for the raw-HTTP tests: clients of the running edge and a slow-streaming agent."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from http_edge.app import create_app
from tests.conftest import RunningServer, free_port

# Long enough that a reply streams for seconds at the agent's pace, so a client can leave mid-way.
MANUAL = " ".join(
    f"The warranty covers part {n} of the espresso machine for two full years from purchase, "
    f"including the pump, the boiler and the steam wand, when the machine is descaled monthly."
    for n in range(1, 13)
)
# Different words from MANUAL, so the two agents' documents do not dilute each other's ranking.
GARDEN_GUIDE = " ".join(
    f"Greenhouse {n} of the botanical garden opens at dawn on weekdays; guided tours of the "
    f"orchids, ferns and cacti leave hourly from the fountain near the northern gate."
    for n in range(1, 13)
)


@dataclass
class SlowAgent:
    id: str
    slug: str
    question: str


@pytest.fixture(scope="session")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    """An httpx client of the edge, authenticated with the demo key."""
    headers = {"authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.http_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
async def async_http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """The async twin of `http`, for tests that run inside the event loop."""
    headers = {"authorization": f"Bearer {server.api_key}"}
    async with httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def anonymous(server: RunningServer) -> Iterator[httpx.Client]:
    """An httpx client of the edge without credentials."""
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


def create_published_agent(
    http: httpx.Client, delta_interval_ms: int, document: str, question: str
) -> SlowAgent:
    """An agent whose builtin backend pauses between deltas, with a long knowledge document."""
    slug = f"slow-{uuid.uuid4().hex[:8]}"
    agent = {
        "slug": slug,
        "display_name": "Slow warranty bot",
        "backend": {"builtin": {"delta_interval_ms": delta_interval_ms}},
        "knowledge": {"top_k": 1},
    }
    created = http.post("/v1/agents", json=agent)
    assert created.status_code == 200, created.text
    agent_id = created.json()["id"]
    added = http.post(
        f"/v1/agents/{agent_id}/documents", json={"title": "Manual", "content": document}
    )
    assert added.status_code == 200, added.text
    published = http.post(f"/v1/agents/{agent_id}:publish")
    assert published.status_code == 200, published.text
    return SlowAgent(agent_id, slug, question)


@pytest.fixture(scope="session")
def slow_agent(http: httpx.Client) -> SlowAgent:
    question = "What does the warranty of the espresso machine cover?"
    return create_published_agent(http, 40, MANUAL, question)


@pytest.fixture(scope="session")
def paced_agent(http: httpx.Client) -> SlowAgent:
    """Pauses longer between deltas than the short ping interval of `pinging_edge`."""
    question = "When do guided tours of the botanical garden greenhouse leave?"
    return create_published_agent(http, 250, GARDEN_GUIDE, question)


@pytest.fixture(scope="session")
def pinging_edge(server: RunningServer) -> Iterator[str]:
    """A second edge in front of the same core, with a 0.1 s ping interval and a 64 KiB limit."""
    app = create_app(server.grpc_target, ping_interval=0.1, max_body_bytes=65_536)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    edge = uvicorn.Server(config)
    thread = threading.Thread(target=edge.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not edge.started:
        assert time.monotonic() < deadline, "edge did not start"
        time.sleep(0.02)
    yield url
    edge.should_exit = True
    thread.join(timeout=10)
