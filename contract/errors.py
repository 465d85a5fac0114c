"""The error model both ends speak: `google.rpc.Status` details under one `ErrorInfo` domain."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TypeVar

from google.protobuf import any_pb2
from google.rpc import error_details_pb2

ERROR_DOMAIN = "switchboard"
# Errors quote what a caller sent only this far, so a huge input never fills the trailers.
MAX_ECHO_CHARS = 200
_SURROGATE = re.compile("[\ud800-\udfff]")
_T = TypeVar("_T")


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`text` as an error may quote it: at most `limit` characters, marked when cut, lone
    surrogates replaced."""
    if len(text) > limit:
        text = text[:limit] + "…"
    return _SURROGATE.sub("\ufffd", text)


def pack(message: object) -> any_pb2.Any:
    """`message` as a status detail."""
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def unpack_first(details: Sequence[any_pb2.Any], cls: type[_T]) -> _T | None:
    """The first detail of type `cls`, or None."""
    descriptor = cls.DESCRIPTOR  # type: ignore[attr-defined]
    for detail in details:
        if detail.Is(descriptor):
            message = cls()
            detail.Unpack(message)  # type: ignore[arg-type]
            return message
    return None


def error_info(reason: str, metadata: Mapping[str, str] | None = None) -> any_pb2.Any:
    """The `ErrorInfo` detail every error carries: its machine-readable reason in our domain."""
    return pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata))


def bad_request(violations: Sequence[tuple[str, str]]) -> any_pb2.Any:
    """A `BadRequest` detail naming each `(field, description)` violation."""
    return pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
                for field, description in violations
            ]
        )
    )
