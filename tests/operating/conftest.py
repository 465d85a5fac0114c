"""Servers of their own for the operating tests: one with agents answered by a scriptable
upstream (its key and a webhook secret in the environment), and helpers to read `/metrics`."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningServer
from tests.runtime.upstream import ToolReceiver, Upstream

UPSTREAM_KEY = "sk-upstream-secret-" + uuid.uuid4().hex
HOOK_SECRET = "whsec-operating-" + uuid.uuid4().hex
METRICS_TOKEN = "metrics-" + uuid.uuid4().hex
KNOWLEDGE = "# Deliveries\n\nParcels to Norway travel by ferry and arrive within nine days.\n"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape by name and labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(scraped: Samples, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def total(scraped: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in scraped.items() if n == name and wanted <= set(ls))


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


@contextlib.contextmanager
def secrets_in_environment() -> Iterator[None]:
    os.environ["SWITCHBOARD_TEST_OPERATING_KEY"] = UPSTREAM_KEY
    os.environ["SWITCHBOARD_TEST_OPERATING_HOOK"] = HOOK_SECRET
    try:
        yield
    finally:
        os.environ.pop("SWITCHBOARD_TEST_OPERATING_KEY", None)
        os.environ.pop("SWITCHBOARD_TEST_OPERATING_HOOK", None)


@pytest.fixture(scope="session")
def operated(
    server_factory: Callable[..., contextlib.AbstractContextManager[RunningServer]],
) -> Iterator[RunningServer]:
    """One worker, JSON logs at debug level, the upstream secrets in its environment."""
    with secrets_in_environment(), server_factory(extra_args=("--log-level", "debug")) as running:
        yield running


def client_of(server: RunningServer) -> httpx.Client:
    headers = {"authorization": f"Bearer {server.api_key}"}
    return httpx.Client(base_url=server.http_url, headers=headers, timeout=30)


def publish_upstream_agent(
    client: httpx.Client, upstream: Upstream, tools: list[dict[str, Any]] | None = None
) -> tuple[str, str]:
    """An agent answered by `upstream`; returns (slug, upstream model)."""
    model = f"model-{uuid.uuid4().hex[:10]}"
    slug = f"llm-{uuid.uuid4().hex[:10]}"
    body = {
        "slug": slug,
        "instructions": "You are the parcel desk.",
        "backend": {
            "openai_compatible": {
                "base_url": upstream.base_url,
                "model": model,
                "api_key_env": "SWITCHBOARD_TEST_OPERATING_KEY",
            }
        },
        "tools": tools or [],
    }
    created = client.post("/v1/agents", json=body)
    assert created.status_code == 200, created.text
    document = {"title": "Deliveries", "content": KNOWLEDGE}
    assert client.post(f"/v1/agents/{slug}/documents", json=document).status_code == 200
    assert client.post(f"/v1/agents/{slug}:publish").status_code == 200
    return slug, model


def webhook_tool(receiver: ToolReceiver, name: str, path: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"The {name} tool.",
        "parameters_json": '{"type": "object", "properties": {"order": {"type": "string"}}}',
        "webhook": {"url": receiver.url + path, "secret_env": "SWITCHBOARD_TEST_OPERATING_HOOK"},
    }
