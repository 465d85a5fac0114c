"""`/openapi.json`, `/healthz` and `/readyz`."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from http_edge.mux import load_routes
from tests.conftest import SWITCHBOARD, free_port


def test_openapi_lists_every_annotated_route(anonymous: httpx.Client) -> None:
    response = anonymous.get("/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "Switchboard"
    operations = {
        (method.upper(), operation.get("x-grpc-method", ""))
        for item in document["paths"].values()
        for method, operation in item.items()
    }
    for route in load_routes():
        if route.template.source == "/v1/chat/completions":
            continue
        assert (route.http_method, route.rpc_path) in operations, route.template.source
    paths = document["paths"]
    assert "post" in paths["/v1/chat/completions"]
    assert "307" in paths["/v2/chats/openai"]["post"]["responses"]
    assert paths["/v1/agents/{agent}:publish"]["post"]["parameters"][0]["in"] == "path"
    assert (
        "application/x-ndjson"
        in (paths["/v1/sessions/{session}/messages:stream"]["post"]["responses"]["200"]["content"])
    )
    schemas = document["components"]["schemas"]
    refs = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"].removeprefix("#/components/schemas/"))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert refs <= set(schemas)
    assert schemas["switchboard.v1.Agent"]["properties"]["create_time"]["format"] == "date-time"


def test_healthz_and_readyz_with_a_live_core(anonymous: httpx.Client) -> None:
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200


def test_readyz_is_503_while_the_core_is_down() -> None:
    http_port = free_port()
    edge = subprocess.Popen(
        [
            str(SWITCHBOARD),
            "edge",
            "--core",
            f"127.0.0.1:{free_port()}",
            "--http-addr",
            f"127.0.0.1:{http_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or edge.poll() is not None:
                    pytest.fail("edge did not start")
                time.sleep(0.1)
        assert health.status_code == 200
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 503
        # A call through the edge answers 503 UNAVAILABLE rather than hanging or crashing
        # (with a key: a keyless call is answered 401 by the edge before any call).
        key = {"authorization": "Bearer sk_unchecked"}
        models = httpx.get(f"{url}/v1/models", headers=key, timeout=30)
        assert models.status_code == 503
        assert set(models.json()["error"]) == {"message", "type", "param", "code"}
    finally:
        edge.terminate()
        edge.wait(timeout=10)
