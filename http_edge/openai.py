"""The OpenAI surface: `/v1/chat/completions` parsed into and rendered from the proto messages.

Proto JSON cannot say what OpenAI clients need (explicit nulls, `content` as a string or parts,
integer `created`), so this module reads and writes the OpenAI shapes by hand from the
CompletionService messages. `/v1/models` needs no such care and goes through the transcoder.
"""

from __future__ import annotations

import re
from typing import Any

from switchboard.v1 import completion_service_pb2 as completion_pb2

from contract.roles import ROLES
from http_edge.core import CoreClient, forwarded_metadata
from http_edge.errors import (
    ApiError,
    invalid_argument,
    missing_api_key,
    openai_body,
    unsupported,
)
from http_edge.forward import Headers, forward_stream, forward_unary
from http_edge.marshal import check_text, decode_json, encode_json
from http_edge.requests import ClientDisconnected, headers_of, read_body
from http_edge.responses import send_error
from http_edge.streaming import SSE_CONTENT_TYPE, SSE_PING, GracePeriod, Pings, sse_event
from http_edge.transcoder import method_not_allowed
from http_edge.types import Message, Receive, Scope, Send

CREATE_RPC = "/switchboard.v1.CompletionService/CreateChatCompletion"
STREAM_RPC = "/switchboard.v1.CompletionService/StreamChatCompletion"
CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
# The request fields this surface reads; every other top-level field is ignored, and named in
# the `x-ignored-params` response header. The published agent governs sampling, tools and
# instructions (the Flowyte rule).
READ_FIELDS = frozenset(
    {
        "model",
        "agent_id",
        "messages",
        "stream",
        "stream_options",
        "user",
        "session_id",
        "response_format",
        "n",
        "tool_choice",
    }
)
IGNORED_PARAMS_HEADER = b"x-ignored-params"
_PARAM = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_IGNORED_NAMES = 32
_RESPONSE_FORMATS = ("text", "json_object", "json_schema")
_DONE = sse_event(b"[DONE]")


def parse_chat_request(document: Any) -> completion_pb2.CreateChatCompletionRequest:
    """The request of an OpenAI chat completion body; fields it does not read are ignored."""
    if not isinstance(document, dict):
        raise invalid_argument(None, "request body must be a JSON object")
    model = _optional(document, "model", str, "a string")
    agent_id = _optional(document, "agent_id", str, "a string")
    if not model and not agent_id:
        raise invalid_argument("model", "missing required field `model` (the agent id or slug)")
    messages = document.get("messages")
    if messages is None:
        raise invalid_argument("messages", "missing required field `messages`")
    if not isinstance(messages, list):
        raise invalid_argument("messages", "`messages` must be an array")
    if not messages:
        raise invalid_argument("messages", "`messages` must hold at least one message")
    request = completion_pb2.CreateChatCompletionRequest(
        model=model or "",
        agent_id=agent_id or "",
        messages=[_parse_message(m, f"messages[{i}]") for i, m in enumerate(messages)],
        stream=bool(_optional(document, "stream", bool, "a boolean")),
        user=_optional(document, "user", str, "a string") or "",
        session_id=_optional(document, "session_id", str, "a string") or "",
    )
    options = _optional(document, "stream_options", dict, "an object")
    if options:
        include_usage = _optional(options, "include_usage", bool, "a boolean", "stream_options.")
        request.stream_options.include_usage = bool(include_usage)
    _refuse_what_cannot_be_honoured(document)
    response_format = _optional(document, "response_format", dict, "an object")
    if response_format is not None:
        request.response_format.CopyFrom(_parse_response_format(response_format))
    return request


def ignored_params(document: Any) -> list[str]:
    """The top-level request fields this surface does not read, sorted; names that are not
    plain identifiers are left out of the header (it must stay short, printable ASCII)."""
    if not isinstance(document, dict):
        return []
    names = sorted(key for key in document if key not in READ_FIELDS and _PARAM.fullmatch(key))
    return names[:_MAX_IGNORED_NAMES]


def _naming_ignored(send: Send, ignored: list[str]) -> Send:
    """`send` adding the `x-ignored-params` header to the response, when fields were ignored."""
    if not ignored:
        return send
    header = (IGNORED_PARAMS_HEADER, ", ".join(ignored).encode())

    async def send_naming(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), header]
        await send(message)

    return send_naming


def _refuse_what_cannot_be_honoured(document: dict[str, Any]) -> None:
    """Fields a client depends on that no agent can honour answer 400 instead of being
    ignored: several choices, and forcing a tool call (the agent's tools run server-side)."""
    n = document.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
        raise invalid_argument("n", "`n` must be an integer")
    if n is not None and n != 1:
        raise unsupported("n", "only one choice is generated per request; send `n: 1`")
    choice = document.get("tool_choice")
    if choice is None or choice in ("auto", "none"):
        return
    if choice == "required" or isinstance(choice, dict):
        raise unsupported(
            "tool_choice",
            "the agent's tools run on the server, so a request cannot force a tool call; "
            'send `tool_choice: "auto"` or leave it out',
        )
    raise invalid_argument(
        "tool_choice", '`tool_choice` must be "auto", "none", "required" or an object'
    )


def _parse_response_format(document: dict[str, Any]) -> completion_pb2.ResponseFormat:
    kind = document.get("type")
    if kind not in _RESPONSE_FORMATS:
        raise invalid_argument(
            "response_format.type",
            f"`response_format.type` must be one of {', '.join(_RESPONSE_FORMATS)}",
        )
    parsed = completion_pb2.ResponseFormat(type=kind)
    if kind == "json_schema":
        schema = document.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("schema", {}), dict):
            raise invalid_argument(
                "response_format.json_schema",
                "`response_format.json_schema` must be an object with a `schema` JSON Schema",
            )
        parsed.json_schema_json = encode_json(schema).decode()
    return parsed


def render_completion(completion: completion_pb2.ChatCompletion) -> dict[str, Any]:
    """The OpenAI `chat.completion`, plus the `agent_id`, `session_id` and `content` extensions."""
    return {
        "id": completion.id,
        "object": completion.object or "chat.completion",
        "created": completion.created,
        "model": completion.model,
        "choices": [
            {
                "index": choice.index,
                "message": _render_message(choice.message),
                "logprobs": None,
                "finish_reason": choice.finish_reason or None,
            }
            for choice in completion.choices
        ],
        "usage": _render_usage(completion) if completion.HasField("usage") else None,
        "system_fingerprint": completion.system_fingerprint or None,
        "agent_id": completion.agent_id,
        "session_id": completion.session_id,
        "content": completion.content,
    }


def render_chunk(
    chunk: completion_pb2.ChatCompletionChunk, id_: str, created: int
) -> dict[str, Any]:
    """One `chat.completion.chunk`; `id` and `created` are those of the stream's first chunk."""
    return {
        "id": id_,
        "object": chunk.object or "chat.completion.chunk",
        "created": created,
        "model": chunk.model,
        "system_fingerprint": chunk.system_fingerprint or None,
        "choices": [
            {
                "index": choice.index,
                "delta": _render_delta(choice.delta),
                "logprobs": None,
                "finish_reason": choice.finish_reason if choice.HasField("finish_reason") else None,
            }
            for choice in chunk.choices
        ],
        "usage": _render_usage(chunk) if chunk.HasField("usage") else None,
        "agent_id": chunk.agent_id,
        "session_id": chunk.session_id,
    }


class ChatCompletions:
    """`POST /v1/chat/completions`: JSON, or SSE when the body says `"stream": true`."""

    def __init__(
        self,
        core: CoreClient,
        *,
        max_body_bytes: int,
        ping_interval: float,
        grace: GracePeriod | None = None,
    ) -> None:
        self._core = core
        self._max_body_bytes = max_body_bytes
        self._pings = Pings(ping_interval)
        self._grace = grace or GracePeriod()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_error(scope, send, method_not_allowed(["POST"]))
            return
        headers = headers_of(scope)
        unauthenticated = missing_api_key(headers)
        if unauthenticated is not None:
            await send_error(scope, send, unauthenticated)
            return
        try:
            document = decode_json(await read_body(receive, headers, self._max_body_bytes))
            send = _naming_ignored(send, ignored_params(document))
            request = parse_chat_request(document)
        except ApiError as error:
            await send_error(scope, send, error)
            return
        except ClientDisconnected:
            return
        metadata = forwarded_metadata(headers, scope["request_id"])
        # Not kept for as long as a stream lasts.
        del document, headers
        if request.stream:
            call = self._core.streaming(STREAM_RPC)(request, metadata=metadata)
            del request, metadata
            await forward_stream(
                scope,
                receive,
                send,
                call,
                ChunkEvents(),
                pings=self._pings,
                grace=self._grace,
            )
        else:
            call = self._core.unary(CREATE_RPC)(request, metadata=metadata)
            await forward_unary(scope, receive, send, call, _render_response)


def _render_response(completion: completion_pb2.ChatCompletion) -> tuple[bytes, Headers]:
    return encode_json(render_completion(completion)), [_session_header(completion.session_id)]


def _session_header(session_id: str) -> tuple[bytes, bytes]:
    return (b"x-session-id", session_id.encode())


class ChunkEvents:
    """OpenAI's stream framing: a `chat.completion.chunk` per event, all with the first chunk's
    id and time, then `data: [DONE]`."""

    __slots__ = ("_created", "_id")
    content_type = SSE_CONTENT_TYPE
    ping = SSE_PING

    def __init__(self) -> None:
        self._id = ""
        self._created = 0

    def headers(self, first: completion_pb2.ChatCompletionChunk) -> Headers:
        """`x-session-id` from the first chunk."""
        return [_session_header(first.session_id)] if first.session_id else []

    def message(self, chunk: completion_pb2.ChatCompletionChunk) -> bytes:
        """A chunk as an SSE event, with the stream's first id and time."""
        if not self._id:
            self._id, self._created = chunk.id, chunk.created
        return sse_event(encode_json(render_chunk(chunk, self._id, self._created)))

    def failure(self, error: ApiError, shutting_down: bool) -> bytes:
        """The error as an SSE event, then `[DONE]` when the server is shutting down."""
        # A stream the server stopped did not fail: it still ends with [DONE].
        event = sse_event(encode_json(openai_body(error)))
        return event + _DONE if shutting_down else event

    def end(self) -> bytes:
        """`data: [DONE]`."""
        return _DONE


class RedirectToChatCompletions:
    """`POST /v2/chats/openai`: a 307 to `/v1/chat/completions`, so method and body are kept."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_error(scope, send, method_not_allowed(["POST"]))
            return
        location = CHAT_COMPLETIONS_PATH
        if scope["query_string"]:
            location += "?" + scope["query_string"].decode("latin-1")
        await send(
            {
                "type": "http.response.start",
                "status": 307,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def _optional(
    document: dict[str, Any], key: str, kind: type, description: str, prefix: str = ""
) -> Any:
    value = document.get(key)
    # bool is an int in Python, and JSON keeps them apart.
    if value is None or (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))):
        if isinstance(value, str):
            check_text(value, prefix + key)
        return value
    raise invalid_argument(prefix + key, f"`{prefix}{key}` must be {description}")


def _parse_message(document: Any, path: str) -> completion_pb2.ChatMessage:
    if not isinstance(document, dict):
        raise invalid_argument(path, f"`{path}` must be an object")
    role = document.get("role")
    if role is None:
        raise invalid_argument(f"{path}.role", f"missing required field `{path}.role`")
    # A list or an object is unhashable: the type is checked before the lookup.
    if not isinstance(role, str) or role not in ROLES:
        allowed = ", ".join(ROLES)
        raise invalid_argument(f"{path}.role", f"`{path}.role` must be one of {allowed}")
    message = completion_pb2.ChatMessage(
        role=role,
        content=_parse_content(document, role, path),
        name=_optional(document, "name", str, "a string", path + ".") or "",
        tool_call_id=_optional(document, "tool_call_id", str, "a string", path + ".") or "",
    )
    tool_calls = _optional(document, "tool_calls", list, "an array", path + ".")
    for index, tool_call in enumerate(tool_calls or ()):
        message.tool_calls.append(_parse_tool_call(tool_call, f"{path}.tool_calls[{index}]"))
    return message


def _parse_content(document: dict[str, Any], role: str, path: str) -> str:
    content = document.get("content")
    if isinstance(content, str):
        check_text(content, f"{path}.content")
        return content
    if content is None:
        if role == "assistant":
            return ""
        raise invalid_argument(f"{path}.content", f"missing required field `{path}.content`")
    if not isinstance(content, list):
        raise invalid_argument(
            f"{path}.content", f"`{path}.content` must be a string or an array of text parts"
        )
    texts = []
    for index, part in enumerate(content):
        part_path = f"{path}.content[{index}]"
        if not isinstance(part, dict):
            raise invalid_argument(part_path, f"`{part_path}` must be an object")
        kind = part.get("type")
        if kind != "text":
            raise invalid_argument(
                f"{part_path}.type",
                f"`{part_path}.type` must be `text`; only text content parts are supported",
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid_argument(f"{part_path}.text", f"`{part_path}.text` must be a string")
        check_text(text, f"{part_path}.text")
        texts.append(text)
    return "".join(texts)


def _parse_tool_call(document: Any, path: str) -> completion_pb2.ChatToolCall:
    if not isinstance(document, dict):
        raise invalid_argument(path, f"`{path}` must be an object")
    function = _optional(document, "function", dict, "an object", path + ".") or {}
    return completion_pb2.ChatToolCall(
        id=_optional(document, "id", str, "a string", path + ".") or "",
        type=_optional(document, "type", str, "a string", path + ".") or "function",
        function=completion_pb2.ChatFunctionCall(
            name=_optional(function, "name", str, "a string", path + ".function.") or "",
            arguments=_optional(function, "arguments", str, "a string", path + ".function.") or "",
        ),
    )


def _render_message(message: completion_pb2.ChatCompletionMessage) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "role": message.role or "assistant",
        "content": message.content,
        "refusal": message.refusal if message.HasField("refusal") else None,
    }
    if message.tool_calls:
        rendered["tool_calls"] = [
            {
                "id": call.id,
                "type": call.type or "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls
        ]
    return rendered


def _render_delta(delta: completion_pb2.ChatCompletionDelta) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    if delta.role:
        rendered["role"] = delta.role
    if delta.role or delta.content:
        rendered["content"] = delta.content
    if delta.HasField("refusal"):
        rendered["refusal"] = delta.refusal
    return rendered


def _render_usage(
    message: completion_pb2.ChatCompletion | completion_pb2.ChatCompletionChunk,
) -> dict[str, int]:
    usage = message.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
