"""Ids cannot be predicted: request ids do not reveal a generator's state, and session ids carry
128 random bits."""

from __future__ import annotations

import random
import re

import httpx

from tests.conftest import RunningServer

_SESSION_ID = re.compile(r"sess_[0-9a-f]{11}([0-9a-f]+)")


def _untemper(value: int) -> int:
    """The Mersenne Twister state word behind one 32-bit output."""
    value ^= value >> 18
    value ^= (value << 15) & 0xEFC60000
    result = value
    for _ in range(5):
        result = value ^ ((result << 7) & 0x9D2C5680)
    value = result
    result = value
    for _ in range(2):
        result = value ^ (result >> 11)
    return result & 0xFFFFFFFF


def _predict_next_128_bits(observed: list[int]) -> int:
    """What Python's `random.getrandbits(128)` returns next, rebuilt from 156 earlier values
    the way an attacker who reads `x-request-id` headers would."""
    words = []
    for value in observed:
        words += [(value >> (32 * i)) & 0xFFFFFFFF for i in range(4)]
    state = tuple(_untemper(word) for word in words[-624:])
    clone = random.Random()
    clone.setstate((3, (*state, 624), None))
    return clone.getrandbits(128)


def test_request_ids_cannot_be_predicted_from_earlier_ones(server: RunningServer) -> None:
    with httpx.Client(base_url=server.http_url) as client:
        seen = [client.get("/healthz").headers["x-request-id"] for _ in range(157)]
    for request_id in seen:
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert len(set(seen)) == len(seen)
    predicted = _predict_next_128_bits([int(value, 16) for value in seen[:156]])
    assert f"{predicted:032x}" != seen[156]


def test_session_ids_carry_128_random_bits(http: httpx.Client) -> None:
    tails = []
    for _ in range(20):
        created = http.post("/v1/sessions", json={"agent": "agents/support-bot"})
        assert created.status_code == 200
        match = _SESSION_ID.fullmatch(created.json()["id"])
        assert match is not None, created.json()["id"]
        tails.append(match.group(1))
    assert all(len(tail) * 4 >= 128 for tail in tails)
    assert len(set(tails)) == len(tails)
    # Completion and message ids are unguessable as well.
    reply = http.post(
        "/v1/chat/completions",
        json={"model": "support-bot", "messages": [{"role": "user", "content": "Returns?"}]},
    ).json()
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", reply["id"])
    messages = http.get(f"/v1/sessions/{reply['session_id']}/messages").json()["messages"]
    for message in messages:
        assert re.fullmatch(r"msg_[0-9a-f]{11}[0-9a-f]{32}", message["id"])
