"""Page tokens (AIP-158): opaque to clients, signed, and bound to the query that issued them.

A token carries the cursor of the last row of its page and an HMAC over the cursor, the
workspace and the request without its `page_token` and `page_size`. A token that was altered,
forged, or sent with other filters or by another workspace is refused as INVALID_ARGUMENT."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import TypeVar

from google.protobuf.message import Message

from server.errors import InvalidArgument
from server.store.database import Database

Row = TypeVar("Row")

_MAC_BYTES = 16
_MAX_TOKEN_CHARS = 512
_NOT_OURS = "is not a page token this server issued for this query"


class PageTokens:
    """Issues and checks the page tokens of the List RPCs, signed with a server secret."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._key: bytes | None = None

    async def read(self, request: Message, workspace_id: str) -> str | None:
        """The cursor of `request.page_token`, or None for the first page."""
        token: str = request.page_token  # type: ignore[attr-defined]
        if not token:
            return None
        payload, dot, signature = token.partition(".")
        if not dot or len(token) > _MAX_TOKEN_CHARS:
            raise InvalidArgument("page_token", _NOT_OURS)
        try:
            cursor = _unpad(payload).decode()
            mac = _unpad(signature)
        except (binascii.Error, ValueError):
            raise InvalidArgument("page_token", _NOT_OURS) from None
        expected = await self._sign(request, workspace_id, cursor)
        if not hmac.compare_digest(mac, expected):
            raise InvalidArgument("page_token", _NOT_OURS)
        return cursor

    async def read_number(self, request: Message, workspace_id: str) -> int | None:
        """The cursor of a token that carries a number (a position or a version)."""
        cursor = await self.read(request, workspace_id)
        if cursor is None:
            return None
        if not cursor.isdigit():
            raise InvalidArgument("page_token", _NOT_OURS)
        return int(cursor)

    async def page(
        self,
        request: Message,
        workspace_id: str,
        rows: Sequence[Row],
        limit: int,
        cursor: Callable[[Row], str | int],
    ) -> tuple[Sequence[Row], str]:
        """Rows fetched with `limit + 1` as the page and the next page's token (empty on the
        last page)."""
        if len(rows) <= limit:
            return rows, ""
        page = rows[:limit]
        last = str(cursor(page[-1]))
        mac = await self._sign(request, workspace_id, last)
        return page, f"{_pad_free(last.encode())}.{_pad_free(mac)}"

    async def _sign(self, request: Message, workspace_id: str, cursor: str) -> bytes:
        if self._key is None:
            self._key = await self._database.server_secret("page_tokens")
        query = type(request)()
        query.CopyFrom(request)
        query.ClearField("page_token")
        if "page_size" in query.DESCRIPTOR.fields_by_name:
            query.ClearField("page_size")
        signed = b"\0".join(
            (
                workspace_id.encode(),
                query.DESCRIPTOR.full_name.encode(),
                query.SerializeToString(deterministic=True),
                cursor.encode(),
            )
        )
        return hmac.new(self._key, signed, hashlib.sha256).digest()[:_MAC_BYTES]


def _pad_free(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unpad(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
