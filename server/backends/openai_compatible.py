"""The `openai_compatible` backend: any server speaking OpenAI's `/v1/chat/completions` (vLLM,
Ollama, llama.cpp's server, LiteLLM, OpenAI).

One `httpx.AsyncClient` per process keeps pooled keep-alive connections to the upstreams. The
request always streams (`stream: true` with `include_usage`), and deltas are handed on as they
arrive. The key is read from the environment variable the agent names at call time: it is
never stored, logged or echoed. Faults map to clear errors in bounded time: a refused
connection or a 5xx is retried a few times before any reply byte, then answers UPSTREAM_ERROR;
no first byte, or a stall between chunks, within the timeout answers UPSTREAM_TIMEOUT; a 429
passes its `Retry-After` on; a 401/403 says the agent's upstream credentials were refused."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from switchboard.v1 import agent_pb2

from server.backends import (
    BackendEvent,
    Finished,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
    TurnContext,
    UsageReported,
)
from server.errors import UpstreamError, UpstreamRateLimited, UpstreamTimeout, clip

DEFAULT_TIMEOUT_MS = 60_000
CONNECT_TIMEOUT_SECONDS = 5.0
# Attempts before any reply byte was received; later failures are never retried.
ATTEMPTS = 3
_BACKOFF_SECONDS = (0.1, 0.4)
_MAX_ERROR_BODY = 300


def shared_client() -> httpx.AsyncClient:
    """The process's client for upstream models and webhook tools."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
        timeout=httpx.Timeout(DEFAULT_TIMEOUT_MS / 1000, connect=CONNECT_TIMEOUT_SECONDS),
        follow_redirects=False,
    )


class OpenAICompatibleBackend:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    def name(self, agent: agent_pb2.Agent) -> str:
        return f"openai_compatible:{agent.backend.openai_compatible.model}"

    async def stream(self, turn: TurnContext) -> AsyncGenerator[BackendEvent, None]:
        upstream = turn.agent.backend.openai_compatible
        url = upstream.base_url.rstrip("/") + "/chat/completions"
        headers = {"accept": "text/event-stream"}
        if upstream.api_key_env:
            key = os.environ.get(upstream.api_key_env)
            if not key:
                raise UpstreamError(
                    f"the agent's upstream key variable {upstream.api_key_env} is not set on "
                    "this server",
                    reason="UPSTREAM_KEY_MISSING",
                )
            headers["authorization"] = f"Bearer {key}"
        timeout_seconds = (upstream.timeout_ms or DEFAULT_TIMEOUT_MS) / 1000
        timeout = httpx.Timeout(timeout_seconds, connect=CONNECT_TIMEOUT_SECONDS)
        body = json.dumps(_request_body(turn)).encode()
        headers["content-type"] = "application/json"
        for attempt in range(ATTEMPTS):
            retry = attempt + 1 < ATTEMPTS
            try:
                request = self._client.build_request(
                    "POST", url, content=body, headers=headers, timeout=timeout
                )
                response = await self._client.send(request, stream=True)
            except httpx.TimeoutException as error:
                if isinstance(error, httpx.ConnectTimeout) and retry:
                    await asyncio.sleep(_BACKOFF_SECONDS[attempt])
                    continue
                raise _timeout(timeout_seconds) from None
            except httpx.HTTPError as error:
                if retry:
                    await asyncio.sleep(_BACKOFF_SECONDS[attempt])
                    continue
                raise UpstreamError(
                    f"the agent's upstream model at {clip(upstream.base_url)} could not be "
                    f"reached ({type(error).__name__})"
                ) from None
            try:
                if response.status_code >= 500 and retry:
                    await response.aread()
                    await asyncio.sleep(_BACKOFF_SECONDS[attempt])
                    continue
                if not response.is_success:
                    await _raise_for_status(response, upstream)
                async for event in _events(response, timeout_seconds):
                    yield event
                return
            finally:
                await response.aclose()


def _request_body(turn: TurnContext) -> dict[str, Any]:
    agent = turn.agent
    body: dict[str, Any] = {
        "model": agent.backend.openai_compatible.model,
        "messages": list(turn.messages),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sampling = agent.sampling
    if sampling.HasField("temperature"):
        body["temperature"] = sampling.temperature
    if sampling.HasField("top_p"):
        body["top_p"] = sampling.top_p
    if sampling.HasField("max_tokens"):
        body["max_tokens"] = sampling.max_tokens
    if turn.tools:
        body["tools"] = list(turn.tools)
    if turn.response_format is not None:
        body["response_format"] = turn.response_format
    return body


async def _raise_for_status(response: httpx.Response, upstream: Any) -> None:
    await response.aread()
    status = response.status_code
    detail = clip(response.text.strip(), _MAX_ERROR_BODY)
    if status == 429:
        raise UpstreamRateLimited(
            "the agent's upstream model is rate limited; retry later",
            retry_after_seconds=_retry_after(response),
        )
    if status in (401, 403):
        raise UpstreamError(
            f"the agent's upstream credentials were refused (HTTP {status}); check the key in "
            f"{upstream.api_key_env or 'its key variable'}",
            reason="UPSTREAM_AUTH_REFUSED",
        )
    raise UpstreamError(f"the agent's upstream model answered HTTP {status}: {detail}")


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, min(float(value), 120.0))
    except ValueError:
        return 1.0


def _timeout(seconds: float) -> UpstreamTimeout:
    return UpstreamTimeout(f"the agent's upstream model sent nothing for {seconds:g} s")


async def _events(
    response: httpx.Response, timeout_seconds: float
) -> AsyncGenerator[BackendEvent, None]:
    """The events of a streamed upstream reply (or of a whole JSON one, from an upstream that
    does not stream)."""
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        try:
            document = json.loads(await response.aread())
        except httpx.TimeoutException:
            raise _timeout(timeout_seconds) from None
        except ValueError:
            raise UpstreamError(
                "the agent's upstream model answered something other than JSON"
            ) from None
        for event in _whole_reply(document):
            yield event
        return
    calls: dict[int, dict[str, str]] = {}
    finish_reason = ""
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise UpstreamError("the agent's upstream model sent a malformed chunk") from None
            if not isinstance(chunk, dict):
                continue
            if "error" in chunk:
                raise UpstreamError(
                    f"the agent's upstream model failed: {clip(json.dumps(chunk['error']))}"
                )
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                yield UsageReported(
                    int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                )
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                content = delta.get("content")
                if content:
                    yield TextDelta(str(content))
                for call in delta.get("tool_calls") or ():
                    _merge_call(calls, call)
                if choice.get("finish_reason"):
                    finish_reason = str(choice["finish_reason"])
    except httpx.TimeoutException:
        raise _timeout(timeout_seconds) from None
    except httpx.HTTPError as error:
        raise UpstreamError(
            f"the agent's upstream model broke off its reply ({type(error).__name__})"
        ) from None
    if calls:
        yield ToolCallsRequested([_tool_call(call) for _, call in sorted(calls.items())])
    if finish_reason:
        yield Finished(finish_reason)


def _merge_call(calls: dict[int, dict[str, str]], delta: dict[str, Any]) -> None:
    """Tool calls stream as pieces keyed by index: the id and name first, then the arguments."""
    entry = calls.setdefault(int(delta.get("index") or 0), {"id": "", "name": "", "arguments": ""})
    if delta.get("id"):
        entry["id"] = str(delta["id"])
    function = delta.get("function") or {}
    if function.get("name"):
        entry["name"] += str(function["name"])
    if function.get("arguments"):
        entry["arguments"] += str(function["arguments"])


def _tool_call(entry: dict[str, str]) -> ToolCall:
    return ToolCall(id=entry["id"], name=entry["name"], arguments=entry["arguments"])


def _whole_reply(document: Any) -> list[BackendEvent]:
    events: list[BackendEvent] = []
    if not isinstance(document, dict):
        raise UpstreamError("the agent's upstream model answered an unexpected document")
    for choice in document.get("choices") or ():
        message = choice.get("message") or {}
        if message.get("content"):
            events.append(TextDelta(str(message["content"])))
        calls = [
            ToolCall(
                id=str(call.get("id") or ""),
                name=str((call.get("function") or {}).get("name") or ""),
                arguments=str((call.get("function") or {}).get("arguments") or ""),
            )
            for call in message.get("tool_calls") or ()
        ]
        if calls:
            events.append(ToolCallsRequested(calls))
        if choice.get("finish_reason"):
            events.append(Finished(str(choice["finish_reason"])))
        break
    usage = document.get("usage")
    if isinstance(usage, dict):
        events.append(
            UsageReported(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        )
    return events
