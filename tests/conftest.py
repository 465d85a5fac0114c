"""Fixtures that start real Switchboard servers on free 127.0.0.1 ports and stop them."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from server.store.database import migrate

# PostgreSQL for the tests that need a real shared database: each run creates a uniquely named
# database from this URL and drops it afterwards.
POSTGRES_URL = os.environ.get(
    "SWITCHBOARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _admin_conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    name = f"switchboard_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(_admin_conninfo(POSTGRES_URL), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable under CI: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
            migrate(url)
            yield url
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


ROOT = Path(__file__).resolve().parent.parent
SWITCHBOARD = Path(sys.executable).with_name("switchboard")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    grpc_target: str
    http_url: str
    api_key: str
    database_url: str
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def _wait_ready(server: RunningServer, *, http: bool, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{server.output()}")
            try:
                response = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"gRPC not ready:\n{server.output()}")
            time.sleep(0.1)
    while http:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.http_url}/readyz", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"HTTP edge not ready:\n{server.output()}")
        time.sleep(0.1)


@contextlib.contextmanager
def run_server(
    workdir: Path,
    *,
    database_url: str | None = None,
    grpc_only: bool = False,
    extra_args: tuple[str, ...] = (),
) -> Iterator[RunningServer]:
    """Runs `switchboard serve --demo` until the block ends, then stops it with SIGTERM."""
    workdir.mkdir(parents=True, exist_ok=True)
    grpc_port, http_port = free_port(), free_port()
    database_url = database_url or f"sqlite+aiosqlite:///{workdir / 'switchboard.db'}"
    args = [
        str(SWITCHBOARD),
        "serve",
        "--demo",
        "--grpc-addr",
        f"127.0.0.1:{grpc_port}",
        "--http-addr",
        f"127.0.0.1:{http_port}",
        "--database-url",
        database_url,
        *extra_args,
    ]
    if grpc_only:
        args.append("--grpc-only")
    log = workdir / f"server-{grpc_port}.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            args, cwd=workdir, stdout=sink, stderr=subprocess.STDOUT, text=True, env=os.environ
        )
    server = RunningServer(
        grpc_target=f"127.0.0.1:{grpc_port}",
        http_url=f"http://127.0.0.1:{http_port}",
        api_key="",
        database_url=database_url,
        process=process,
        log=log,
    )
    try:
        _wait_ready(server, http=not grpc_only)
        key_lines = [
            line for line in server.output().splitlines() if line.startswith("SWITCHBOARD_API_KEY=")
        ]
        server.api_key = key_lines[-1].split("=", 1)[1]
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def run_edge(core: RunningServer) -> Iterator[str]:
    """Runs `switchboard edge --core` in front of `core` until the block ends, then stops it
    with SIGTERM; yields the edge's base URL. Its log lands next to the core's."""
    address = f"127.0.0.1:{free_port()}"
    log = core.log.with_name(f"edge-{address.rsplit(':', 1)[1]}.log")
    with log.open("w") as sink:
        process = subprocess.Popen(
            [str(SWITCHBOARD), "edge", "--core", core.grpc_target, "--http-addr", address],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ,
        )
    url = f"http://{address}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None:
                raise RuntimeError(f"the edge exited early:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the edge did not become ready:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# `make test` runs the API suites a second time with this set to `postgresql`, so that every
# door is tried on both databases.
SHARED_DATABASE = os.environ.get("SWITCHBOARD_TEST_DATABASE", "sqlite")
# `together`: one `serve` runs core and edge. `split`: `serve --grpc-only` and, in front of it,
# `switchboard edge --core`, the layout in which edges scale apart from cores.
SHARED_LAYOUT = os.environ.get("SWITCHBOARD_TEST_LAYOUT", "together")


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RunningServer]:
    """One server with the demo agent, shared by the whole run, on SQLite or, with
    `SWITCHBOARD_TEST_DATABASE=postgresql`, on a fresh PostgreSQL database; core and edge in
    one process or, with `SWITCHBOARD_TEST_LAYOUT=split`, in two."""
    database_url = None
    if SHARED_DATABASE == "postgresql":
        database_url = request.getfixturevalue("postgresql_url")
    elif SHARED_DATABASE != "sqlite":
        raise pytest.UsageError("SWITCHBOARD_TEST_DATABASE must be sqlite or postgresql")
    if SHARED_LAYOUT not in ("together", "split"):
        raise pytest.UsageError("SWITCHBOARD_TEST_LAYOUT must be together or split")
    split = SHARED_LAYOUT == "split"
    workdir = tmp_path_factory.mktemp("server")
    with run_server(workdir, database_url=database_url, grpc_only=split) as running:
        if not split:
            yield running
            return
        with run_edge(running) as edge_url:
            yield dataclasses.replace(running, http_url=edge_url)


@pytest.fixture(scope="session")
def server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., contextlib.AbstractContextManager[RunningServer]]:
    """Starts extra servers for tests that need their own (restarts, other databases)."""

    def start(**kwargs: object) -> contextlib.AbstractContextManager[RunningServer]:
        workdir = kwargs.pop("workdir", None) or tmp_path_factory.mktemp("own-server")
        return run_server(workdir, **kwargs)  # type: ignore[arg-type]

    return start
