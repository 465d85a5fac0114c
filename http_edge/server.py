"""The edge's uvicorn server, with request heads bounded in size."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn

from http_edge.protocol import bounded_head_protocol


class EdgeServer(uvicorn.Server):
    """Serves `app` with uvicorn and the httptools protocol, refusing request heads over
    `max_header_bytes`. With `handle_signals` off, the caller owns SIGTERM and SIGINT and sets
    `should_exit`."""

    def __init__(
        self, app: Any, *, max_header_bytes: int, handle_signals: bool = True, **options: Any
    ) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                http=bounded_head_protocol(max_header_bytes),
                log_level="warning",
                access_log=False,
                lifespan="on",
                **options,
            )
        )
        self._handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield
