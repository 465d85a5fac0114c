"""Proto JSON in and out: request messages from the body, path bindings and query string.

Follows grpc-gateway: the body (`*` or one field) is decoded first, path bindings then override
it, and query parameters fill the remaining fields. JSON is proto JSON with the original field
names; unknown JSON fields are ignored. Every rejection names the field at fault.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from functools import cache
from typing import Any
from urllib.parse import unquote_to_bytes

from google.api import field_behavior_pb2
from google.protobuf import descriptor, json_format, message

from contract.errors import clip
from http_edge.errors import ApiError, invalid_argument
from http_edge.mux import Route

_FD = descriptor.FieldDescriptor
_PARSE_ERROR_FIELD = re.compile(r"Failed to parse (\w+) field: ")
_PARSE_ERROR_AT = re.compile(r" at \w+\.([\w.\[\]]+?)\.*$")
# Only these byte sequences can decode to a lone surrogate: a `\udXXX` escape, or raw CESU-8
# bytes, which `json.loads` lets through.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_INTEGER_TYPES = frozenset(
    {
        _FD.TYPE_INT32,
        _FD.TYPE_INT64,
        _FD.TYPE_UINT32,
        _FD.TYPE_UINT64,
        _FD.TYPE_SINT32,
        _FD.TYPE_SINT64,
        _FD.TYPE_FIXED32,
        _FD.TYPE_FIXED64,
        _FD.TYPE_SFIXED32,
        _FD.TYPE_SFIXED64,
    }
)
_WRAPPERS = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
_FLOAT_TYPES = frozenset({_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT})
_STRING_WELL_KNOWN = frozenset(
    f"google.protobuf.{name}" for name in ("Timestamp", "Duration", "FieldMask")
)
_UPDATE_MASK = "update_mask"


def decode_json(body: bytes) -> Any:
    """The JSON document of a request body; malformed JSON is a 400."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise invalid_argument(None, f"request body is not valid JSON: {clip(str(exc))}") from None


def may_hold_surrogates(body: bytes) -> bool:
    """Whether decoding `body` as JSON can yield a lone surrogate (cheap test before a walk)."""
    return _MAYBE_SURROGATE.search(body) is not None


def encode_json(document: object) -> bytes:
    """Compact UTF-8 JSON."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form; its `\uXXXX` escape keeps the document valid.
        return json.dumps(document, separators=(",", ":")).encode()


def check_text(value: str, field: str) -> None:
    """Reject a string protobuf cannot hold: one with a lone UTF-16 surrogate."""
    if value.isascii():
        return
    try:
        value.encode()
    except UnicodeEncodeError:
        raise invalid_argument(
            field, f"`{field}` holds a lone UTF-16 surrogate (\\ud800-\\udfff): not valid Unicode"
        ) from None


def message_to_dict(msg: message.Message) -> dict[str, Any]:
    """Proto JSON with the original field names and every unpopulated field emitted."""
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def response_to_dict(route: Route, msg: message.Message) -> Any:
    """The JSON of a response, narrowed to the rule's `response_body` field when it names one."""
    if route.response_body:
        value = getattr(msg, route.response_body)
        if isinstance(value, message.Message):
            return message_to_dict(value)
        wrapper = message_to_dict(msg)
        return wrapper.get(route.response_body)
    return message_to_dict(msg)


def build_request(
    route: Route, body: bytes, bindings: dict[str, str], query_string: bytes
) -> message.Message:
    """The request message of `route` from the body, the path bindings and the query string."""
    request = route.request_class()
    document = None
    if route.body and body.strip():
        document = decode_json(body)
        _parse_body(route, request, document, may_hold_surrogates(body))
    for field_path, value in bindings.items():
        _set_path(request, field_path, [value], field_path)
    query = _query_parameters(route, bindings, query_string)
    for key, values in query.items():
        _set_path(request, key, values, key)
    if _wants_derived_mask(route, request, query):
        _set_derived_mask(route, request, document)
    check_required(request)
    return request


def check_raw_path(raw_path: bytes | None, bindings: dict[str, str]) -> None:
    """Reject a path whose percent-escapes are not UTF-8 (the server decoded them lossily),
    naming the path variable that holds them."""
    if not raw_path or b"%" not in raw_path:
        return
    try:
        unquote_to_bytes(raw_path).decode()
    except UnicodeDecodeError:
        field = next((k for k, v in bindings.items() if "\ufffd" in v), None)
        where = f"`{field}`" if field else "the path"
        raise invalid_argument(field, f"{where} is not valid UTF-8") from None


def check_required(request: message.Message) -> None:
    """Reject a request missing a field the contract marks `REQUIRED`, naming the field."""
    missing = _first_missing(request, "")
    if missing is not None:
        raise invalid_argument(missing, f"missing required field `{missing}`")


def parse_error_field(error: Exception, prefix: str = "") -> str:
    """The dotted field path a `json_format.ParseError` message names."""
    text = str(error)
    at = _PARSE_ERROR_AT.search(text)
    parts = [at.group(1)] if at else _PARSE_ERROR_FIELD.findall(text)
    return ".".join([p for p in (prefix,) if p] + parts)


def _parse_body(route: Route, request: message.Message, document: Any, surrogates: bool) -> None:
    if route.body == "*":
        if not isinstance(document, dict):
            raise invalid_argument(None, "request body must be a JSON object")
        target = document
        _check_message(request.DESCRIPTOR, document, "", surrogates)
    else:
        field = request.DESCRIPTOR.fields_by_name[route.body]
        if _is_plain_message(field) and not isinstance(document, dict):
            raise invalid_argument(route.body, "request body must be a JSON object")
        target = {route.body: document}
        if document is not None:
            _check_field(field, document, route.body, surrogates)
    try:
        json_format.ParseDict(target, request, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        field_path = parse_error_field(exc)
        reason = _PARSE_ERROR_AT.sub("", str(exc).rsplit("field: ", 1)[-1]).rstrip(".")
        raise invalid_argument(
            field_path or None, f"invalid value for `{field_path}`: {clip(reason)}"
        ) from None


def _is_plain_message(field: descriptor.FieldDescriptor) -> bool:
    nested = field.message_type
    return (
        nested is not None
        and not field.is_repeated
        and not nested.full_name.startswith("google.protobuf.")
    )


def _check_message(
    message_type: descriptor.Descriptor, document: dict[str, Any], path: str, surrogates: bool
) -> None:
    # json_format drops unknown enum names silently, takes `[]` for a message, trips on lone
    # surrogates and words its errors in Python terms: the JSON types are checked here first.
    fields = _json_fields(message_type)
    for key, value in document.items():
        if surrogates and not key.isascii():
            # Even an unknown key is looked up by json_format, which fails on a lone surrogate.
            check_text(key, f"{path}.{clip(key)}" if path else clip(key))
        field = fields.get(key)
        if field is not None and value is not None:
            _check_field(field, value, f"{path}.{field.name}" if path else field.name, surrogates)


def _check_field(
    field: descriptor.FieldDescriptor, value: Any, path: str, surrogates: bool
) -> None:
    nested = field.message_type
    if nested is not None and nested.GetOptions().map_entry:
        if not isinstance(value, dict):
            raise _wrong_type(path, "an object")
        value_field = nested.fields_by_name["value"]
        for key, item in value.items():
            item_path = f"{path}[{clip(json.dumps(key, ensure_ascii=False))}]"
            if surrogates:
                check_text(key, item_path)
            if item is not None:
                _check_value(value_field, item, item_path, surrogates)
    elif field.is_repeated:
        if not isinstance(value, list):
            raise _wrong_type(path, "an array")
        for index, item in enumerate(value):
            if item is not None:
                _check_value(field, item, f"{path}[{index}]", surrogates)
    else:
        _check_value(field, value, path, surrogates)


def _check_value(
    field: descriptor.FieldDescriptor, value: Any, path: str, surrogates: bool
) -> None:
    kind = field.type
    if kind == _FD.TYPE_MESSAGE:
        full_name = field.message_type.full_name
        if full_name in _WRAPPERS:
            _check_value(field.message_type.fields_by_name["value"], value, path, surrogates)
        elif full_name in _STRING_WELL_KNOWN:
            _check_string(value, path, surrogates)
        elif full_name.startswith("google.protobuf."):
            if surrogates:
                _check_texts(value, path)
        elif isinstance(value, dict):
            _check_message(field.message_type, value, path, surrogates)
        else:
            raise _wrong_type(path, "an object")
    elif kind in (_FD.TYPE_STRING, _FD.TYPE_BYTES):
        _check_string(value, path, surrogates)
    elif kind == _FD.TYPE_BOOL:
        if not isinstance(value, bool):
            raise _wrong_type(path, "a boolean")
    elif kind == _FD.TYPE_ENUM:
        _enum_number(field, value, path)
    elif kind in _INTEGER_TYPES or kind in _FLOAT_TYPES:
        # Numbers and numeric strings are both proto JSON; json_format judges their values.
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _wrong_type(path, "a number")
        if isinstance(value, str) and surrogates:
            check_text(value, path)


def _check_string(value: Any, path: str, surrogates: bool) -> None:
    if not isinstance(value, str):
        raise _wrong_type(path, "a string")
    if surrogates:
        check_text(value, path)


def _check_texts(value: Any, path: str) -> None:
    if isinstance(value, str):
        check_text(value, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_texts(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            item_path = f"{path}.{clip(key)}"
            check_text(key, item_path)
            _check_texts(item, item_path)


def _wrong_type(path: str, expected: str) -> ApiError:
    return invalid_argument(path, f"invalid value for `{path}`: must be {expected}")


def _enum_number(field: descriptor.FieldDescriptor, value: Any, path: str) -> int:
    """The number of an enum value given by name or number; anything else is a 400."""
    enum_type = field.enum_type
    found = None
    if isinstance(value, str):
        if value.isascii():
            found = enum_type.values_by_name.get(value)
            if found is None and value.strip().lstrip("-").isdigit():
                found = enum_type.values_by_number.get(int(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        found = enum_type.values_by_number.get(value)
    if found is not None:
        return int(found.number)
    names = ", ".join(v.name for v in enum_type.values)
    shown = repr(clip(value)) if isinstance(value, str) else clip(json.dumps(value))
    raise invalid_argument(path, f"invalid value for `{path}`: {shown} is not one of {names}")


@cache
def _json_fields(message_type: descriptor.Descriptor) -> dict[str, descriptor.FieldDescriptor]:
    # The names json_format accepts for a field: the original one and its lowerCamelCase form.
    fields = {f.json_name: f for f in message_type.fields}
    fields.update(message_type.fields_by_name)
    return fields


def _query_parameters(
    route: Route, bindings: dict[str, str], query_string: bytes
) -> dict[str, list[str]]:
    if route.body == "*" or not query_string:
        return {}
    parameters: dict[str, list[str]] = {}
    for pair in query_string.split(b"&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition(b"=")
        key = _query_text(raw_key, None)
        value = _query_text(raw_value, key)
        if key in bindings or (
            route.body and (key == route.body or key.startswith(route.body + "."))
        ):
            continue
        parameters.setdefault(key, []).append(value)
    return parameters


def _query_text(raw: bytes, key: str | None) -> str:
    # Strict UTF-8: a lone surrogate (`%ED%A0%80`) or a stray byte is refused, not replaced.
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode()
    except UnicodeDecodeError:
        if key is None:
            shown = clip(raw.decode(errors="replace"))
            raise invalid_argument(shown, f"query parameter name `{shown}` is not UTF-8") from None
        raise invalid_argument(key, f"query parameter `{key}` is not valid UTF-8") from None


def _set_path(request: message.Message, path: str, values: list[str], name: str) -> None:
    target = request
    parts = path.split(".")
    for part in parts[:-1]:
        field = _field(target, part)
        if field is None:
            return
        if field.message_type is None or field.is_repeated:
            name = clip(name)
            raise invalid_argument(name, f"`{name}` does not name a field that can be set")
        target = getattr(target, field.name)
    field = _field(target, parts[-1])
    if field is None:
        return
    try:
        _assign(target, field, values)
    except (ValueError, TypeError, json_format.ParseError) as exc:
        name = clip(name)
        raise invalid_argument(name, f"invalid value for `{name}`: {clip(str(exc))}") from None


def _field(msg: message.Message, name: str) -> descriptor.FieldDescriptor | None:
    fields = msg.DESCRIPTOR.fields_by_name
    return fields.get(name) or msg.DESCRIPTOR.fields_by_camelcase_name.get(name)


def _assign(msg: message.Message, field: descriptor.FieldDescriptor, values: list[str]) -> None:
    repeated = field.is_repeated
    if field.message_type is not None:
        if field.message_type.GetOptions().map_entry:
            raise ValueError("map fields cannot be set from the query string")
        if repeated:
            raise ValueError("repeated messages cannot be set from the query string")
        _assign_well_known(getattr(msg, field.name), values)
        return
    converted = [_scalar(field, value) for value in values]
    if repeated:
        getattr(msg, field.name).extend(converted)
    else:
        setattr(msg, field.name, converted[-1])


def _assign_well_known(target: message.Message, values: list[str]) -> None:
    full_name = target.DESCRIPTOR.full_name
    if full_name == "google.protobuf.FieldMask":
        paths = [p for value in values for p in value.split(",") if p]
        target.paths.extend(paths)  # type: ignore[attr-defined]
    elif full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        target.FromJsonString(values[-1])  # type: ignore[attr-defined]
    elif full_name in _WRAPPERS:
        value_field = target.DESCRIPTOR.fields_by_name["value"]
        target.value = _scalar(value_field, values[-1])  # type: ignore[attr-defined]
    else:
        raise ValueError(f"{full_name} cannot be set from the query string")


def _scalar(field: descriptor.FieldDescriptor, value: str) -> Any:
    kind = field.type
    if kind == _FD.TYPE_STRING:
        return value
    if kind == _FD.TYPE_BOOL:
        lowered = value.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    if kind in _INTEGER_TYPES:
        return int(value)
    if kind in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return float(value)
    if kind == _FD.TYPE_ENUM:
        names = ", ".join(v.name for v in field.enum_type.values)
        found = field.enum_type.values_by_name.get(value)
        if found is None and value.strip().lstrip("-").isdigit():
            found = field.enum_type.values_by_number.get(int(value))
        if found is None:
            raise ValueError(f"{clip(value)!r} is not one of {names}")
        return found.number
    if kind == _FD.TYPE_BYTES:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    raise ValueError(f"unsupported field type {kind}")


def _wants_derived_mask(
    route: Route, request: message.Message, query: dict[str, list[str]]
) -> bool:
    if route.http_method != "PATCH" or not route.body or route.body == "*":
        return False
    mask_field = request.DESCRIPTOR.fields_by_name.get(_UPDATE_MASK)
    if mask_field is None or mask_field.message_type is None:
        return False
    if mask_field.message_type.full_name != "google.protobuf.FieldMask":
        return False
    return _UPDATE_MASK not in query and not request.update_mask.paths  # type: ignore[attr-defined]


def _set_derived_mask(route: Route, request: message.Message, document: Any) -> None:
    # grpc-gateway's FieldMaskFromRequestBody: the mask lists the leaves the JSON body names.
    if not isinstance(document, dict):
        return
    body_type = request.DESCRIPTOR.fields_by_name[route.body].message_type
    request.update_mask.paths.extend(_mask_paths(body_type, document, ""))  # type: ignore[attr-defined]


def _mask_paths(
    message_type: descriptor.Descriptor, document: dict[str, Any], prefix: str
) -> Iterable[str]:
    for key, value in document.items():
        field = message_type.fields_by_name.get(key) or message_type.fields_by_camelcase_name.get(
            key
        )
        if field is None:
            continue
        path = prefix + field.name
        nested = field.message_type
        if (
            isinstance(value, dict)
            and value
            and nested is not None
            and not field.is_repeated
            and not nested.full_name.startswith("google.protobuf.")
        ):
            yield from _mask_paths(nested, value, path + ".")
        else:
            yield path


@cache
def _requirements(
    message_type: descriptor.Descriptor,
) -> tuple[tuple[descriptor.FieldDescriptor, ...], tuple[descriptor.FieldDescriptor, ...]]:
    required = tuple(
        f
        for f in message_type.fields
        if field_behavior_pb2.REQUIRED
        in f.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    )
    nested = tuple(
        f
        for f in message_type.fields
        if f.message_type is not None
        and not f.message_type.GetOptions().map_entry
        and not f.message_type.full_name.startswith("google.protobuf.")
    )
    return required, nested


def _first_missing(msg: message.Message, prefix: str) -> str | None:
    required, nested = _requirements(msg.DESCRIPTOR)
    for field in required:
        if not _is_set(msg, field):
            return prefix + field.name
    for field in nested:
        if field.is_repeated:
            for index, item in enumerate(getattr(msg, field.name)):
                missing = _first_missing(item, f"{prefix}{field.name}[{index}].")
                if missing is not None:
                    return missing
        elif msg.HasField(field.name):
            missing = _first_missing(getattr(msg, field.name), f"{prefix}{field.name}.")
            if missing is not None:
                return missing
    return None


def _is_set(msg: message.Message, field: descriptor.FieldDescriptor) -> bool:
    if field.is_repeated:
        return len(getattr(msg, field.name)) > 0
    if field.message_type is not None:
        return msg.HasField(field.name)
    if field.type in (_FD.TYPE_STRING, _FD.TYPE_BYTES):
        return bool(getattr(msg, field.name))
    return True


__all__ = [
    "ApiError",
    "build_request",
    "check_raw_path",
    "check_required",
    "check_text",
    "decode_json",
    "encode_json",
    "may_hold_surrogates",
]
