"""A second `switchboard serve --workers N` on ports already served refuses to start, instead
of joining the first through SO_REUSEPORT and splitting its traffic between two databases."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import SWITCHBOARD, RunningServer, free_port


@pytest.fixture(scope="module")
def first(server_factory) -> Iterator[RunningServer]:
    with server_factory(extra_args=("--workers", "2")) as running:
        yield running


def _second_serve(tmp_path, grpc_addr: str, http_addr: str) -> subprocess.CompletedProcess[str]:
    """Runs `serve --workers 2`; one that starts serving is stopped, workers included, after
    a while, and the test fails."""
    command = [
        str(SWITCHBOARD),
        "serve",
        "--workers",
        "2",
        "--grpc-addr",
        grpc_addr,
        "--http-addr",
        http_addr,
        "--database-url",
        f"sqlite+aiosqlite:///{tmp_path / 'second.db'}",
    ]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail(f"a second serve on {http_addr} and {grpc_addr} started serving")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _serves_its_own_data(server: RunningServer) -> None:
    headers = {"authorization": f"Bearer {server.api_key}"}
    # Several connections, so that each of the kernel's picks among listeners is exercised.
    for _ in range(8):
        with httpx.Client(base_url=server.http_url, headers=headers) as client:
            models = client.get("/v1/models")
            assert models.status_code == 200, models.text
            assert [m["id"] for m in models.json()["data"]] == ["support-bot"]
    for _ in range(8):
        with grpc.insecure_channel(server.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("taken", ["both", "http", "grpc"])
def test_a_second_serve_on_the_same_ports_refuses_to_start(
    first: RunningServer, tmp_path, taken: str
) -> None:
    http_addr = first.http_url.removeprefix("http://")
    grpc_addr = first.grpc_target
    if taken == "http":
        grpc_addr = f"127.0.0.1:{free_port()}"
    elif taken == "grpc":
        http_addr = f"127.0.0.1:{free_port()}"
    named = http_addr if taken in ("both", "http") else grpc_addr

    second = _second_serve(tmp_path, grpc_addr, http_addr)

    assert second.returncode != 0
    [message] = second.stderr.strip().splitlines()
    assert message.startswith(f"switchboard: cannot listen on {named}: ")
    assert not (tmp_path / "second.db").exists()
    _serves_its_own_data(first)


def test_serve_refuses_a_port_another_program_shares_with_so_reuseport(tmp_path) -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = f"127.0.0.1:{other.getsockname()[1]}"

        second = _second_serve(tmp_path, f"127.0.0.1:{free_port()}", taken)

    assert second.returncode != 0
    assert second.stderr.strip().splitlines() == [
        f"switchboard: cannot listen on {taken}: Address already in use"
    ]
