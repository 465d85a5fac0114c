"""Webhook tools: offered to the upstream model as OpenAI function tools and executed here by
POSTing the call's JSON arguments to the tool's URL.

Every request is signed so that a receiver can verify it came from this server:
`x-switchboard-timestamp` (Unix seconds) and `x-switchboard-signature: v1=<hex>`, the
HMAC-SHA256 of `"{timestamp}.{body}"` with the secret held in the environment variable that
the tool's `webhook.secret_env` names. A tool that fails, times out or answers non-2xx becomes
an error result the model sees; it never fails the turn."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from switchboard.v1 import agent_pb2

from server.backends import ToolCall, ToolResult
from server.telemetry import observed_tool_call

if TYPE_CHECKING:
    from server.backends.openai_compatible import SharedClient

DEFAULT_TIMEOUT_MS = 10_000
# What a tool answers is fed to the model; a longer answer is cut here.
MAX_RESULT_CHARS = 16_000
SIGNATURE_HEADER = "x-switchboard-signature"
TIMESTAMP_HEADER = "x-switchboard-timestamp"


def definitions(agent: agent_pb2.Agent) -> list[dict[str, Any]]:
    """The agent's tools as OpenAI function tools."""
    tools = []
    for tool in agent.tools:
        parameters = (
            json.loads(tool.parameters_json)
            if tool.parameters_json
            else {"type": "object", "properties": {}}
        )
        function: dict[str, Any] = {"name": tool.name, "parameters": parameters}
        if tool.description:
            function["description"] = tool.description
        tools.append({"type": "function", "function": function})
    return tools


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value of a webhook request."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


class WebhookTools:
    """Runs tool calls over the process's shared HTTP client."""

    def __init__(self, client: SharedClient) -> None:
        self._client = client

    async def run_all(self, agent: agent_pb2.Agent, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """The results of `calls`, run concurrently, in the order of the calls."""
        return list(await asyncio.gather(*(self.run(agent, call) for call in calls)))

    @observed_tool_call
    async def run(self, agent: agent_pb2.Agent, call: ToolCall) -> ToolResult:
        """Posts one call to its tool's webhook; any failure is an error result, not raised."""
        import httpx

        tool = next((t for t in agent.tools if t.name == call.name), None)
        if tool is None:
            return ToolResult(
                call.id, call.name, f"no tool is named {call.name!r}", True, "unknown_tool"
            )
        try:
            arguments = json.loads(call.arguments or "{}")
        except (ValueError, RecursionError):
            return ToolResult(
                call.id, call.name, "the arguments are not valid JSON", True, "bad_arguments"
            )
        body = json.dumps(arguments, separators=(",", ":")).encode()
        headers = {"content-type": "application/json"}
        if tool.webhook.secret_env:
            secret = os.environ.get(tool.webhook.secret_env)
            if not secret:
                return ToolResult(
                    call.id,
                    call.name,
                    f"the tool is not configured: the server has no {tool.webhook.secret_env}",
                    True,
                    "not_configured",
                )
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(secret.encode(), timestamp, body)
        timeout = (tool.webhook.timeout_ms or DEFAULT_TIMEOUT_MS) / 1000
        try:
            response = await self._client.get().post(
                tool.webhook.url, content=body, headers=headers, timeout=timeout
            )
        except httpx.TimeoutException:
            timed_out = f"the tool timed out after {timeout:g} s"
            return ToolResult(call.id, call.name, timed_out, True, "timeout")
        except httpx.HTTPError as error:
            unreachable = f"the tool could not be reached ({type(error).__name__})"
            return ToolResult(call.id, call.name, unreachable, True, "unreachable")
        content = response.text[:MAX_RESULT_CHARS]
        if not response.is_success:
            failure = f"the tool answered HTTP {response.status_code}: {content}"
            return ToolResult(call.id, call.name, failure, True, "http_error")
        return ToolResult(call.id, call.name, content, False)
