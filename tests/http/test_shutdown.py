"""SIGTERM drains in-flight streams before the server exits."""

from __future__ import annotations

import json
import signal

import httpx

from tests.http.conftest import MANUAL, create_published_agent


def test_sigterm_lets_a_running_stream_finish(server_factory):
    with server_factory() as own:
        headers = {"authorization": f"Bearer {own.api_key}"}
        with httpx.Client(base_url=own.http_url, headers=headers, timeout=30) as client:
            question = "What does the warranty of the espresso machine cover?"
            agent = create_published_agent(client, 20, MANUAL, question)
            request = {
                "model": agent.slug,
                "stream": True,
                "messages": [{"role": "user", "content": question}],
            }
            with client.stream("POST", "/v1/chat/completions", json=request) as response:
                lines = response.iter_lines()
                first = next(line for line in lines if line)
                own.process.send_signal(signal.SIGTERM)
                rest = [line for line in lines if line]
        assert own.process.wait(timeout=20) == 0
    events = [first, *rest]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.startswith("The warranty covers part 1")
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
