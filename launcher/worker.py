"""One serving process: the core's servicers over gRPC and, unless gRPC-only, the HTTP edge on
the same event loop, calling the servicers through the in-process channel (no second hop).

`switchboard serve` runs one of these, or several sharing the ports (SO_REUSEPORT) and the
database, so that every core of the machine serves requests.

On SIGTERM or SIGINT both servers stop accepting and give in-flight calls and streams the
shutdown grace period; then the gRPC server cancels its calls (clients get UNAVAILABLE) and the
edge ends its open streams with an error event. The turns so cancelled store their partial
replies before the database is closed."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import uvloop

from launcher.ports import listen
from observability import logs, metrics, tracing
from server.app import Core
from server.chat import TurnSettings
from server.store import Store
from server.store.caching import Generation
from server.store.database import create_engine

if TYPE_CHECKING:
    from http_edge.server import EdgeServer

log = logging.getLogger("switchboard")

# glibc's `mallopt` parameter for the most malloc arenas a process keeps.
_M_ARENA_MAX = -8
# Allocations between collections of the youngest generation (the default is 700).
_GC_YOUNG_THRESHOLD = 10_000
# The time turns cancelled at the end of the grace period get to store their partial replies.
_TURN_WRITE_SECONDS = 5.0


@dataclass(frozen=True)
class WorkerConfig:
    """What one worker process serves, and how: database, ports, limits, logs, telemetry."""

    database_url: str
    grpc_addr: str
    # None serves gRPC only.
    http_addr: str | None
    max_body_bytes: int
    max_header_bytes: int
    shutdown_grace_seconds: float
    reuse_port: bool
    turns: TurnSettings = field(default_factory=TurnSettings)
    log_level: str = "info"
    log_format: str = "json"
    # The multiprocess metrics directory shared by the workers of one `serve`, if several.
    metrics_dir: str | None = None
    metrics_token: str | None = None
    otel: bool = False
    redis_url: str | None = None


def run_worker(config: WorkerConfig, shared_generation: Any = None, ready: Any = None) -> None:
    """Serves until SIGTERM or SIGINT, then drains in-flight calls and streams. Tells `ready`
    (a function, or a pipe's sending end) once it listens on both ports."""
    _fewer_malloc_arenas()
    logs.configure(config.log_level, config.log_format)
    if config.metrics_dir:
        metrics.use_multiprocess(config.metrics_dir)
    if config.otel:
        tracing.configure()
    announce = functools.partial(ready.send, True) if isinstance(ready, Connection) else ready
    try:
        uvloop.run(_serve(config, Generation(shared_generation), announce))
    except OSError as error:
        raise SystemExit(f"switchboard: {error}") from None
    finally:
        tracing.shutdown()


def _fewer_malloc_arenas() -> None:
    """Has glibc keep two malloc arenas instead of one per thread and core. The database
    threads' arenas otherwise keep what a burst of turns once needed, about 6 KB more of
    resident memory per open stream (measured with `make bench-streams`)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_ARENA_MAX, 2)


async def _serve(
    config: WorkerConfig, generation: Generation, ready: Callable[[], None] | None
) -> None:
    # The HTTP port first: a taken port fails the start before anything else runs.
    listener = listen(config.http_addr, config.reuse_port) if config.http_addr else None
    store = Store(create_engine(config.database_url), generation)
    core = Core(store, config.turns, redis_url=config.redis_url)
    await core.start()
    grpc_server = await core.serve_grpc(config.grpc_addr, reuse_port=config.reuse_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    edge: asyncio.Task[None] | None = None
    http: EdgeServer | None = None
    if listener is not None:
        from http_edge.app import create_app
        from http_edge.server import EdgeServer
        from http_edge.streaming import GracePeriod

        grace = GracePeriod()
        app = create_app(
            config.grpc_addr,
            max_body_bytes=config.max_body_bytes,
            channel=core.local_channel(),
            grace=grace,
            metrics_token=config.metrics_token,
        )
        # The worker owns the signals: it stops the edge and the gRPC server together.
        http = EdgeServer(
            app,
            grace,
            shutdown_grace_seconds=config.shutdown_grace_seconds,
            max_header_bytes=config.max_header_bytes,
            handle_signals=False,
        )
        edge = asyncio.create_task(http.serve(sockets=[listener]))
        edge.add_done_callback(lambda _: stop.set())
    # Everything built so far lives as long as the process: keep the collector off it.
    gc.collect()
    gc.freeze()
    # A request leaves a few dozen objects in reference cycles and keeps more alive while it
    # runs; at the default threshold (700) the young generation is scanned every few requests,
    # each time over every request in flight: about a tenth of the loop's time at 16 connections.
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    if http is not None and edge is not None:
        listening = asyncio.ensure_future(http.listening.wait())
        await asyncio.wait((listening, edge), return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
    if ready is not None and (edge is None or not edge.done()):
        ready()
    await stop.wait()
    if http is not None:
        http.should_exit = True
    # Both drain in-flight calls and streams over the same grace period, then end them.
    await asyncio.gather(
        *([edge] if edge is not None else []),
        grpc_server.stop(grace=config.shutdown_grace_seconds),
    )
    await core.stop_listening()
    await _let_cancelled_turns_finish()
    await core.close()


async def _let_cancelled_turns_finish() -> None:
    """Waits for the tasks still running: turns cancelled at the end of the grace period store
    their partial replies in tasks of their own, which the servers do not wait for."""
    running = asyncio.all_tasks() - {asyncio.current_task()}
    if not running:
        return
    _, pending = await asyncio.wait(running, timeout=_TURN_WRITE_SECONDS)
    if pending:
        log.warning("%d task(s) still running at exit", len(pending))
