"""Validation of an agent's configuration, run at create, update and publish: every problem
is reported as its own field violation, so one answer lists all that needs fixing."""

from __future__ import annotations

import json
import math
import re
from urllib.parse import urlsplit

import regex
from switchboard.v1 import agent_pb2

from server.errors import InvalidArgument, clip

REDACTIONS = ("email", "phone", "card")
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
# OpenAI's rule for function names, which the tools are offered as.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_TOP_K = 50
_MAX_INTERVAL_MS = 10_000
_MAX_TIMEOUT_MS = 600_000

Violations = list[tuple[str, str]]


def check_agent(agent: agent_pb2.Agent, field: str) -> None:
    """Raises `InvalidArgument` with one field violation per problem of `agent`, its paths
    under `field`."""
    violations = agent_violations(agent, field + ".")
    if violations:
        raise InvalidArgument.of(violations)


def agent_violations(agent: agent_pb2.Agent, prefix: str) -> Violations:
    """Every problem of `agent` as (field path after `prefix`, description); none if valid."""
    found: Violations = []
    if agent.slug and (not _SLUG.match(agent.slug) or agent.slug.startswith("agt-")):
        found.append(
            (
                prefix + "slug",
                "use 1 to 64 lowercase letters, digits and dashes, starting and ending with a "
                "letter or digit",
            )
        )
    knowledge = agent.knowledge
    if not _finite(knowledge.min_score) or not 0 <= knowledge.min_score <= 1:
        found.append((prefix + "knowledge.min_score", "must be a number from 0 to 1"))
    if not 0 <= knowledge.top_k <= _MAX_TOP_K:
        found.append((prefix + "knowledge.top_k", f"must be from 0 to {_MAX_TOP_K}"))
    found += _backend_violations(agent.backend, prefix + "backend.")
    found += _sampling_violations(agent.sampling, prefix + "sampling.")
    found += _guardrail_violations(agent.guardrails, prefix + "guardrails.")
    if agent.tools and agent.backend.WhichOneof("kind") != "openai_compatible":
        # The builtin responder calls no tools: accepting them would silently ignore them.
        found.append(
            (prefix + "tools", "only an agent with an openai_compatible backend can use tools")
        )
    names: set[str] = set()
    for index, tool in enumerate(agent.tools):
        found += _tool_violations(tool, f"{prefix}tools[{index}].", names)
    return found


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _backend_violations(backend: agent_pb2.ModelBackend, prefix: str) -> Violations:
    found: Violations = []
    if not 0 <= backend.builtin.delta_interval_ms <= _MAX_INTERVAL_MS:
        found.append(
            (prefix + "builtin.delta_interval_ms", f"must be from 0 to {_MAX_INTERVAL_MS}")
        )
    if backend.WhichOneof("kind") != "openai_compatible":
        return found
    upstream = backend.openai_compatible
    where = prefix + "openai_compatible."
    if not upstream.base_url:
        found.append((where + "base_url", "name the upstream API, e.g. http://127.0.0.1:8000/v1"))
    elif not _is_http_url(upstream.base_url):
        found.append((where + "base_url", "must be an http:// or https:// URL with a host"))
    if not upstream.model:
        found.append((where + "model", "name the upstream model"))
    if upstream.api_key_env and not _ENV_NAME.match(upstream.api_key_env):
        found.append(
            (where + "api_key_env", "must be the name of an environment variable, not a key")
        )
    if not 0 <= upstream.timeout_ms <= _MAX_TIMEOUT_MS:
        found.append((where + "timeout_ms", f"must be from 0 to {_MAX_TIMEOUT_MS}"))
    return found


def _sampling_violations(sampling: agent_pb2.Sampling, prefix: str) -> Violations:
    found: Violations = []
    if sampling.HasField("temperature") and (
        not _finite(sampling.temperature) or not 0 <= sampling.temperature <= 2
    ):
        found.append((prefix + "temperature", "must be a number from 0 to 2"))
    if sampling.HasField("top_p") and (not _finite(sampling.top_p) or not 0 < sampling.top_p <= 1):
        found.append((prefix + "top_p", "must be a number above 0 and at most 1"))
    if sampling.HasField("max_tokens") and sampling.max_tokens <= 0:
        found.append((prefix + "max_tokens", "must be a positive number of tokens"))
    return found


def _guardrail_violations(guardrails: agent_pb2.Guardrails, prefix: str) -> Violations:
    found: Violations = []
    if guardrails.max_input_chars < 0:
        found.append((prefix + "max_input_chars", "must not be negative (0 means no limit)"))
    for index, term in enumerate(guardrails.blocked_terms):
        if not term.strip():
            found.append((f"{prefix}blocked_terms[{index}]", "must not be blank"))
    for index, name in enumerate(guardrails.redact):
        if name not in REDACTIONS:
            found.append(
                (
                    f"{prefix}redact[{index}]",
                    f"unknown redaction {clip(name)!r}; expected one of {', '.join(REDACTIONS)}",
                )
            )
    for index, pattern in enumerate(guardrails.redact_patterns):
        where = f"{prefix}redact_patterns[{index}]"
        try:
            # The engine that redacts replies compiles it, so it is the one that judges it.
            compiled = regex.compile(pattern)
        except (regex.error, RecursionError, OverflowError) as error:
            found.append((where, f"is not a valid regular expression: {clip(str(error))}"))
            continue
        if compiled.fullmatch(""):
            found.append((where, "matches the empty string, so it would redact nothing useful"))
    return found


def _tool_violations(tool: agent_pb2.Tool, prefix: str, names: set[str]) -> Violations:
    found: Violations = []
    if not _TOOL_NAME.match(tool.name):
        found.append((prefix + "name", "use 1 to 64 letters, digits, underscores and dashes"))
    elif tool.name in names:
        found.append((prefix + "name", f"another tool is already named {tool.name!r}"))
    names.add(tool.name)
    if tool.parameters_json:
        try:
            schema = json.loads(tool.parameters_json)
        except (ValueError, RecursionError):
            schema = None
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            found.append(
                (
                    prefix + "parameters_json",
                    'must be a JSON Schema object, e.g. {"type": "object", "properties": {}}',
                )
            )
    if not tool.webhook.url:
        found.append((prefix + "webhook.url", "name the URL that executes the tool"))
    elif not _is_http_url(tool.webhook.url):
        found.append((prefix + "webhook.url", "must be an http:// or https:// URL with a host"))
    if not 0 <= tool.webhook.timeout_ms <= _MAX_TIMEOUT_MS:
        found.append((prefix + "webhook.timeout_ms", f"must be from 0 to {_MAX_TIMEOUT_MS}"))
    if tool.webhook.secret_env and not _ENV_NAME.match(tool.webhook.secret_env):
        found.append((prefix + "webhook.secret_env", "must be the name of an environment variable"))
    return found


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
