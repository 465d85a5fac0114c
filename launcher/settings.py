"""Defaults of the server's settings; flags and `SWITCHBOARD_*` variables override them."""

from __future__ import annotations

DEFAULT_GRPC_ADDR = "127.0.0.1:50051"
DEFAULT_HTTP_ADDR = "127.0.0.1:8080"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///switchboard.db"
DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_WORKERS = 1
DEFAULT_LOG_LEVEL = "info"
# JSON lines unless stderr is a terminal.
DEFAULT_LOG_FORMAT = "auto"
# The request line and headers together (431 above); a few KB is usual, cookies and tokens included.
DEFAULT_MAX_HEADER_BYTES = 65_536
# How long in-flight calls and streams may run after SIGTERM before they are ended.
DEFAULT_SHUTDOWN_GRACE_SECONDS = 10.0
# Redis for rate-limit counters shared by replicas; None keeps them in process memory.
DEFAULT_REDIS_URL: str | None = None
# The history sent to a language model fits this many (estimated) tokens.
DEFAULT_CONTEXT_TOKENS = 8192
# Model steps per turn when the agent has tools; the last step is offered none.
DEFAULT_MAX_TOOL_STEPS = 5
