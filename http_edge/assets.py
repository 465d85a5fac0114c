"""The browser files the edge serves as they ship in the package: the chat widget a site embeds
(`/widget.js`) and the operators' playground (`/playground`). No build step: each file is read
once at start-up, with its gzip form and an ETag."""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources

from http_edge.responses import send_error
from http_edge.transcoder import method_not_allowed
from http_edge.types import Receive, Scope, Send

_CONTENT_TYPES = {
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".html": b"text/html; charset=utf-8",
}
# The playground holds an API key: no framing by other sites, no scripts but its own, and
# requests only to this server.
PLAYGROUND_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
# Any site may load the widget; it holds nothing but code.
WIDGET_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"cross-origin-resource-policy", b"cross-origin"),
]


def read_asset(name: str) -> bytes:
    """A file of the `http_edge/static` package data."""
    return resources.files("http_edge").joinpath("static", name).read_bytes()


class Asset:
    """`GET`/`HEAD` of one packaged file, gzipped for clients that accept it, revalidated by
    ETag after `max_age` seconds."""

    def __init__(
        self,
        name: str,
        *,
        max_age: int = 300,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.body = read_asset(name)
        self.gzipped = gzip.compress(self.body, compresslevel=9, mtime=0)
        self._etag = b'"' + hashlib.sha256(self.body).hexdigest()[:32].encode() + b'"'
        self._headers = [
            (b"content-type", _CONTENT_TYPES[name[name.rindex(".") :]]),
            (b"cache-control", f"public, max-age={max_age}".encode()),
            (b"etag", self._etag),
            (b"vary", b"accept-encoding"),
            (b"x-content-type-options", b"nosniff"),
            *(headers or ()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await send_error(scope, send, method_not_allowed(["GET", "HEAD"]))
            return
        request_headers = dict(scope["headers"])
        if self._etag in request_headers.get(b"if-none-match", b"").split(b", "):
            await send({"type": "http.response.start", "status": 304, "headers": self._headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body, headers = self.body, list(self._headers)
        if b"gzip" in request_headers.get(b"accept-encoding", b""):
            body = self.gzipped
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
