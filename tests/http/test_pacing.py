"""Paced builtin replies: deltas come at least the agent's interval apart, and replies of
different paces streamed at once each keep their own."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from tests.http.conftest import GARDEN_GUIDE, MANUAL, create_published_agent


async def _delta_times(client: httpx.AsyncClient, slug: str, question: str) -> list[float]:
    body = {"model": slug, "stream": True, "messages": [{"role": "user", "content": question}]}
    times = []
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                times.append(time.monotonic())
            if len(times) == 6:
                break
    return times


def test_paced_replies_streamed_at_once_each_keep_their_pace(http: httpx.Client) -> None:
    slow = create_published_agent(http, 200, MANUAL, "What does the warranty cover?")
    quick = create_published_agent(http, 50, GARDEN_GUIDE, "When do greenhouse tours leave?")

    async def both() -> list[list[float]]:
        async with httpx.AsyncClient(
            base_url=str(http.base_url), headers=dict(http.headers), timeout=30
        ) as client:
            return await asyncio.gather(
                _delta_times(client, slow.slug, slow.question),
                _delta_times(client, quick.slug, quick.question),
                _delta_times(client, quick.slug, quick.question),
            )

    slow_times, *quick_times = asyncio.run(both())
    for times, interval in [(slow_times, 0.2), *((t, 0.05) for t in quick_times)]:
        assert len(times) == 6
        # Five intervals at least between the first delta and the sixth (less a little for
        # a first delta that reached the client late).
        assert times[-1] - times[0] >= 5 * interval - 0.05, times
    # The quick replies were not held to the slow one's pace.
    assert max(quick_times[0][-1], quick_times[1][-1]) < slow_times[-1]
