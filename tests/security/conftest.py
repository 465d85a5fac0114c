"""Fixtures of the security suite: the gRPC and HTTP clients of the shared server, and
servers of their own on SQLite or PostgreSQL for the concurrency tests."""

from __future__ import annotations

from tests.grpc.conftest import (  # noqa: F401
    auth,
    channel,
    key_with_scopes,
    make_agent,
    stubs,
)
from tests.http.conftest import anonymous, async_http, http  # noqa: F401
