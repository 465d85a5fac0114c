"""Log lines: one JSON object per line for collectors, or readable text on a terminal.

Every line names the request it was written for (see `observability.context`). Only the
fields listed here are written: a log call cannot add another by accident, so message
content, keys and upstream secrets reach a log only if a message itself carries them, and
none does."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from observability import context

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("auto", "json", "text")
# Per-line facts a call may pass with `extra=`; anything else given that way is not written.
EXTRA_FIELDS = ("door", "method", "status", "latency_ms")
_CONTEXT_FIELDS = ("request_id", "workspace", "agent", "session", "route")
OWN_LOGGERS = ("switchboard", "server", "http_edge", "observability")


# The JSON of a line: one encoder for every line, as `json.dumps` would build one per call.
_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode
# The last second formatted, and its text: lines come many to a second.
_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int(created % 1 * 1000):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    request = context.current()
    if request is not None:
        for name in _CONTEXT_FIELDS:
            value = getattr(request, name)
            if value is not None:
                fields[name] = value
        if request.door is not None:
            fields["door"] = request.door
    for name in EXTRA_FIELDS:
        value = record.__dict__.get(name)
        if value is not None:
            fields[name] = value
    return fields


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "pid", "message", "request_id", "workspace", "agent",
    "session", "route", "status", "latency_ms", …}`, fields that are not known left out. The
    process id tells apart the lines of the workers of one `serve`, which share one stderr."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return _encode(line)


class TextFormatter(logging.Formatter):
    """`19:54:45.123 INFO    message  request_id=… route=… status=200 latency_ms=3.1`."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        millis = int(record.created % 1 * 1000)
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        text = f"{clock}.{millis:03d} {record.levelname:<7} {record.getMessage()}"
        if fields:
            text += f"  {fields}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def resolve_format(log_format: str, stream: IO[str] | None = None) -> str:
    """`json` or `text`: `auto` is text on a terminal, JSON anywhere else."""
    if log_format != "auto":
        return log_format
    stream = stream or sys.stderr
    return "text" if stream.isatty() else "json"


def configure(level: str = "info", log_format: str = "auto", stream: IO[str] | None = None) -> None:
    """Sends every logger's lines to `stream` (stderr) at `level` and above, in `log_format`."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    chosen = resolve_format(log_format, stream)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    # No line names its thread or source line: the records need not look them up (the source
    # line alone walks the stack on every call). The process id stays: JSON lines carry it.
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    wanted = logging.getLevelName(level.upper())
    # Libraries log what they carry at debug (aiosqlite its SQL parameters: message texts), so
    # only Switchboard's own loggers go below INFO.
    root.setLevel(max(wanted, logging.INFO))
    for own in OWN_LOGGERS:
        logging.getLogger(own).setLevel(wanted)
    # Libraries that log a line per request or connection at INFO would flood the log.
    for noisy in ("httpx", "httpcore", "alembic", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, wanted))
