"""Who may call what: keys grant only their own scopes, and every RPC demands a key and a
listed scope, failing closed for an RPC the access table does not list."""

from __future__ import annotations

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool, message_factory
from switchboard.v1 import key_service_pb2

from server.app import SERVICE_NAMES
from server.auth import ACCESS_BY_METHOD, ALL_SCOPES, AuthInterceptor
from server.store import Store
from server.store.database import create_engine, migrate
from tests.conftest import free_port
from tests.grpc.conftest import error_reason


def _methods() -> list[tuple[str, object]]:
    pool = descriptor_pool.Default()
    found = []
    for service_name in SERVICE_NAMES:
        service = pool.FindServiceByName(service_name)
        for method in service.methods:
            found.append((f"/{service.full_name}/{method.name}", method))
    return found


METHODS = _methods()


def test_a_key_grants_only_scopes_it_holds(server, http: httpx.Client) -> None:
    minted = http.post("/v1/keys", json={"scopes": ["keys:write"]})
    assert minted.status_code == 200, minted.text
    narrow = {"authorization": f"Bearer {minted.json()['secret']}"}

    escalated = httpx.post(
        f"{server.http_url}/v1/keys", json={"scopes": list(ALL_SCOPES)}, headers=narrow
    )
    assert escalated.status_code == 403
    message = escalated.json()["message"]
    assert "chat:write" in message and "agents:write" in message
    assert "keys:write" not in message.split("lacks", 1)[1]

    same = httpx.post(f"{server.http_url}/v1/keys", json={"scopes": ["keys:write"]}, headers=narrow)
    assert same.status_code == 200


def test_publishable_keys_cannot_create_keys(server, http: httpx.Client) -> None:
    publishable = http.post(
        "/v1/keys",
        json={"kind": "KEY_KIND_PUBLISHABLE", "allowed_agents": ["support-bot"]},
    ).json()
    headers = {"authorization": f"Bearer {publishable['secret']}"}
    for body in ({"scopes": ["chat:write"]}, {"kind": "KEY_KIND_PUBLISHABLE"}):
        refused = httpx.post(f"{server.http_url}/v1/keys", json=body, headers=headers)
        assert refused.status_code == 403
        assert refused.json()["details"][0]["reason"] == "PUBLISHABLE_KEY_NOT_ALLOWED"


def test_every_rpc_is_in_the_access_table_with_known_scopes() -> None:
    for path, _method in METHODS:
        access = ACCESS_BY_METHOD.get(path)
        assert access is not None, f"{path} has no entry in the access table"
        assert access.scopes, f"{path} is open to no scope"
        assert access.scopes <= set(ALL_SCOPES), path
    assert set(ACCESS_BY_METHOD) == {path for path, _ in METHODS}


@pytest.mark.parametrize("path", [path for path, _ in METHODS])
async def test_every_rpc_demands_a_key_and_a_listed_scope(
    path: str, channel: grpc.aio.Channel, stubs, auth
) -> None:
    method = dict(METHODS)[path]
    request_class = message_factory.GetMessageClass(method.input_type)  # type: ignore[attr-defined]
    response_class = message_factory.GetMessageClass(method.output_type)  # type: ignore[attr-defined]
    if method.server_streaming:  # type: ignore[attr-defined]
        call = channel.unary_stream(
            path,
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
    else:
        call = channel.unary_unary(
            path,
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )

    async def invoke(metadata: tuple[tuple[str, str], ...]) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            answer = call(request_class(), metadata=metadata)
            if method.server_streaming:  # type: ignore[attr-defined]
                async for _ in answer:
                    pass
            else:
                await answer
        return caught.value

    anonymous = await invoke(())
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED

    # A key holding only a scope that does not open this RPC is refused.
    other_scope = next(s for s in ALL_SCOPES if s not in ACCESS_BY_METHOD[path].scopes)
    unrelated = await stubs.keys.CreateKey(
        key_service_pb2.CreateKeyRequest(key=key_service_pb2.Key(scopes=[other_scope])),
        metadata=auth,
    )
    refused = await invoke((("authorization", f"Bearer {unrelated.secret}"),))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(refused) == "SCOPE_MISSING"


async def test_an_rpc_missing_from_the_table_is_refused_to_every_key(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'access.db'}"
    migrate(url)
    store = Store(create_engine(url))
    await store.workspaces.ensure("ws_test", "test")
    _, secret = await store.keys.create(
        "ws_test", display_name="all", kind="secret", scopes=ALL_SCOPES
    )
    ran: list[bytes] = []

    async def hidden(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        ran.append(request)
        return b""

    server = grpc.aio.server(interceptors=[AuthInterceptor(store.keys, lambda *_: None)])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "switchboard.v1.HiddenService", {"Run": grpc.unary_unary_rpc_method_handler(hidden)}
            )
        ]
    )
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/switchboard.v1.HiddenService/Run")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(b"", metadata=(("authorization", f"Bearer {secret}"),))
    finally:
        await server.stop(None)
        await store.close()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert ran == []
