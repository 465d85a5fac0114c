"""The OpenAPI 3.1 document of the edge, generated from the same descriptors as the routes."""

from __future__ import annotations

import re
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor, descriptor_pool

from http_edge.mux import Route
from http_edge.pattern import Variable

_FD = descriptor.FieldDescriptor
_ERROR_REF = {"$ref": "#/components/schemas/google.rpc.Status"}
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
            parameters.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
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
        operation["requestBody"] = {
            "required": route.body != "*",
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
    operation["responses"] = {
        "200": {"description": "OK", "content": content},
        "default": {
            "description": "An error, `{code, message, details}`.",
            "content": {"application/json": {"schema": _ERROR_REF}},
        },
    }
    return operation


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
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": _field_schema(field, schemas),
            }
        )
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
        properties[field.name] = schema
    result: dict[str, Any] = {
        "type": "object",
        "title": message_type.name,
        "properties": properties,
    }
    if required:
        result["required"] = required
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
            "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
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
    schemas["openai.Error"] = openai_error
    error_response = {
        "description": "An error in the OpenAI shape.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/openai.Error"}}},
    }
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
                            "schema": _ref_by_name("switchboard.v1.ChatCompletion", schemas)
                        },
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                "default": error_response,
            },
        }
    }
    redirect = {
        "post": {
            "operationId": "OpenAI_RedirectChat",
            "tags": ["OpenAI"],
            "summary": "Redirect to /v1/chat/completions, keeping method and body",
            "responses": {
                "307": {
                    "description": "Temporary redirect.",
                    "headers": {"location": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    return {"/v1/chat/completions": completion, "/v2/chats/openai": redirect}


def _ref_by_name(full_name: str, schemas: dict[str, Any]) -> dict[str, Any]:
    return _ref(descriptor_pool.Default().FindMessageTypeByName(full_name), schemas)


def _health_paths() -> dict[str, Any]:
    def probe(summary: str, codes: dict[str, str]) -> dict[str, Any]:
        return {
            "get": {
                "operationId": summary.split()[0],
                "tags": ["Health"],
                "summary": summary,
                "security": [],
                "responses": {code: {"description": text} for code, text in codes.items()},
            }
        }

    return {
        "/healthz": probe("healthz: the process is up", {"200": "Up."}),
        "/readyz": probe(
            "readyz: the core answers a health check",
            {"200": "Ready.", "503": "The core does not answer."},
        ),
    }


def _words(name: str) -> str:
    spaced = re.sub(r"(?<!^)(?=[A-Z])", " ", name)
    return spaced[:1] + spaced[1:].lower()
