"""The log context of one request: its id, route, and the workspace, agent and session it
touched, carried in a context variable so that every log line written for it names them.

The edge begins a context per HTTP request and the core one per gRPC call. A call through the
in-process channel runs in tasks that inherit the edge's context, so the core fills in the same
object and the edge's access line names the workspace, agent and session too."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RequestContext:
    """What the log lines of one request say about it; None is not known (yet)."""

    request_id: str | None = None
    door: str | None = None
    route: str | None = None
    workspace: str | None = None
    agent: str | None = None
    session: str | None = None


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "switchboard_request", default=None
)


def begin(request_id: str | None, door: str | None = None) -> contextvars.Token[Any]:
    """Starts the context of a request in the running task; `end` it with the token."""
    return _current.set(RequestContext(request_id=request_id, door=door))


def end(token: contextvars.Token[Any]) -> None:
    _current.reset(token)


def current() -> RequestContext | None:
    return _current.get()


def bind(
    *,
    workspace: str | None = None,
    agent: str | None = None,
    session: str | None = None,
    route: str | None = None,
) -> None:
    """Records what the request touched, when a request context is running."""
    context = _current.get()
    if context is None:
        return
    if workspace is not None:
        context.workspace = workspace
    if agent is not None:
        context.agent = agent
    if session is not None:
        context.session = session
    if route is not None:
        context.route = route
