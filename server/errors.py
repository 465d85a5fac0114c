"""The one domain error hierarchy, and its one mapping to gRPC status with rich details.

Every failure a caller can act on is a `SwitchboardError`; `to_grpc_status` turns it into a
`google.rpc.Status` carrying `ErrorInfo` (and `BadRequest` / `RetryInfo` where they apply).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from contract.errors import bad_request, clip, error_info, pack

# Hard bounds on what one status carries, whatever built it: trailers must stay small.
_MAX_MESSAGE_CHARS = 1024
_MAX_DETAIL_CHARS = 512


class SwitchboardError(Exception):
    """A failure with a status code, a machine-readable reason and a message for people."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[tuple[str, str]] = (),
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = dict(metadata or {})
        self.field_violations = list(field_violations)
        self.retry_after_seconds = retry_after_seconds


class InvalidArgument(SwitchboardError):
    """A request field that is not valid, named in a `BadRequest` detail."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}", field_violations=[(field, description)])

    @classmethod
    def of(cls, violations: Sequence[tuple[str, str]]) -> InvalidArgument:
        """One error carrying several field violations, the first named in the message."""
        error = cls(*violations[0])
        if len(violations) > 1:
            error.message += f" (and {len(violations) - 1} more field violations)"
        error.field_violations = list(violations)
        return error


class NotFound(SwitchboardError):
    """A resource that does not exist, or that the caller may not see."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AgentNotFound(NotFound):
    """No agent with this id or slug that the caller may see."""

    reason = "AGENT_NOT_FOUND"

    def __init__(self, agent: str) -> None:
        agent = clip(agent)
        super().__init__(f"agent {agent!r} does not exist", metadata={"agent": agent})


class SessionNotFound(NotFound):
    """No session with this id that the caller may see."""

    reason = "SESSION_NOT_FOUND"

    def __init__(self, session: str) -> None:
        session = clip(session)
        super().__init__(f"session {session!r} does not exist", metadata={"session": session})


class FailedPrecondition(SwitchboardError):
    """A request that the resource's current state does not allow."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class AgentNotPublished(FailedPrecondition):
    """The agent has no published version for chat to serve."""

    reason = "AGENT_NOT_PUBLISHED"

    def __init__(self, agent: str) -> None:
        agent = clip(agent)
        super().__init__(
            f"agent {agent!r} has no published version; publish it first",
            metadata={"agent": agent},
        )


class AlreadyExists(SwitchboardError):
    """A resource with this unique name (e.g. an agent's slug) already exists."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class Conflict(SwitchboardError):
    """Concurrent requests collided (an idempotency key, a document's source); retry."""

    code = grpc.StatusCode.ABORTED
    reason = "CONFLICT"


class Unauthenticated(SwitchboardError):
    """A missing, invalid or revoked API key."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "API_KEY_INVALID"


class PermissionDenied(SwitchboardError):
    """A key that may not make this call: it lacks the scope, origin or kind."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "SCOPE_MISSING"


class InsufficientBalance(SwitchboardError):
    """The workspace's token balance is used up. HTTP 402."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "INSUFFICIENT_BALANCE"


class RateLimited(SwitchboardError):
    """The key's requests or tokens per minute are used up; carries the retry delay."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"


class UpstreamError(SwitchboardError):
    """The agent's upstream model failed: refused the connection, answered 5xx after the
    retries, refused the agent's credentials, or broke off. HTTP 502."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UPSTREAM_ERROR"


class UpstreamTimeout(SwitchboardError):
    """The upstream sent no first byte, or stalled between chunks, within the timeout."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "UPSTREAM_TIMEOUT"


class UpstreamRateLimited(SwitchboardError):
    """The upstream answered 429; its `Retry-After` is passed on."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "UPSTREAM_RATE_LIMITED"


class Unsupported(SwitchboardError):
    """A request parameter that this agent's backend cannot honour."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "UNSUPPORTED_PARAMETER"

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}", field_violations=[(field, description)])


class TurnCancelled(SwitchboardError):
    """The turn was cancelled through the cancel RPC."""

    code = grpc.StatusCode.CANCELLED
    reason = "TURN_CANCELLED"


class Internal(SwitchboardError):
    """An unexpected failure; its message never carries internals."""

    def __init__(self) -> None:
        super().__init__("internal error; the server log has the details")


def to_status_proto(error: SwitchboardError) -> status_pb2.Status:
    """The `google.rpc.Status` for an error: ErrorInfo always, BadRequest and RetryInfo when
    they apply."""
    details = [
        error_info(error.reason, {k: clip(v, _MAX_DETAIL_CHARS) for k, v in error.metadata.items()})
    ]
    if error.field_violations:
        details.append(
            bad_request(
                [
                    (clip(f, _MAX_DETAIL_CHARS), clip(d, _MAX_DETAIL_CHARS))
                    for f, d in error.field_violations
                ]
            )
        )
    if error.retry_after_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after_seconds * 1000))
        details.append(pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(
        code=getattr(code_pb2, error.code.name),
        message=clip(error.message, _MAX_MESSAGE_CHARS),
        details=details,
    )


def to_grpc_status(error: SwitchboardError) -> grpc.Status:
    """The error as the status a servicer aborts with."""
    return rpc_status.to_status(to_status_proto(error))
