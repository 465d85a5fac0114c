"""Checks every request message passes before a service reads it: the strings can be stored
and the enum values are known, so no database or handler meets what it cannot hold."""

from __future__ import annotations

from google.protobuf import descriptor
from google.protobuf.message import Message

from server.errors import InvalidArgument

_FD = descriptor.FieldDescriptor


class _Undecodable:
    """The request of a call whose bytes did not decode as the RPC's request message."""

    __slots__ = ()


UNDECODABLE = _Undecodable()


def check_request(request: object) -> None:
    """Raises `InvalidArgument` naming the first field that holds a NUL character (PostgreSQL
    text cannot store it) or an enum number the contract does not define."""
    if request is UNDECODABLE:
        raise InvalidArgument(
            "request", "is not a valid protobuf encoding of this method's request message"
        )
    if isinstance(request, Message):
        _check(request, "")


def _check(message: Message, prefix: str) -> None:
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _check_map(field, value, path)
        elif field.is_repeated:
            for index, item in enumerate(value):
                _check_value(field, item, f"{path}[{index}]")
        else:
            _check_value(field, value, path)


def _check_map(field: descriptor.FieldDescriptor, entries: object, path: str) -> None:
    value_field = field.message_type.fields_by_name["value"]
    for key, value in entries.items():  # type: ignore[attr-defined]
        if isinstance(key, str) and "\0" in key:
            raise InvalidArgument(path, "keys must not contain NUL characters")
        _check_value(value_field, value, f"{path}[{str(key)[:40]!r}]")


def _check_value(field: descriptor.FieldDescriptor, value: object, path: str) -> None:
    kind = field.type
    if kind == _FD.TYPE_STRING:
        if "\0" in value:  # type: ignore[operator]
            raise InvalidArgument(path, "must not contain NUL characters")
    elif kind == _FD.TYPE_MESSAGE:
        _check(value, path + ".")  # type: ignore[arg-type]
    elif kind == _FD.TYPE_ENUM and value not in field.enum_type.values_by_number:
        known = ", ".join(v.name for v in field.enum_type.values)
        raise InvalidArgument(path, f"unknown value {value}; expected one of {known}")
