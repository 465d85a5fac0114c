"""Workspaces made with the CLI in a server's database, and servers sharing Redis."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import SWITCHBOARD, RunningServer

REDIS_URL = "redis://127.0.0.1:6379/0"


def switchboard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SWITCHBOARD), *args], capture_output=True, text=True, timeout=60, check=False
    )


@dataclass
class Tenant:
    id: str
    name: str
    key: str
    http: httpx.Client


def make_tenant(server: RunningServer, balance: int | None = None) -> Tenant:
    """A new workspace with its first all-scopes key, and the demo agent's twin in it."""
    name = f"tenant-{uuid.uuid4().hex[:8]}"
    created = switchboard("workspaces", "create", name, "--database-url", server.database_url)
    assert created.returncode == 0, created.stderr
    workspace_id = created.stdout.split()[1]
    key = created.stdout.strip().splitlines()[-1].removeprefix("SWITCHBOARD_API_KEY=")
    if balance is not None:
        set_balance(server, workspace_id, str(balance))
    http = httpx.Client(
        base_url=server.http_url, headers={"authorization": f"Bearer {key}"}, timeout=30
    )
    agent = {"slug": "helper", "fallback_reply": "I only know about parcels."}
    assert http.post("/v1/agents", json=agent).status_code == 200
    document = {"title": "Parcels", "content": "Parcels to Norway arrive within nine days."}
    assert http.post("/v1/agents/helper/documents", json=document).status_code == 200
    assert http.post("/v1/agents/helper:publish").status_code == 200
    return Tenant(workspace_id, name, key, http)


def set_balance(server: RunningServer, workspace: str, tokens: str) -> None:
    done = switchboard(
        "workspaces", "set-balance", workspace, tokens, "--database-url", server.database_url
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="session")
def redis_server(server_factory) -> RunningServer:
    with server_factory(extra_args=("--redis-url", REDIS_URL)) as running:
        yield running


@pytest.fixture(scope="session")
def http(server: RunningServer):
    """An httpx client of the shared server, with its demo key."""
    headers = {"authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.http_url, headers=headers, timeout=30) as client:
        yield client
