"""The chat roles, as the OpenAI surface names them: the contract's `Role` enum, lower-cased."""

from __future__ import annotations

from switchboard.v1 import session_pb2

# `user`, `assistant`, … by their enum value, in the enum's order; UNSPECIFIED is no role.
ROLE_NAMES: dict[session_pb2.Role, str] = {
    value: name.removeprefix("ROLE_").lower()
    for name, value in session_pb2.Role.items()
    if value != session_pb2.ROLE_UNSPECIFIED
}
ROLES: tuple[str, ...] = tuple(ROLE_NAMES.values())
ROLE_VALUES: dict[str, session_pb2.Role] = {name: value for value, name in ROLE_NAMES.items()}
