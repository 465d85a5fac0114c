"""grpcurl, as people debugging the server use it, through server reflection."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"


def grpcurl(*args: str) -> str:
    done = subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_lists_the_services(server):
    services = grpcurl(server.grpc_target, "list").split()
    assert set(services) >= {
        "switchboard.v1.AgentService",
        "switchboard.v1.SessionService",
        "switchboard.v1.CompletionService",
        "switchboard.v1.ModelService",
        "switchboard.v1.KeyService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


def test_describes_a_message(server):
    described = grpcurl(server.grpc_target, "describe", "switchboard.v1.ChatCompletionChunk")
    assert "message ChatCompletionChunk" in described
    assert "optional string finish_reason" in grpcurl(
        server.grpc_target, "describe", "switchboard.v1.ChatCompletionChunkChoice"
    )
    assert "uint32 created" in described


def test_calls_a_unary_rpc(server):
    out = grpcurl(
        "-H",
        f"authorization: Bearer {server.api_key}",
        "-d",
        json.dumps(
            {
                "model": "support-bot",
                "messages": [{"role": "user", "content": "Do you ship to Canada?"}],
            }
        ),
        server.grpc_target,
        "switchboard.v1.CompletionService/CreateChatCompletion",
    )
    reply = json.loads(out)
    assert "Canada" in reply["choices"][0]["message"]["content"]
    assert isinstance(reply["created"], int)
    assert isinstance(reply["usage"]["total_tokens"], int)


def test_calls_a_server_streaming_rpc(server):
    out = grpcurl(
        "-H",
        f"authorization: Bearer {server.api_key}",
        "-d",
        json.dumps(
            {
                "model": "support-bot",
                "messages": [{"role": "user", "content": "How do returns work?"}],
            }
        ),
        server.grpc_target,
        "switchboard.v1.CompletionService/StreamChatCompletion",
    )
    decoder = json.JSONDecoder()
    chunks, index = [], 0
    while index < len(out):
        if out[index].isspace():
            index += 1
            continue
        chunk, index = decoder.raw_decode(out, index)
        chunks.append(chunk)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c.get("choices"))
    assert "30 days" in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_health_check(server):
    assert json.loads(grpcurl(server.grpc_target, "grpc.health.v1.Health/Check")) == {
        "status": "SERVING"
    }


def test_missing_key_is_reported(server):
    done = subprocess.run(
        [
            GRPCURL,
            "-plaintext",
            "-d",
            "{}",
            server.grpc_target,
            "switchboard.v1.ModelService/ListModels",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "Unauthenticated" in done.stdout + done.stderr
