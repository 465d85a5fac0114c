"""CORS for publishable keys: preflights granted only on the routes those keys may call and only
for origins a live publishable key lists; actual responses granted only to a publishable key
calling from an origin it lists. Checked in-process and with the edge as its own process."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.conftest import RunningServer
from tests.http.test_separate_edge import edge_url  # noqa: F401

SHOP = f"https://shop-{uuid.uuid4().hex[:8]}.example"
ELSEWHERE = "https://elsewhere.example"

# Every route a publishable key may call, as a browser would preflight it.
PUBLISHABLE_ROUTES = [
    ("GET", "/v1/models"),
    ("GET", "/v1/models/support-bot"),
    ("POST", "/v1/sessions"),
    ("POST", "/v1/sessions/sess_x/messages"),
    ("POST", "/v1/sessions/sess_x/messages:stream"),
    ("GET", "/v1/sessions/sess_x/messages"),
    ("POST", "/v1/sessions/sess_x:cancel"),
    ("POST", "/v1/chat/completions"),
]
# Routes of RPCs no publishable key may call, and paths that are no route at all.
OTHER_ROUTES = [
    ("POST", "/v1/keys"),
    ("GET", "/v1/agents"),
    ("POST", "/v1/agents/support-bot:publish"),
    ("GET", "/v1/sessions"),
    ("GET", "/v1/sessions/sess_x"),
    ("DELETE", "/v1/sessions/sess_x"),
    ("GET", "/v1/chat/completions"),
    ("POST", "/v2/chats/openai"),
    ("GET", "/v1/nothing-here"),
]


def _key(server: RunningServer, **fields: object) -> str:
    created = httpx.post(
        f"{server.http_url}/v1/keys",
        headers={"authorization": f"Bearer {server.api_key}"},
        json={"kind": "KEY_KIND_PUBLISHABLE", "allowed_agents": ["support-bot"], **fields},
    )
    assert created.status_code == 200, created.text
    return str(created.json()["secret"])


def wait_until_open(base: str, origin: str) -> None:
    """Waits for a new key's origin to open preflights: the core rereads the listed origins
    every second, and the edge keeps a refusal for two."""
    deadline = time.monotonic() + 5
    while _preflight(base, "GET", "/v1/models", origin).status_code != 204:
        assert time.monotonic() < deadline, f"{origin} never opened"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def shop_key(server: RunningServer) -> str:
    key = _key(server, allowed_origins=[SHOP])
    wait_until_open(server.http_url, SHOP)
    return key


@pytest.fixture(params=["in-process", "separate edge"])
def base(request: pytest.FixtureRequest, server: RunningServer) -> str:
    if request.param == "in-process":
        return server.http_url
    return str(request.getfixturevalue("edge_url"))


def _preflight(base: str, method: str, path: str, origin: str) -> httpx.Response:
    return httpx.options(
        base + path,
        headers={
            "origin": origin,
            "access-control-request-method": method,
            "access-control-request-headers": "authorization, content-type",
        },
    )


def _granted(response: httpx.Response, origin: str) -> bool:
    return response.headers.get("access-control-allow-origin") == origin


@pytest.mark.parametrize(("method", "path"), PUBLISHABLE_ROUTES)
def test_preflight_is_granted_on_publishable_routes_for_a_listed_origin(
    base: str, shop_key: str, method: str, path: str
) -> None:
    granted = _preflight(base, method, path, SHOP)
    assert granted.status_code == 204, granted.text
    assert granted.headers["access-control-allow-origin"] == SHOP
    assert granted.headers["access-control-allow-methods"] == method
    allowed_headers = granted.headers["access-control-allow-headers"].split(", ")
    assert {"authorization", "content-type", "idempotency-key"} <= set(allowed_headers)
    assert granted.headers["access-control-max-age"] == "600"
    assert granted.headers["vary"] == "origin"
    assert "access-control-allow-credentials" not in granted.headers


@pytest.mark.parametrize(("method", "path"), PUBLISHABLE_ROUTES[:3])
def test_preflight_is_refused_for_an_origin_no_key_lists(
    base: str, shop_key: str, method: str, path: str
) -> None:
    refused = _preflight(base, method, path, ELSEWHERE)
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert refused.headers["vary"] == "origin"
    body = refused.json()
    # `/v1/models` answers in OpenAI's error shape, the native routes in theirs.
    reason = body["error"]["code"].upper() if "error" in body else body["details"][0]["reason"]
    assert reason == "CORS_NOT_ALLOWED"


@pytest.mark.parametrize(("method", "path"), OTHER_ROUTES)
def test_preflight_is_refused_where_publishable_keys_cannot_go(
    base: str, shop_key: str, method: str, path: str
) -> None:
    refused = _preflight(base, method, path, SHOP)
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


def test_options_without_a_preflight_is_still_method_not_allowed(server: RunningServer) -> None:
    answer = httpx.options(f"{server.http_url}/v1/sessions", headers={"origin": SHOP})
    assert answer.status_code == 405
    assert "access-control-allow-origin" not in answer.headers


def test_actual_responses_are_granted_to_the_listed_origin_only(
    base: str, server: RunningServer, shop_key: str
) -> None:
    def models(key: str, origin: str | None) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"}
        if origin:
            headers["origin"] = origin
        return httpx.get(f"{base}/v1/models/support-bot", headers=headers)

    allowed = models(shop_key, SHOP)
    assert allowed.status_code == 200
    assert _granted(allowed, SHOP)
    assert allowed.headers["vary"] == "origin"
    exposed = allowed.headers["access-control-expose-headers"].split(", ")
    assert {"retry-after", "x-request-id", "x-session-id"} <= set(exposed)
    assert allowed.json()["greeting"].startswith("Hi! Ask me about shipping")

    other = models(shop_key, ELSEWHERE)
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in other.headers

    # Secret keys must not be used from browsers: never a grant, whatever the origin.
    secret = models(server.api_key, SHOP)
    assert secret.status_code == 200
    assert "access-control-allow-origin" not in secret.headers

    # A publishable key that lists no origin works from servers, but no browser may read it.
    anywhere = _key(server)
    unlisted = models(anywhere, SHOP)
    assert unlisted.status_code == 200
    assert "access-control-allow-origin" not in unlisted.headers

    # A key that lists origins is refused without one, and grants nothing.
    plain = models(shop_key, None)
    assert plain.status_code == 403
    assert "access-control-allow-origin" not in plain.headers


def test_streams_and_errors_carry_the_grant(base: str, shop_key: str) -> None:
    headers = {"authorization": f"Bearer {shop_key}", "origin": SHOP}
    created = httpx.post(
        f"{base}/v1/sessions", headers=headers, json={"agent": "agents/support-bot"}
    )
    assert created.status_code == 200
    assert _granted(created, SHOP)
    session = created.json()["id"]

    stream_headers = {**headers, "accept": "text/event-stream"}
    with httpx.stream(
        "POST",
        f"{base}/v1/sessions/{session}/messages:stream",
        headers=stream_headers,
        json={"content": "Do you ship to Canada?"},
    ) as stream:
        assert stream.status_code == 200
        assert _granted(stream, SHOP)
        body = "".join(stream.iter_text())
    assert '"done"' in body

    question = [{"role": "user", "content": "When are you open?"}]
    completion = httpx.post(
        f"{base}/v1/chat/completions",
        headers=headers,
        json={"model": "support-bot", "stream": True, "messages": question},
    )
    assert completion.status_code == 200
    assert _granted(completion, SHOP)

    missing = httpx.post(
        f"{base}/v1/sessions/sess_missing/messages:stream",
        headers=stream_headers,
        json={"content": "hello"},
    )
    assert missing.status_code == 404
    assert _granted(missing, SHOP), "the page must be able to read the error"

    history = httpx.get(f"{base}/v1/sessions/{session}/messages", headers=headers)
    assert history.status_code == 200
    assert _granted(history, SHOP)
    assert len(history.json()["messages"]) == 2


async def test_errors_of_streams_failing_at_once_carry_the_grant_under_load(
    request: pytest.FixtureRequest, shop_key: str
) -> None:
    """Through an edge of its own, a stream that fails before its first message still tells
    the browser it may read the error, however many fail at once (grpc.aio sometimes drops
    such a call's initial metadata; the in-process channel does not)."""
    edge = str(request.getfixturevalue("edge_url"))
    wait_until_open(edge, SHOP)
    headers = {"authorization": f"Bearer {shop_key}", "origin": SHOP}
    async with httpx.AsyncClient(base_url=edge, headers=headers, timeout=30) as client:

        async def missing() -> httpx.Response:
            body = {"content": "hello"}
            return await client.post("/v1/sessions/sess_missing/messages:stream", json=body)

        answers = []
        for _ in range(25):
            answers += await asyncio.gather(*(missing() for _ in range(16)))
    assert {answer.status_code for answer in answers} == {404}
    ungranted = [a for a in answers if not _granted(a, SHOP)]
    assert not ungranted, f"{len(ungranted)} of {len(answers)} errors without the grant"


def test_a_revoked_key_loses_its_grant_at_once(server: RunningServer) -> None:
    origin = f"https://revoked-{uuid.uuid4().hex[:8]}.example"
    key = _key(server, allowed_origins=[origin], display_name="to revoke")
    headers = {"authorization": f"Bearer {key}", "origin": origin}
    before = httpx.get(f"{server.http_url}/v1/models", headers=headers)
    assert _granted(before, origin)
    listed = httpx.get(
        f"{server.http_url}/v1/keys?page_size=1000",
        headers={"authorization": f"Bearer {server.api_key}"},
    ).json()["keys"]
    [name] = [k["name"] for k in listed if k["allowed_origins"] == [origin]]
    revoked = httpx.post(
        f"{server.http_url}/v1/{name}:revoke",
        headers={"authorization": f"Bearer {server.api_key}"},
        json={},
    )
    assert revoked.status_code == 200
    after = httpx.get(f"{server.http_url}/v1/models", headers=headers)
    assert after.status_code == 401
    assert "access-control-allow-origin" not in after.headers
