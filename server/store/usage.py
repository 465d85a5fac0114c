"""The usage ledger read back: per-completion usage records summed by key, agent, session or
day, so that every total equals the sum of the records exactly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from server.store.database import is_sqlite
from server.store.repository import Repository
from server.store.tables import UsageRecord

GROUPINGS = ("key", "agent", "session", "day")


@dataclass(frozen=True)
class UsageSum:
    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsageLedger:
    def __init__(self, repository: Repository) -> None:
        self._repository = repository
        self._sqlite = is_sqlite(str(repository.engine.url))

    async def summarize(
        self,
        workspace_id: str,
        *,
        group_by: str,
        start: datetime | None,
        end: datetime | None,
        after: str | None,
        limit: int,
    ) -> tuple[list[UsageSum], UsageSum]:
        """A page of groups (ordered by group, after `after`) and the totals of the range."""
        table = UsageRecord.__table__  # type: ignore[attr-defined]
        group = self._group_column(table, group_by)
        where = [table.c.workspace_id == workspace_id]
        if start is not None:
            where.append(table.c.created_at >= start)
        if end is not None:
            where.append(table.c.created_at < end)
        sums = (
            func.count(),
            func.coalesce(func.sum(table.c.prompt_tokens), 0),
            func.coalesce(func.sum(table.c.completion_tokens), 0),
            func.coalesce(func.sum(table.c.total_tokens), 0),
        )
        page_query = select(group.label("grp"), *sums).where(*where).group_by(group)
        if after is not None:
            page_query = page_query.having(group > after)
        page_query = page_query.order_by(group).limit(limit)
        async with self._repository.engine.connect() as connection:
            rows = (await connection.execute(page_query)).all()
            total = (await connection.execute(select(*sums).where(*where))).one()
        groups = [_sum(str(row[0] or ""), row[1:]) for row in rows]
        return groups, _sum("", total)

    def _group_column(self, table: Any, group_by: str) -> Any:
        if group_by == "key":
            return func.coalesce(table.c.key_id, "")
        if group_by == "agent":
            return table.c.agent_id
        if group_by == "session":
            return table.c.session_id
        if self._sqlite:
            return func.strftime("%Y-%m-%d", table.c.created_at)
        return func.to_char(func.timezone("UTC", table.c.created_at), "YYYY-MM-DD")


def _sum(group: str, row: Any) -> UsageSum:
    return UsageSum(group, int(row[0]), int(row[1]), int(row[2]), int(row[3]))
