"""A kinder CLI: database URLs as people type them, one clear line and exit status 2 for a bad
or unreachable database, no empty database made by a command other than `serve`, "serving"
only once both ports listen, demo keys that do not pile up, publishable keys, and errors in
the words of the door they came through."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import grpc
import httpx
import pytest
from switchboard.v1 import model_service_pb2, model_service_pb2_grpc

from tests.cli.test_commands import switchboard
from tests.conftest import SWITCHBOARD, free_port


def _one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("switchboard: ")
    return lines[0]


def test_commands_other_than_serve_name_a_missing_database_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.db"
    for args in (
        ("keys", "create", "--scopes", "chat:write"),
        ("agents", "list"),
        ("workspaces", "list"),
        ("usage", "ws_default"),
    ):
        line = _one_line_failure(switchboard(*args, "--database-url", f"sqlite:///{missing}"))
        assert str(missing) in line
    assert not missing.exists()
    # The default URL is a file in the current folder: named in full too.
    line = _one_line_failure(switchboard("agents", "list", cwd=tmp_path))
    assert str(tmp_path / "switchboard.db") in line


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://root@127.0.0.1/shop", "SQLite or PostgreSQL, not mysql"),
        ("switchboard.db", "is not a database URL"),
        ("sqlite://", "names no file"),
        ("postgresql://nobody:hunter2@127.0.0.1:1/nowhere", "cannot open the database"),
    ],
)
def test_a_bad_or_unreachable_database_is_one_line_and_status_2(
    tmp_path: Path, url: str, said: str
) -> None:
    for args in (("agents", "list"), ("serve", "--grpc-addr", f"127.0.0.1:{free_port()}")):
        line = _one_line_failure(
            switchboard(
                *args,
                "--http-addr",
                f"127.0.0.1:{free_port()}",
                "--database-url",
                url,
                cwd=tmp_path,
            )
            if args[0] == "serve"
            else switchboard(*args, "--database-url", url, cwd=tmp_path)
        )
        assert said in line
        assert "hunter2" not in line


def test_serve_in_a_missing_folder_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'folder.db'}"
    line = _one_line_failure(
        switchboard(
            "serve",
            "--grpc-addr",
            f"127.0.0.1:{free_port()}",
            "--http-addr",
            f"127.0.0.1:{free_port()}",
            "--database-url",
            url,
        )
    )
    assert "does not exist" in line


def test_a_database_the_migrations_cannot_upgrade_is_one_line_and_status_2(
    tmp_path: Path,
) -> None:
    path = tmp_path / "elsewhere.db"
    with sqlite3.connect(path) as database:
        database.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        database.execute("INSERT INTO alembic_version VALUES ('not-ours')")
    line = _one_line_failure(switchboard("agents", "list", "--database-url", f"sqlite:///{path}"))
    assert "cannot open the database" in line
    assert "not-ours" in line


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], int, int]:
    grpc_port, http_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            str(SWITCHBOARD),
            "serve",
            "--grpc-addr",
            f"127.0.0.1:{grpc_port}",
            "--http-addr",
            f"127.0.0.1:{http_port}",
            *args,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return process, grpc_port, http_port


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    rest, _ = process.communicate(timeout=30)
    return rest


def _read_until_serving(process: subprocess.Popen[str]) -> list[str]:
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Switchboard is serving"):
            return lines
    raise AssertionError(f"no serving line: {lines}")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serving_is_printed_once_both_ports_listen(tmp_path: Path, workers: str) -> None:
    process, grpc_port, http_port = _serve(
        tmp_path, "--database-url", f"sqlite:///{tmp_path / 'ports.db'}", "--workers", workers
    )
    try:
        _read_until_serving(process)
        # No retry: at the moment the line is printed, both ports answer.
        assert httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5).status_code == 200
        with socket.create_connection(("127.0.0.1", grpc_port), timeout=5):
            pass
    finally:
        _stop(process)


def test_demo_revokes_the_key_it_printed_before_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    grpc_port, http_port = free_port(), free_port()
    keys = []
    outputs = []
    for _ in range(2):
        process = subprocess.Popen(
            [
                str(SWITCHBOARD),
                "serve",
                "--demo",
                "--grpc-addr",
                f"127.0.0.1:{grpc_port}",
                "--http-addr",
                f"127.0.0.1:{http_port}",
                "--database-url",
                url,
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            lines = _read_until_serving(process)
            outputs.append(lines)
            keys.append(next(line for line in lines if line.startswith("SWITCHBOARD_API_KEY=")))
            key = keys[-1].split("=", 1)[1]
            models = httpx.get(
                f"http://127.0.0.1:{http_port}/v1/models",
                headers={"authorization": f"Bearer {key}"},
            )
            assert models.status_code == 200
            if len(keys) == 2:
                old = keys[0].split("=", 1)[1]
                refused = httpx.get(
                    f"http://127.0.0.1:{http_port}/v1/models",
                    headers={"authorization": f"Bearer {old}"},
                )
                assert refused.status_code == 401
        finally:
            _stop(process)
    assert not any("Revoked" in line for line in outputs[0])
    [said] = [line for line in outputs[1] if line.startswith("Revoked the previous demo key")]
    assert keys[0].split("=", 1)[1][:7] in said


def test_keys_create_makes_publishable_keys(tmp_path: Path, server_factory) -> None:
    url = f"sqlite:///{tmp_path / 'pk.db'}"
    with server_factory(workdir=tmp_path, database_url=url) as server:
        created = switchboard(
            "keys",
            "create",
            "--publishable",
            "--agents",
            "support-bot",
            "--origins",
            "https://shop.example",
            "--name",
            "widget",
            "--database-url",
            url,
        )
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]
        assert key.startswith("pk_")
        body = {"model": "support-bot", "messages": [{"role": "user", "content": "Hours?"}]}
        headers = {"authorization": f"Bearer {key}", "origin": "https://shop.example"}
        chat = httpx.post(f"{server.http_url}/v1/chat/completions", json=body, headers=headers)
        assert chat.status_code == 200, chat.text
        elsewhere = {**headers, "origin": "https://evil.example"}
        assert (
            httpx.post(
                f"{server.http_url}/v1/chat/completions", json=body, headers=elsewhere
            ).status_code
            == 403
        )
        assert httpx.get(f"{server.http_url}/v1/agents", headers=headers).status_code == 403

        for args, said in (
            (("--publishable",), "needs --agents"),
            (
                ("--publishable", "--agents", "no-such-agent"),
                "agent 'no-such-agent' does not exist",
            ),
            (("--publishable", "--agents", "support-bot", "--origins", "shop"), "is not an origin"),
            (("--publishable", "--agents", "support-bot", "--scopes", "agents:read"), "chat:write"),
            (("--scopes", "chat:write", "--agents", "support-bot"), "add --publishable"),
        ):
            line = _one_line_failure(switchboard("keys", "create", *args, "--database-url", url))
            assert said in line


def test_a_key_error_speaks_the_language_of_its_door(server) -> None:
    missing = httpx.get(f"{server.http_url}/v1/agents")
    invalid = httpx.get(f"{server.http_url}/v1/agents", headers={"authorization": "Bearer sk_no"})
    chat = httpx.post(
        f"{server.http_url}/v1/chat/completions",
        headers={"authorization": "Bearer sk_no"},
        json={"model": "support-bot", "messages": [{"role": "user", "content": "Hi"}]},
    )
    for response in (missing, invalid):
        assert response.status_code == 401
        assert "header `Authorization" in response.json()["message"]
        assert "metadata" not in response.json()["message"]
    assert chat.status_code == 401
    assert "header `Authorization" in chat.json()["error"]["message"]
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer sk_no"),)):
            with pytest.raises(grpc.RpcError) as caught:
                stub.ListModels(model_service_pb2.ListModelsRequest(), metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "header" not in caught.value.details()
