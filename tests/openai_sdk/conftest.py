"""Fixtures for the OpenAI SDK tests: sync and async clients pointed at the edge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest

from tests.conftest import RunningServer


@pytest.fixture(scope="session")
def base_url(server: RunningServer) -> str:
    return f"{server.http_url}/v1"


@pytest.fixture(scope="session")
def client(server: RunningServer, base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url, api_key=server.api_key, max_retries=0) as sdk:
        yield sdk


@pytest.fixture(scope="session")
async def async_client(server: RunningServer, base_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=base_url, api_key=server.api_key, max_retries=0) as sdk:
        yield sdk


@pytest.fixture(scope="session")
def rest(server: RunningServer) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.http_url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
async def async_rest(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"authorization": f"Bearer {server.api_key}"}
    async with httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def read_only_key(rest: httpx.Client) -> str:
    """A secret key that may read agents but not chat."""
    created = rest.post("/v1/keys", json={"display_name": "read only", "scopes": ["agents:read"]})
    assert created.status_code == 200, created.text
    return created.json()["secret"]
