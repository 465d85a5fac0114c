"""Prometheus metrics of the core and the edge, and their exposition on `/metrics`.

`switchboard serve --workers N` runs N processes; prometheus-client's multiprocess mode has
each write its samples to files in one directory (owned by the supervisor, emptied at start),
and `/metrics` in any worker reads them all, so a scrape reports one truthful set whichever
worker answers it. The metrics are built on first use, after the process has chosen its mode.

Labels stay few and bounded: doors, routes (RPC names and fixed paths, never raw paths),
statuses, outcomes, backends kinds, and agent ids for tokens."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics import MetricWrapperBase

_M = TypeVar("_M", bound="_Labelled")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Reasons of `switchboard_refusals_total`.
REFUSAL_RATE_LIMIT = "rate_limit"
REFUSAL_BALANCE = "balance"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_FIRST_TOKEN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_BATCH_WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class _Labelled(MetricWrapperBase):
    """`labels()` that finds a child it has given before in one dict lookup: prometheus-client
    converts and checks the values and takes a lock on every call, several times a request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._children: dict[tuple[object, ...], Any] = {}
        super().__init__(*args, **kwargs)

    def labels(self: _M, *labelvalues: object, **labelkwargs: object) -> _M:
        if labelkwargs:
            return super().labels(*labelvalues, **labelkwargs)
        child = self._children.get(labelvalues)
        if child is None:
            child = self._children[labelvalues] = super().labels(*labelvalues)
        return child  # type: ignore[no-any-return]


class _Counter(_Labelled, Counter):
    pass


class _Gauge(_Labelled, Gauge):
    pass


class _Histogram(_Labelled, Histogram):
    pass


class Metrics:
    """Every metric Switchboard exports."""

    def __init__(self) -> None:
        self.requests = _Counter(
            "switchboard_requests",
            "Requests answered, by door (openai, native, grpc, http), route and status "
            "(HTTP status code, or gRPC status name on the grpc door).",
            ["door", "route", "status"],
        )
        self.request_seconds = _Histogram(
            "switchboard_request_duration_seconds",
            "Time from a request's arrival to the end of its response (a stream's last event).",
            ["door", "route"],
            buckets=_LATENCY_BUCKETS,
        )
        self.active_streams = _Gauge(
            "switchboard_active_streams",
            "Streamed responses open now, by door.",
            ["door"],
            multiprocess_mode="livesum",
        )
        self.turn_seconds = _Histogram(
            "switchboard_turn_duration_seconds",
            "Duration of assistant turns, by backend kind and outcome "
            "(complete, incomplete, cancelled, failed).",
            ["backend", "outcome"],
            buckets=_LATENCY_BUCKETS,
        )
        self.first_token_seconds = _Histogram(
            "switchboard_time_to_first_token_seconds",
            "Time from a turn's start to its first reply text, by backend kind.",
            ["backend"],
            buckets=_FIRST_TOKEN_BUCKETS,
        )
        self.tokens = _Counter(
            "switchboard_tokens",
            "Tokens of turns by agent: direction `in` (prompt) and `out` (completion).",
            ["agent", "direction"],
        )
        self.upstream_calls = _Counter(
            "switchboard_upstream_calls",
            "Calls of openai_compatible upstream models by outcome (ok, error, timeout, "
            "rate_limited, auth_refused, key_missing, cancelled).",
            ["outcome"],
        )
        self.upstream_seconds = _Histogram(
            "switchboard_upstream_call_duration_seconds",
            "Duration of upstream model calls, by outcome.",
            ["outcome"],
            buckets=_LATENCY_BUCKETS,
        )
        self.tool_calls = _Counter(
            "switchboard_tool_calls",
            "Webhook tool calls by outcome (ok, http_error, timeout, unreachable, unknown_tool, "
            "bad_arguments, not_configured).",
            ["outcome"],
        )
        self.refusals = _Counter(
            "switchboard_refusals",
            "Requests refused by a rate limit (`rate_limit`) or an exhausted balance (`balance`).",
            ["reason"],
        )
        self.write_batch_size = _Histogram(
            "switchboard_write_batch_size",
            "Turn writes committed together in one transaction.",
            buckets=_BATCH_SIZE_BUCKETS,
        )
        self.write_batch_wait_seconds = _Histogram(
            "switchboard_write_batch_wait_seconds",
            "Time from a turn's write being queued to its transaction's commit.",
            buckets=_BATCH_WAIT_BUCKETS,
        )
        for reason in (REFUSAL_RATE_LIMIT, REFUSAL_BALANCE):
            self.refusals.labels(reason)


_metrics: Metrics | None = None


def metrics() -> Metrics:
    """The process's metrics, built on first use."""
    global _metrics
    if _metrics is None:
        # `_created` series double a scrape and exist only in one process's view.
        disable_created_metrics()
        _metrics = Metrics()
    return _metrics


def count_refusal(reason: str) -> None:
    """Counts one request refused for `reason`: `REFUSAL_RATE_LIMIT` or `REFUSAL_BALANCE`."""
    metrics().refusals.labels(reason).inc()


def prepare_directory(directory: str | os.PathLike[str]) -> str:
    """Creates the multiprocess directory, or empties it of an earlier run's samples."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return str(path)


def use_multiprocess(directory: str) -> None:
    """Makes this process write its samples to `directory`; call before any metric is used."""
    if _metrics is not None:
        raise RuntimeError("metrics were used before multiprocess mode was chosen")
    os.environ[MULTIPROCESS_ENV] = directory
    values.ValueClass = values.get_value_class()


def process_ended(pid: int) -> None:
    """Drops the live gauges of a process that has exited, in multiprocess mode."""
    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, directory)


def exposition() -> bytes:
    """The text format of every metric: of all processes in multiprocess mode."""
    metrics()
    directory = os.environ.get(MULTIPROCESS_ENV)
    if not directory:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, directory)
    return generate_latest(registry)
