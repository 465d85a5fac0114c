"""Errors of the edge: gRPC status → HTTP status, in the native and the OpenAI error shapes.

Every failure, whether the core answered it or the edge found it (bad JSON, unknown route), is an
`ApiError` carrying a gRPC code and `google.rpc.Status` details, so one renderer serves both shapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import any_pb2, json_format
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from contract.errors import bad_request, error_info, unpack_first

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_SANITISED_CODES = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS)
_MAX_AUTHORIZATION = 8192
MISSING_API_KEY = "missing API key: send the header `Authorization: Bearer sk_…`"
INVALID_API_KEY = (
    "invalid or revoked API key: send a live key in the header `Authorization: Bearer sk_…`"
)
# The core words some errors for gRPC callers (metadata); over HTTP they name the header.
_HTTP_MESSAGES = {"API_KEY_MISSING": MISSING_API_KEY, "API_KEY_INVALID": INVALID_API_KEY}

_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_balance",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}

# The SDKs retry these by default and a retry can succeed: no `x-should-retry: false`.
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})


class ApiError(Exception):
    """A failed request: a gRPC code, a message for people and `google.rpc.Status` details."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        details: Sequence[any_pb2.Any] = (),
        *,
        http_status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})
        self.error_info = unpack_first(self.details, error_details_pb2.ErrorInfo)
        self.http_status = http_status or _http_status(code, self.reason)

    @property
    def reason(self) -> str:
        """The `ErrorInfo` reason, or empty when the details carry none."""
        return self.error_info.reason if self.error_info is not None else ""

    @property
    def field(self) -> str | None:
        """The first field violation's path, when the details carry a `BadRequest`."""
        bad_request = unpack_first(self.details, error_details_pb2.BadRequest)
        if bad_request is None or not bad_request.field_violations:
            return None
        return bad_request.field_violations[0].field

    @property
    def retry_after(self) -> float | None:
        """The `RetryInfo` delay in seconds, or None."""
        retry_info = unpack_first(self.details, error_details_pb2.RetryInfo)
        if retry_info is None:
            return None
        return retry_info.retry_delay.ToTimedelta().total_seconds()


def invalid_argument(field: str | None, message: str, reason: str = "INVALID_ARGUMENT") -> ApiError:
    """A 400 found by the edge, naming `field` in a `BadRequest` detail when there is one."""
    details = [error_info(reason)]
    if field:
        details.append(bad_request([(field, message)]))
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message, details)


def unsupported(field: str, message: str) -> ApiError:
    """A 400 for a request parameter that cannot be honoured (OpenAI code
    `unsupported_parameter`, `param` naming it)."""
    return invalid_argument(field, message, reason="UNSUPPORTED_PARAMETER")


def missing_api_key(headers: Mapping[bytes, bytes]) -> ApiError | None:
    """The 401 of a request whose `Authorization` header is absent or not `Bearer <token>`.

    Checked before the body is read, so a caller without a key learns nothing of the route's
    validation; the core still decides whether a well-formed key is valid.
    """
    value = headers.get(b"authorization")
    # The same bounds as the metadata the edge forwards: anything else would reach the core keyless.
    if value is not None and len(value) <= _MAX_AUTHORIZATION and value.isascii():
        text = value.decode()
        scheme, _, token = text.partition(" ")
        if scheme.lower() == "bearer" and token.strip() and text.isprintable():
            return None
    return edge_error(grpc.StatusCode.UNAUTHENTICATED, 401, "API_KEY_MISSING", MISSING_API_KEY)


def edge_error(code: grpc.StatusCode, http_status: int, reason: str, message: str) -> ApiError:
    """An error the edge answers itself (unknown route, wrong method, body too large)."""
    info = error_info(reason)
    return ApiError(code, message, [info], http_status=http_status)


def from_rpc_error(error: grpc.aio.AioRpcError) -> ApiError:
    """The `ApiError` of a failed call, with the rich details from its trailing metadata."""
    details: list[any_pb2.Any] = []
    for key, value in error.trailing_metadata() or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                details = list(status_pb2.Status.FromString(value).details)
            except DecodeError:
                details = []
    code = error.code()
    message = error.details() or ""
    if code in _SANITISED_CODES and not details:
        # Status text of an unexpected failure may carry a traceback; it stays in the core's logs.
        message = "internal error"
    error = ApiError(code, message, details)
    error.message = _HTTP_MESSAGES.get(error.reason, error.message)
    return error


def native_body(error: ApiError) -> dict[str, object]:
    """The grpc-gateway error body `{"code", "message", "details"}`."""
    return {
        "code": error.code.value[0],
        "message": error.message,
        "details": [
            json_format.MessageToDict(d, preserving_proto_field_name=True) for d in error.details
        ],
    }


def openai_body(error: ApiError) -> dict[str, object]:
    """The OpenAI error body; all four keys are always present and `code` is a string."""
    status = error.http_status
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    reason = error.reason
    if reason == "AGENT_NOT_FOUND":
        code = "model_not_found"
    elif reason:
        code = reason.lower()
    else:
        code = error.code.name.lower()
    return {"error": {"message": error.message, "type": kind, "param": error.field, "code": code}}


def error_headers(error: ApiError) -> dict[str, str]:
    """`Retry-After` from RetryInfo, and `x-should-retry: false` where a retry cannot help."""
    headers = dict(error.headers)
    status = error.http_status
    retry_after = error.retry_after
    if retry_after is not None:
        headers["retry-after"] = str(max(0, math.ceil(retry_after)))
        headers["retry-after-ms"] = str(max(0, round(retry_after * 1000)))
    if 400 <= status < 500 and status not in _RETRYABLE_CLIENT_STATUSES:
        headers["x-should-retry"] = "false"
    return headers


def _http_status(code: grpc.StatusCode, reason: str) -> int:
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and reason == "INSUFFICIENT_BALANCE":
        return 402
    if code is grpc.StatusCode.UNAVAILABLE and reason.startswith("UPSTREAM"):
        return 502
    return _HTTP_STATUS.get(code, 500)
