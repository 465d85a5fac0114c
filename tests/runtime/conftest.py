"""A server of its own whose agents talk to a scriptable upstream and call webhook tools, with
the upstream key and the webhook signing secret in its environment."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer
from tests.runtime.upstream import ToolReceiver, Upstream

UPSTREAM_KEY = "sk-upstream-" + uuid.uuid4().hex
HOOK_SECRET = "whsec-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    running = Upstream()
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def tool_receiver() -> Iterator[ToolReceiver]:
    running = ToolReceiver()
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def runtime_server(
    server_factory: Callable[..., contextlib.AbstractContextManager[RunningServer]],
) -> Iterator[RunningServer]:
    os.environ["SWITCHBOARD_TEST_UPSTREAM_KEY"] = UPSTREAM_KEY
    os.environ["SWITCHBOARD_TEST_HOOK_SECRET"] = HOOK_SECRET
    try:
        with server_factory(
            extra_args=("--max-tool-steps", "4", "--context-tokens", "1000")
        ) as running:
            yield running
    finally:
        del os.environ["SWITCHBOARD_TEST_UPSTREAM_KEY"]
        del os.environ["SWITCHBOARD_TEST_HOOK_SECRET"]


@pytest.fixture(scope="session")
def client(runtime_server: RunningServer) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {runtime_server.api_key}"}
    with httpx.Client(base_url=runtime_server.http_url, headers=headers, timeout=30) as http:
        yield http


KNOWLEDGE = """# Deliveries

Parcels to Norway travel by ferry and arrive within nine days of dispatch.
"""


@pytest.fixture
def upstream_agent(client: httpx.Client, upstream: Upstream) -> Callable[..., tuple[str, str]]:
    """Creates and publishes an agent answered by the upstream; returns (slug, upstream model)."""

    def make(base_url: str | None = None, **config: Any) -> tuple[str, str]:
        model = f"model-{uuid.uuid4().hex[:10]}"
        slug = f"llm-{uuid.uuid4().hex[:10]}"
        backend = {
            "base_url": base_url or upstream.base_url,
            "model": model,
            "api_key_env": "SWITCHBOARD_TEST_UPSTREAM_KEY",
        }
        backend.update(config.pop("upstream", {}))
        body = {
            "slug": slug,
            "instructions": "You are the parcel desk. Be brief.",
            "backend": {"openai_compatible": backend},
            **config,
        }
        created = client.post("/v1/agents", json=body)
        assert created.status_code == 200, created.text
        document = {"title": "Deliveries", "content": KNOWLEDGE}
        assert client.post(f"/v1/agents/{slug}/documents", json=document).status_code == 200
        published = client.post(f"/v1/agents/{slug}:publish")
        assert published.status_code == 200, published.text
        return slug, model

    return make
