"""The edge's uvicorn server: request heads bounded in size, and a shutdown that gives open
streams a grace period and then ends each of them with an error instead of cutting it."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from http_edge.protocol import edge_protocol
from http_edge.streaming import GracePeriod

# After the grace period, the time streams get to write their last event before uvicorn
# cancels whatever still runs.
_LAST_WRITE_SECONDS = 1.0


class EdgeServer(uvicorn.Server):
    """Serves `app` (built with the same `grace`) with uvicorn and the httptools protocol.

    On shutdown it stops accepting connections, lets requests run for `shutdown_grace_seconds`,
    then ends `grace`, so that each open stream closes with a `server is shutting down` error.
    With `handle_signals` off, the caller owns SIGTERM and SIGINT and sets `should_exit`."""

    def __init__(
        self,
        app: Any,
        grace: GracePeriod,
        *,
        shutdown_grace_seconds: float,
        max_header_bytes: int,
        handle_signals: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                http=edge_protocol(max_header_bytes),
                log_level="warning",
                access_log=False,
                # uvicorn's own lines go through the process's log format, not its own.
                log_config=None,
                # No X-Forwarded-For rewriting: nothing reads the client address, and its
                # middleware is one more frame around every open stream.
                proxy_headers=False,
                lifespan="on",
                timeout_graceful_shutdown=math.ceil(shutdown_grace_seconds + _LAST_WRITE_SECONDS),
                **options,
            )
        )
        self._grace = grace
        self._grace_seconds = shutdown_grace_seconds
        self._handle_signals = handle_signals
        # Set once the server accepts connections.
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Starts uvicorn and sets `listening` once it accepts connections."""
        await super().startup(sockets)
        if self.started:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's signal handling, or none when the caller owns the signals."""
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, ending `grace` once the grace period has passed."""
        end = asyncio.get_running_loop().call_later(self._grace_seconds, self._grace.end)
        try:
            await super().shutdown(sockets)
        finally:
            end.cancel()
