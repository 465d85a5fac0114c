"""The OpenAPI 3.1 document of the edge, generated from the same descriptors as the routes."""

from __future__ import annotations

import re
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor

from contract.roles import ROLES
from http_edge.mux import Route
from http_edge.pattern import Variable
from http_edge.responses import is_openai_path

_FD = descriptor.FieldDescriptor
_ERROR_REF = {"$ref": "#/components/schemas/google.rpc.Status"}
_OPENAI_ERROR_REF = {"$ref": "#/components/schemas/openai.Error"}
# The errors an operation can answer, and when: every keyed route can fail validation, lack
# a key or scope, miss its resource, be rate limited or fail inside.
_ERRORS = {
    "400": "Invalid request: `details` name the field at fault.",
    "401": "No API key, or an unknown or revoked one.",
    "402": "The workspace's token balance is spent.",
    "403": "The key lacks the scope, or may not reach this agent or origin.",
    "404": "No such resource, or none this key may see.",
    "409": "Already exists, or an idempotency key reused with another request.",
    "413": "The request body exceeds the size limit.",
    "429": "Rate limited: retry after `Retry-After` seconds.",
    "431": "The request line and headers exceed the limit.",
    "5XX": "The server or an upstream model failed; the message shows no internals.",
}
_CHAT_RPCS = frozenset(
    {
        "/switchboard.v1.CompletionService/CreateChatCompletion",
        "/switchboard.v1.CompletionService/StreamChatCompletion",
        "/switchboard.v1.SessionService/SendMessage",
        "/switchboard.v1.SessionService/StreamMessage",
    }
)
_INT32 = frozenset({_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32})
_UINT32 = frozenset({_FD.TYPE_UINT32, _FD.TYPE_FIXED32})
_INT64 = frozenset(
    {_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64, _FD.TYPE_UINT64, _FD.TYPE_FIXED64}
)
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
}
_OPENAI_PATHS = ("/v1/chat/completions",)


def build_openapi(routes: list[Route], version: str = "0.1.0") -> dict[str, Any]:
    """The whole document: every annotated route, the OpenAI routes and the health routes."""
    schemas: dict[str, Any] = {"google.rpc.Status": _status_schema()}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.template.source in _OPENAI_PATHS and route.http_method == "POST":
            continue
        path, parameters = _openapi_path(route)
        operation = _operation(route, parameters, schemas)
        paths.setdefault(path, {})[route.http_method.lower()] = operation
    paths.update(_openai_paths(schemas))
    paths.update(_health_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard",
            "version": version,
            "description": "Native REST (transcoded from the switchboard.v1 gRPC services) and "
            "the OpenAI-compatible surface.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _openapi_path(route: Route) -> tuple[str, list[dict[str, Any]]]:
    parts: list[str] = []
    parameters: list[dict[str, Any]] = []
    for segment in route.template.segments:
        if not isinstance(segment, Variable):
            parts.append(segment)
            continue
        wildcards = sum(1 for s in segment.segments if s in ("*", "**"))
        for index, inner in enumerate(segment.segments):
            if inner not in ("*", "**"):
                parts.append(inner)
                continue
            previous = segment.segments[index - 1] if index else ""
            if wildcards == 1 and not previous:
                name = segment.field_path
            else:
                name = previous[:-1] if previous.endswith("s") else previous or segment.field_path
            parts.append("{" + name + "}")
            # One `*` segment never holds a slash; `**` may.
            schema = (
                {"type": "string"} if inner == "**" else {"type": "string", "pattern": "^[^/]+$"}
            )
            parameters.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": schema,
                    "description": f"Part of `{segment.field_path}`, "
                    f"`{'/'.join(segment.segments)}`.",
                }
            )
    path = "/" + "/".join(parts)
    if route.template.verb:
        path += ":" + route.template.verb
    return path, parameters


def _operation(
    route: Route, parameters: list[dict[str, Any]], schemas: dict[str, Any]
) -> dict[str, Any]:
    request_type = route.method.input_type
    response_type = route.method.output_type
    service = route.method.containing_service.name
    operation: dict[str, Any] = {
        "operationId": f"{service}_{route.method.name}",
        "tags": [service],
        "summary": _words(route.method.name),
        "x-grpc-method": route.rpc_path,
        "parameters": parameters + _query_parameters(route, schemas),
    }
    if route.body:
        if route.body == "*":
            body_schema = _ref(request_type, schemas)
        else:
            body_schema = _field_schema(request_type.fields_by_name[route.body], schemas)
        bound = {v.field_path for v in route.template.variables}
        needs_body = route.body != "*" or any(
            field_behavior_pb2.REQUIRED
            in f.GetOptions().Extensions[field_behavior_pb2.field_behavior]
            for f in request_type.fields
            if f.name not in bound
        )
        operation["requestBody"] = {
            "required": needs_body,
            "content": {"application/json": {"schema": body_schema}},
        }
    result = _ref(response_type, schemas)
    if route.server_streaming:
        frame = {
            "type": "object",
            "properties": {"result": result, "error": _ERROR_REF},
            "description": "One frame of the stream: a message or the error that ended it.",
        }
        content = {
            "application/x-ndjson": {"schema": frame},
            "text/event-stream": {"schema": {"type": "string"}, "x-data": frame},
        }
    else:
        content = {"application/json": {"schema": result}}
    statuses = ["400", "401", "403", "404", "429", "5XX"]
    if route.rpc_path in _CHAT_RPCS:
        statuses.append("402")
    if route.http_method != "GET":
        statuses.append("409")
    if route.body:
        statuses.append("413")
    openai = is_openai_path(route.template.source)
    operation["responses"] = {
        "200": {"description": "OK", "content": content},
        **_error_responses(statuses, openai=openai),
    }
    return operation


def _error_responses(statuses: list[str], *, openai: bool) -> dict[str, Any]:
    responses = {status: _error_response(status, openai=openai) for status in statuses}
    # Headers are refused before any route is known, so this one is always the native shape.
    responses["431"] = _error_response("431", openai=False)
    return dict(sorted(responses.items()))


def _error_response(status: str, *, openai: bool) -> dict[str, Any]:
    shape = (
        "OpenAI's `{error: {message, type, param, code}}`"
        if openai
        else "`{code, message, details}`"
    )
    schema = _OPENAI_ERROR_REF if openai else _ERROR_REF
    return {
        "description": f"{_ERRORS[status]} The body is {shape}.",
        "content": {"application/json": {"schema": dict(schema)}},
    }


def _query_parameters(route: Route, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    if route.body == "*":
        return []
    bound = {v.field_path for v in route.template.variables}
    parameters = []
    for name, field in _leaf_fields(route.method.input_type, "", 0):
        if name in bound or (
            route.body and (name == route.body or name.startswith(route.body + "."))
        ):
            continue
        schema = _field_schema(field, schemas)
        if name == "page_size":
            schema["minimum"] = 0  # AIP-158: a negative page size is an invalid argument
        parameters.append({"name": name, "in": "query", "required": False, "schema": schema})
    return parameters


def _leaf_fields(
    message_type: descriptor.Descriptor, prefix: str, depth: int
) -> list[tuple[str, Any]]:
    leaves: list[tuple[str, Any]] = []
    for field in message_type.fields:
        name = prefix + field.name
        nested = field.message_type
        if nested is None or nested.full_name in _WELL_KNOWN:
            leaves.append((name, field))
        elif not field.is_repeated and depth < 2:
            leaves.extend(_leaf_fields(nested, name + ".", depth + 1))
    return leaves


def _ref(message_type: descriptor.Descriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    if message_type.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[message_type.full_name])
    if message_type.full_name not in schemas:
        schemas[message_type.full_name] = {}  # placeholder first: messages may be recursive
        schemas[message_type.full_name] = _message_schema(message_type, schemas)
    return {"$ref": f"#/components/schemas/{message_type.full_name}"}


def _message_schema(message_type: descriptor.Descriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in message_type.fields:
        schema = _field_schema(field, schemas)
        behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
        if field_behavior_pb2.OUTPUT_ONLY in behaviors:
            schema["readOnly"] = True
        if field_behavior_pb2.REQUIRED in behaviors:
            required.append(field.name)
            # An empty string or list is unset in proto3, so it fails the same check.
            if schema.get("type") == "string":
                schema["minLength"] = 1
            elif schema.get("type") == "array":
                schema["minItems"] = 1
        properties[field.name] = schema
    result: dict[str, Any] = {
        "type": "object",
        "title": message_type.name,
        "properties": properties,
    }
    if required:
        result["required"] = required
    exclusive = [
        [f.name for f in oneof.fields] for oneof in message_type.oneofs if len(oneof.fields) > 1
    ]
    if exclusive:
        # At most one member of a oneof may be set (proto3 `optional` makes one-field oneofs).
        result["not"] = {
            "anyOf": [
                {"required": [a, b]}
                for names in exclusive
                for i, a in enumerate(names)
                for b in names[i + 1 :]
            ]
        }
    return result


def _field_schema(field: descriptor.FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    nested = field.message_type
    if nested is not None and nested.GetOptions().map_entry:
        value = _scalar_schema(nested.fields_by_name["value"], schemas)
        return {"type": "object", "additionalProperties": value}
    base = _scalar_schema(field, schemas)
    if field.is_repeated:
        return {"type": "array", "items": base}
    return base


def _scalar_schema(field: descriptor.FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    kind = field.type
    if kind == _FD.TYPE_MESSAGE:
        return _ref(field.message_type, schemas)
    if kind == _FD.TYPE_ENUM:
        return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    if kind == _FD.TYPE_BOOL:
        return {"type": "boolean"}
    if kind in _INT32:
        return {"type": "integer", "format": "int32"}
    if kind in _UINT32:
        return {"type": "integer", "format": "uint32", "minimum": 0}
    if kind in _INT64:
        return {"type": "string", "format": "int64"}
    if kind in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return {"type": "number"}
    if kind == _FD.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    return {"type": "string"}


def _status_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "Status",
        "properties": {
            "code": {"type": "integer", "description": "The gRPC status code."},
            "message": {"type": "string"},
            "details": {"type": "array", "items": dict(_WELL_KNOWN["google.protobuf.Any"])},
        },
        "required": ["code", "message", "details"],
    }


def _openai_paths(schemas: dict[str, Any]) -> dict[str, Any]:
    nullable_string = {"type": ["string", "null"]}
    content_part = {
        "type": "object",
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
        "required": ["type", "text"],
    }
    message = {
        "type": "object",
        "properties": {
            "role": {"enum": list(ROLES)},
            "content": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": content_part},
                    {"type": "null"},
                ]
            },
            "name": {"type": "string"},
            "tool_call_id": {"type": "string"},
            "tool_calls": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["role"],
    }
    request = {
        "type": "object",
        "description": "Other OpenAI fields are accepted and ignored: the published agent governs.",
        "properties": {
            "model": {"type": "string", "description": "The agent id or slug."},
            "agent_id": {"type": "string", "description": "Alias of `model`."},
            "messages": {"type": "array", "items": message, "minItems": 1},
            "stream": {"type": "boolean"},
            "stream_options": {
                "type": "object",
                "properties": {"include_usage": {"type": "boolean"}},
            },
            "user": {"type": "string"},
            "session_id": {"type": "string", "description": "Continue this session."},
        },
        "required": ["messages"],
        "additionalProperties": True,
    }
    openai_error = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": nullable_string,
                    "code": {"type": "string"},
                },
                "required": ["message", "type", "param", "code"],
            }
        },
        "required": ["error"],
    }
    schemas["openai.ChatCompletionRequest"] = request
    schemas["openai.ChatCompletion"] = _openai_completion_schema()
    schemas["openai.Error"] = openai_error
    errors = ["400", "401", "402", "403", "404", "409", "413", "429", "5XX"]
    completion = {
        "post": {
            "operationId": "OpenAI_CreateChatCompletion",
            "tags": ["OpenAI"],
            "summary": "Create a chat completion (OpenAI-compatible)",
            "x-grpc-method": "/switchboard.v1.CompletionService/CreateChatCompletion, "
            "/switchboard.v1.CompletionService/StreamChatCompletion",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/openai.ChatCompletionRequest"}
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "A `chat.completion`, or with `stream: true` an SSE stream of "
                    "`chat.completion.chunk` events ending with `data: [DONE]`.",
                    "headers": {"x-session-id": {"schema": {"type": "string"}}},
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/openai.ChatCompletion"}
                        },
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                **_error_responses(errors, openai=True),
            },
        }
    }
    redirect = {
        "post": {
            "operationId": "OpenAI_RedirectChat",
            "tags": ["OpenAI"],
            "summary": "Redirect to /v1/chat/completions, keeping method and body",
            # The redirect itself needs no key: the request it points to checks it.
            "security": [],
            "responses": {
                "307": {
                    "description": "Temporary redirect.",
                    "headers": {"location": {"schema": {"type": "string"}}},
                },
                "431": _error_response("431", openai=False),
            },
        }
    }
    return {"/v1/chat/completions": completion, "/v2/chats/openai": redirect}


def _openai_completion_schema() -> dict[str, Any]:
    """`chat.completion` as the edge renders it: OpenAI's nulls, plus Switchboard's extensions."""
    nullable_string = {"type": ["string", "null"]}
    integer = {"type": "integer"}
    tool_call = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "function": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
                "required": ["name", "arguments"],
            },
        },
        "required": ["id", "type", "function"],
    }
    message = {
        "type": "object",
        "properties": {
            "role": {"type": "string"},
            "content": {"type": "string"},
            "refusal": nullable_string,
            "tool_calls": {"type": "array", "items": tool_call},
        },
        "required": ["role", "content", "refusal"],
    }
    choice = {
        "type": "object",
        "properties": {
            "index": integer,
            "message": message,
            "logprobs": {"type": "null"},
            "finish_reason": nullable_string,
        },
        "required": ["index", "message", "logprobs", "finish_reason"],
    }
    usage = {
        "type": ["object", "null"],
        "properties": {
            "prompt_tokens": integer,
            "completion_tokens": integer,
            "total_tokens": integer,
        },
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
    }
    return {
        "type": "object",
        "title": "ChatCompletion",
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "chat.completion"},
            "created": integer,
            "model": {"type": "string"},
            "choices": {"type": "array", "items": choice},
            "usage": usage,
            "system_fingerprint": nullable_string,
            "agent_id": {"type": "string"},
            "session_id": {"type": "string"},
            "content": {"type": "string", "description": "The reply's text (thinnestAI shape)."},
        },
        "required": [
            "id",
            "object",
            "created",
            "model",
            "choices",
            "usage",
            "system_fingerprint",
            "agent_id",
            "session_id",
            "content",
        ],
    }


def _health_paths() -> dict[str, Any]:
    def probe(summary: str, codes: dict[str, tuple[str, str]]) -> dict[str, Any]:
        return {
            "get": {
                "operationId": summary.split(":")[0],
                "tags": ["Health"],
                "summary": summary,
                "security": [],
                "responses": {
                    code: {
                        "description": text,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"status": {"const": status}},
                                    "required": ["status"],
                                }
                            }
                        },
                    }
                    for code, (text, status) in codes.items()
                }
                | {"431": _error_response("431", openai=False)},
            }
        }

    return {
        "/healthz": probe("healthz: the process is up", {"200": ("Up.", "ok")}),
        "/readyz": probe(
            "readyz: the core answers a health check",
            {"200": ("Ready.", "ready"), "503": ("The core does not answer.", "unavailable")},
        ),
    }


def _words(name: str) -> str:
    spaced = re.sub(r"(?<!^)(?=[A-Z])", " ", name)
    return spaced[:1] + spaced[1:].lower()
