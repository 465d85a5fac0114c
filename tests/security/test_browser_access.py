"""Browsers and the trust boundary: the one keyless Switchboard service (`CorsService`) tells
nothing but yes or no, and the core grants CORS only to publishable keys on origins they list."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import time
import uuid

import grpc
import pytest
import switchboard.v1
from switchboard.v1 import (
    cors_service_pb2,
    cors_service_pb2_grpc,
    key_service_pb2,
    model_service_pb2,
    session_pb2,
    session_service_pb2,
)

from server.app import CORS_SERVICE, SERVICE_NAMES
from server.auth import ACCESS_BY_METHOD, CORS_GRANT_METADATA, PUBLIC_SERVICES, is_public
from tests.grpc.conftest import Stubs

STREAM = "/switchboard.v1.SessionService/StreamMessage"


def _switchboard_services() -> set[str]:
    """Every service of every generated `switchboard.v1` module."""
    names: set[str] = set()
    for info in pkgutil.iter_modules(switchboard.v1.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"switchboard.v1.{info.name}")
            names.update(s.full_name for s in module.DESCRIPTOR.services_by_name.values())
    return names


def test_the_only_keyless_switchboard_service_is_cors() -> None:
    assert CORS_SERVICE not in SERVICE_NAMES
    assert _switchboard_services() == {*SERVICE_NAMES, CORS_SERVICE}
    assert [p for p in PUBLIC_SERVICES if p.startswith("/switchboard.")] == [
        "/switchboard.v1.CorsService/"
    ]
    assert is_public("/switchboard.v1.CorsService/CheckPreflight")
    assert not any(is_public(method) for method in ACCESS_BY_METHOD)
    response = cors_service_pb2.CheckPreflightResponse.DESCRIPTOR
    assert [f.name for f in response.fields] == ["allowed"], "it answers yes or no, nothing else"


@pytest.fixture
async def cors(channel: grpc.aio.Channel) -> cors_service_pb2_grpc.CorsServiceStub:
    return cors_service_pb2_grpc.CorsServiceStub(channel)


async def _publishable(stubs: Stubs, auth, origins: list[str]) -> str:
    key = await stubs.keys.CreateKey(
        key_service_pb2.CreateKeyRequest(
            key=key_service_pb2.Key(
                kind=key_service_pb2.KEY_KIND_PUBLISHABLE,
                allowed_agents=["support-bot"],
                allowed_origins=origins,
            )
        ),
        metadata=auth,
    )
    return str(key.secret)


async def test_check_preflight_needs_no_key_and_says_only_yes_or_no(
    cors: cors_service_pb2_grpc.CorsServiceStub, stubs: Stubs, auth
) -> None:
    origin = f"https://preflight-{uuid.uuid4().hex[:8]}.example"

    async def check(origin: str, method: str = STREAM) -> bool:
        request = cors_service_pb2.CheckPreflightRequest(origin=origin, method=method)
        return bool((await cors.CheckPreflight(request)).allowed)

    assert not await check(origin)
    await _publishable(stubs, auth, [origin])
    # The core rereads the listed origins at most once a second.
    deadline = time.monotonic() + 3
    while not await check(origin):
        assert time.monotonic() < deadline, "a new key's origin never opened"
        await asyncio.sleep(0.1)
    assert await check(origin, "/switchboard.v1.ModelService/ListModels")
    # Routes no publishable key may call are never open to browsers.
    assert not await check(origin, "/switchboard.v1.KeyService/CreateKey")
    assert not await check(origin, "/switchboard.v1.SessionService/ListSessions")
    assert not await check(origin, "/switchboard.v1.CorsService/CheckPreflight")
    assert not await check(origin, "")
    # Whatever a caller sends, the answer is a plain no, never an error.
    for odd in ("", "\x00", "x" * 100_000, origin + "/", origin.upper(), "https://é.example"):
        assert not await check(odd)


async def test_the_core_grants_only_a_publishable_key_on_a_listed_origin(
    stubs: Stubs, auth
) -> None:
    origin = f"https://grant-{uuid.uuid4().hex[:8]}.example"
    listed = await _publishable(stubs, auth, [origin])
    anywhere = await _publishable(stubs, auth, [])

    async def grant(key: str, page_origin: str | None) -> list[str]:
        metadata = [("authorization", f"Bearer {key}")]
        if page_origin:
            metadata.append(("origin", page_origin))
        call = stubs.models.GetModel(
            model_service_pb2.GetModelRequest(model="support-bot"), metadata=tuple(metadata)
        )
        try:
            await call
        except grpc.aio.AioRpcError:
            pass
        return [v for k, v in await call.initial_metadata() or () if k == CORS_GRANT_METADATA]

    assert await grant(listed, origin) == [origin]
    assert await grant(listed, "https://other.example") == []
    assert await grant(anywhere, origin) == []
    assert await grant(auth[0][1].removeprefix("Bearer "), origin) == []


async def test_errors_and_streams_carry_the_grant(stubs: Stubs, auth) -> None:
    origin = f"https://stream-{uuid.uuid4().hex[:8]}.example"
    key = await _publishable(stubs, auth, [origin])
    metadata = (("authorization", f"Bearer {key}"), ("origin", origin))

    missing = stubs.sessions.StreamMessage(
        session_service_pb2.SendMessageRequest(parent="sessions/sess_missing", content="hi"),
        metadata=metadata,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in missing:
            pass
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert (CORS_GRANT_METADATA, origin) in tuple(refused.value.initial_metadata())
    # Repeated with the status, for a client that lost the initial metadata of a call failing
    # at once.
    assert (CORS_GRANT_METADATA, origin) in tuple(refused.value.trailing_metadata())

    session = await stubs.sessions.CreateSession(
        session_service_pb2.CreateSessionRequest(
            session=session_pb2.Session(agent="agents/support-bot")
        ),
        metadata=metadata,
    )
    stream = stubs.sessions.StreamMessage(
        session_service_pb2.SendMessageRequest(parent=session.name, content="Canada?"),
        metadata=metadata,
    )
    kinds = [event.WhichOneof("event") async for event in stream]
    assert kinds[-1] == "done"
    assert (CORS_GRANT_METADATA, origin) in tuple(await stream.initial_metadata())
