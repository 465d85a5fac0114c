"""The `switchboard` command: keys and agents from the shell, and clear start-up failures."""

from __future__ import annotations

import socket
import subprocess

import grpc
from switchboard.v1 import model_service_pb2, model_service_pb2_grpc

from tests.conftest import SWITCHBOARD, free_port


def switchboard(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SWITCHBOARD), *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_keys_create_prints_a_working_key(tmp_path, server_factory):
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    with server_factory(workdir=tmp_path, database_url=url, grpc_only=True) as server:
        created = switchboard("keys", "create", "--scopes", "agents:read", "--database-url", url)
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]
        assert key.startswith("sk_")
        with grpc.insecure_channel(server.grpc_target) as channel:
            models = model_service_pb2_grpc.ModelServiceStub(channel).ListModels(
                model_service_pb2.ListModelsRequest(),
                metadata=(("authorization", f"Bearer {key}"),),
            )
        assert [m.id for m in models.data] == ["support-bot"]
    listed = switchboard("agents", "list", "--database-url", url)
    assert listed.returncode == 0
    assert "support-bot" in listed.stdout and "v1" in listed.stdout


def test_keys_create_refuses_unknown_scopes(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    refused = switchboard("keys", "create", "--scopes", "chat:write,root", "--database-url", url)
    assert refused.returncode == 2
    assert "unknown scope(s): root" in refused.stderr


def test_serve_stops_with_a_clear_message_when_a_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = switchboard(
            "serve",
            "--grpc-addr",
            f"127.0.0.1:{free_port()}",
            "--http-addr",
            f"127.0.0.1:{port}",
            "--database-url",
            f"sqlite+aiosqlite:///{tmp_path / 'taken.db'}",
        )
    assert failed.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in failed.stderr
