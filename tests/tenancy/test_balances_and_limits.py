"""Workspaces with balances (402 at zero, the ledger and the balance always agree) and keys with
rate limits (429 with Retry-After, OpenAI's x-ratelimit headers), in memory and in Redis."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import RunningServer
from tests.tenancy.conftest import make_tenant, set_balance, switchboard

QUESTION = [{"role": "user", "content": "When do parcels to Norway arrive?"}]


def _usage_total(tenant) -> int:
    summary = tenant.http.get("/v1/usage:summarize", params={"group_by": "USAGE_GROUPING_KEY"})
    assert summary.status_code == 200, summary.text
    return int(summary.json()["totals"]["total_tokens"])


def test_the_workspace_api(server: RunningServer):
    tenant = make_tenant(server, balance=500)
    workspace = tenant.http.get("/v1/workspace").json()
    assert workspace["id"] == tenant.id
    assert workspace["display_name"] == tenant.name
    assert workspace["token_balance"] == "500"
    renamed = tenant.http.patch("/v1/workspace", json={"display_name": "Parcel desk"})
    assert renamed.status_code == 200 and renamed.json()["display_name"] == "Parcel desk"
    refused = tenant.http.patch("/v1/workspace", json={"token_balance": "999999"})
    assert refused.status_code == 400
    assert "set-balance" in refused.json()["message"]
    assert tenant.http.get("/v1/workspace").json()["token_balance"] == "500"
    unlimited = make_tenant(server)
    assert "token_balance" not in unlimited.http.get("/v1/workspace").json()
    listed = switchboard("workspaces", "list", "--database-url", server.database_url)
    assert tenant.id in listed.stdout and "unlimited" in listed.stdout


def test_an_empty_balance_answers_402(server: RunningServer):
    tenant = make_tenant(server, balance=40)
    sdk = OpenAI(base_url=f"{server.http_url}/v1", api_key=tenant.key, max_retries=0)
    first = sdk.chat.completions.create(model="helper", messages=QUESTION)
    spent = first.usage.total_tokens  # type: ignore[union-attr]
    assert tenant.http.get("/v1/workspace").json()["token_balance"] == str(40 - spent)
    while True:
        try:
            sdk.chat.completions.create(model="helper", messages=QUESTION)
        except openai.APIStatusError as error:
            assert error.status_code == 402
            assert error.body["code"] == "insufficient_balance"  # type: ignore[index]
            assert error.response.headers["x-should-retry"] == "false"
            break
    balance = int(tenant.http.get("/v1/workspace").json()["token_balance"])
    assert balance <= 0
    assert balance == 40 - _usage_total(tenant)
    # The operator tops it up; chat works again.
    set_balance(server, tenant.name, "1000")
    assert sdk.chat.completions.create(model="helper", messages=QUESTION).choices


async def test_concurrent_turns_overdraw_by_at_most_those_running(server: RunningServer):
    tenant = make_tenant(server, balance=1)
    headers = {"authorization": f"Bearer {tenant.key}"}
    async with httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=60) as client:
        answers = await asyncio.gather(
            *(
                client.post("/v1/chat/completions", json={"model": "helper", "messages": QUESTION})
                for _ in range(12)
            )
        )
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 402} and 200 in statuses
    spent = sum(a.json()["usage"]["total_tokens"] for a in answers if a.status_code == 200)
    balance = int(tenant.http.get("/v1/workspace").json()["token_balance"])
    assert balance == 1 - spent == 1 - _usage_total(tenant)


@pytest.mark.parametrize("counters", ["memory", "redis"])
def test_a_request_rate_limit_answers_429(server, redis_server, counters):
    running = server if counters == "memory" else redis_server
    with httpx.Client(
        base_url=running.http_url,
        headers={"authorization": f"Bearer {running.api_key}"},
        timeout=30,
    ) as admin:
        key = admin.post(
            "/v1/keys", json={"scopes": ["chat:write"], "rate_limit": {"requests_per_minute": 3}}
        ).json()
    assert key["rate_limit"] == {"requests_per_minute": 3, "tokens_per_minute": 0}
    sdk = OpenAI(base_url=f"{running.http_url}/v1", api_key=key["secret"], max_retries=0)
    remaining = []
    for _ in range(3):
        raw = sdk.chat.completions.with_raw_response.create(model="support-bot", messages=QUESTION)
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    assert remaining == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="support-bot", messages=QUESTION)
    assert caught.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 20
    # Streams carry the headers too, and an unlimited key gets none.
    with httpx.Client(base_url=running.http_url, timeout=30) as client:
        plain = client.post(
            "/v1/chat/completions",
            json={"model": "support-bot", "messages": QUESTION},
            headers={"authorization": f"Bearer {running.api_key}"},
        )
    assert "x-ratelimit-limit-requests" not in plain.headers


def test_a_token_rate_limit_counts_what_turns_spent(server: RunningServer, http):
    key = http.post(
        "/v1/keys", json={"scopes": ["chat:write"], "rate_limit": {"tokens_per_minute": 40}}
    ).json()
    sdk = OpenAI(base_url=f"{server.http_url}/v1", api_key=key["secret"], max_retries=0)
    raw = sdk.chat.completions.with_raw_response.create(model="support-bot", messages=QUESTION)
    assert raw.headers["x-ratelimit-limit-tokens"] == "40"
    assert raw.headers["x-ratelimit-remaining-tokens"] == "40"
    # The first reply spent more than 40 tokens: the minute's budget is gone.
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="support-bot", messages=QUESTION)
    assert "tokens per minute" in caught.value.message


def test_limits_fail_open_when_redis_is_unreachable(server_factory, tmp_path):
    with server_factory(extra_args=("--redis-url", "redis://127.0.0.1:1/0")) as running:
        with httpx.Client(
            base_url=running.http_url,
            headers={"authorization": f"Bearer {running.api_key}"},
            timeout=30,
        ) as admin:
            key = admin.post(
                "/v1/keys",
                json={"scopes": ["chat:write"], "rate_limit": {"requests_per_minute": 1}},
            ).json()
            for _ in range(3):
                answered = admin.post(
                    "/v1/chat/completions",
                    json={"model": "support-bot", "messages": QUESTION},
                    headers={"authorization": f"Bearer {key['secret']}"},
                )
                assert answered.status_code == 200
            ready = admin.get("/readyz")
        assert ready.status_code == 200
        assert "limits are not enforced" in ready.json()["detail"]["rate_limits"]
        deadline = time.monotonic() + 5
        while "Redis is unreachable" not in running.output():
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_usage_summaries_equal_the_records(server: RunningServer):
    tenant = make_tenant(server)
    other_key = tenant.http.post("/v1/keys", json={"scopes": ["chat:write"]}).json()
    sessions = set()
    for key in (tenant.key, other_key["secret"], other_key["secret"]):
        reply = tenant.http.post(
            "/v1/chat/completions",
            json={"model": "helper", "messages": QUESTION},
            headers={"authorization": f"Bearer {key}"},
        ).json()
        sessions.add(reply["session_id"])
    per_message = 0
    for session in sessions:
        for message in tenant.http.get(f"/v1/sessions/{session}/messages").json()["messages"]:
            if message["role"] == "ROLE_ASSISTANT":
                per_message += message["usage"]["total_tokens"]
    by_key = tenant.http.get("/v1/usage:summarize", params={"group_by": "USAGE_GROUPING_KEY"})
    groups = {g["group"]: g for g in by_key.json()["groups"]}
    assert groups[other_key["id"]]["requests"] == "2"
    assert int(by_key.json()["totals"]["total_tokens"]) == per_message
    by_session = tenant.http.get(
        "/v1/usage:summarize", params={"group_by": "USAGE_GROUPING_SESSION", "page_size": 1}
    ).json()
    assert len(by_session["groups"]) == 1 and by_session["next_page_token"]
    by_day = tenant.http.get("/v1/usage:summarize").json()
    assert by_day["groups"][0]["group"] == time.strftime("%Y-%m-%d", time.gmtime())
    assert by_day["totals"] == by_key.json()["totals"]
    table = switchboard(
        "usage", tenant.id, "--group-by", "agent", "--csv", "--database-url", server.database_url
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.strip().splitlines()
    assert lines[0] == "agent,requests,prompt_tokens,completion_tokens,total_tokens"
    assert lines[1].endswith(f",3,{lines[1].split(',')[2]},{lines[1].split(',')[3]},{per_message}")
    # Another workspace sees none of it.
    assert _usage_total(make_tenant(server)) == 0
