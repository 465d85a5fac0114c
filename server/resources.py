"""Conversions between store rows and `switchboard.v1` resources, and resource names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from switchboard.v1 import agent_pb2, key_service_pb2, session_pb2, usage_pb2

from contract.roles import ROLE_VALUES
from server.errors import InvalidArgument, clip
from server.store import tables
from server.store.sessions import MessageRecord

_STATUS_TO_ENUM = {
    "complete": session_pb2.MESSAGE_STATUS_COMPLETE,
    "incomplete": session_pb2.MESSAGE_STATUS_INCOMPLETE,
}
_KIND_TO_ENUM = {
    "secret": key_service_pb2.KEY_KIND_SECRET,
    "publishable": key_service_pb2.KEY_KIND_PUBLISHABLE,
}

# The fields of `Agent` that are not its draft configuration.
_IDENTITY_FIELDS = ("name", "id", "slug", "latest_version", "create_time", "update_time")
# The draft fields of `Agent` that are stored as its config.
CONFIG_FIELDS = tuple(
    f.name for f in agent_pb2.Agent.DESCRIPTOR.fields if f.name not in _IDENTITY_FIELDS
)


def parse_name(name: str, collection: str, field: str) -> str:
    """The id in `{collection}/{id}`; a bare id is accepted too."""
    prefix = f"{collection}/"
    value = name[len(prefix) :] if name.startswith(prefix) else name
    if not value or "/" in value:
        raise InvalidArgument(field, f"expected `{collection}/{{id}}`, got {clip(name)!r}")
    return value


def parse_child_name(name: str, parent: str, collection: str, field: str) -> tuple[str, str]:
    """The ids in `{parent}/{a}/{collection}/{b}`."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != parent or parts[2] != collection or not all(parts):
        raise InvalidArgument(
            field, f"expected `{parent}/{{id}}/{collection}/{{id}}`, got {clip(name)!r}"
        )
    return parts[1], parts[3]


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """`value` as a protobuf Timestamp, or None."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def agent_config(agent: agent_pb2.Agent) -> dict[str, Any]:
    """The stored form of an agent's draft: the proto JSON of its config fields."""
    config = agent_pb2.Agent()
    config.CopyFrom(agent)
    for name in _IDENTITY_FIELDS:
        config.ClearField(name)
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def agent_from_config(config: dict[str, Any]) -> agent_pb2.Agent:
    """An agent's config fields from their stored form, unknown fields ignored."""
    return json_format.ParseDict(config, agent_pb2.Agent(), ignore_unknown_fields=True)


def agent_to_proto(row: tables.Agent, config: dict[str, Any] | None = None) -> agent_pb2.Agent:
    """The `Agent` resource of a row, with its draft or the given `config`."""
    agent = agent_from_config(row.config if config is None else config)
    agent.name = f"agents/{row.id}"
    agent.id = row.id
    agent.slug = row.slug or ""
    agent.latest_version = row.latest_version
    agent.create_time.CopyFrom(timestamp(row.created_at))
    agent.update_time.CopyFrom(timestamp(row.updated_at))
    return agent


def version_to_proto(row: tables.AgentVersion, agent: tables.Agent) -> agent_pb2.AgentVersion:
    """The `AgentVersion` resource: the agent as that version published it."""
    snapshot = agent_to_proto(agent, row.config)
    snapshot.latest_version = row.version
    return agent_pb2.AgentVersion(
        name=f"agents/{row.agent_id}/versions/{row.version}",
        version=row.version,
        agent=snapshot,
        create_time=timestamp(row.created_at),
    )


def document_to_proto(row: tables.KnowledgeDocument) -> agent_pb2.KnowledgeDocument:
    """The `KnowledgeDocument` resource of a row."""
    return agent_pb2.KnowledgeDocument(
        name=f"agents/{row.agent_id}/documents/{row.id}",
        id=row.id,
        title=row.title,
        content=row.content,
        mime_type=row.mime_type,
        passage_count=row.passage_count,
        create_time=timestamp(row.created_at),
        source=row.source,
        content_hash=row.content_hash,
    )


def session_to_proto(row: tables.Session, message_count: int) -> session_pb2.Session:
    """The `Session` resource of a row."""
    return session_pb2.Session(
        name=f"sessions/{row.id}",
        id=row.id,
        agent=f"agents/{row.agent_id}",
        labels=row.labels,
        message_count=message_count,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
    )


def sources_to_proto(row: MessageRecord) -> list[session_pb2.Source]:
    """The knowledge passages a reply was grounded in, as `Source`s."""
    return [session_pb2.Source(**source) for source in row.sources]


def message_to_proto(row: MessageRecord) -> session_pb2.Message:
    """The `Message` resource of a row, with tool calls, usage and metrics that apply."""
    message = session_pb2.Message(
        name=f"sessions/{row.session_id}/messages/{row.id}",
        id=row.id,
        position=row.position,
        role=ROLE_VALUES.get(row.role, session_pb2.ROLE_UNSPECIFIED),
        content=row.content,
        status=_STATUS_TO_ENUM[row.status],
        create_time=timestamp(row.created_at),
    )
    for call in row.tool_calls or ():
        message.tool_calls.add(id=call["id"], name=call["name"], arguments_json=call["arguments"])
    if row.role == "tool":
        message.tool_call_id = row.tool_call_id or ""
        message.tool_error = row.tool_error
    if row.role == "assistant":
        message.usage.CopyFrom(usage_of(row))
        message.metrics.CopyFrom(metrics_of(row))
        message.sources.extend(sources_to_proto(row))
    return message


def usage_of(row: MessageRecord) -> usage_pb2.Usage:
    """The token usage of a reply."""
    return usage_pb2.Usage(
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        total_tokens=row.prompt_tokens + row.completion_tokens,
    )


def metrics_of(row: MessageRecord) -> session_pb2.ReplyMetrics:
    """How a reply was made: backend, agent version, latency and time to first token."""
    return session_pb2.ReplyMetrics(
        backend=row.backend or "",
        agent_version=row.agent_version or 0,
        latency_ms=row.latency_ms or 0,
        time_to_first_token_ms=row.time_to_first_token_ms or 0,
    )


def key_to_proto(row: tables.ApiKey, secret: str = "") -> key_service_pb2.Key:
    """The `Key` resource of a row; `secret` only when the key was just created."""
    return key_service_pb2.Key(
        name=f"keys/{row.id}",
        id=row.id,
        display_name=row.display_name,
        kind=_KIND_TO_ENUM[row.kind],
        scopes=row.scopes,
        allowed_agents=row.allowed_agents,
        allowed_origins=row.allowed_origins,
        prefix=row.prefix,
        secret=secret,
        create_time=timestamp(row.created_at),
        revoke_time=timestamp(row.revoked_at),
        rate_limit=key_service_pb2.RateLimit(
            requests_per_minute=row.requests_per_minute or 0,
            tokens_per_minute=row.tokens_per_minute or 0,
        )
        if row.requests_per_minute or row.tokens_per_minute
        else None,
    )


def page_size(requested: int, default: int = 50) -> int:
    """The page size to use: `default` for 0, at most 1000; a negative one is refused."""
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(requested or default, 1000)
