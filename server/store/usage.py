"""The usage ledger read back: per-completion usage records summed by key, agent, session or
day, so that every total equals the sum of the records exactly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from server.store.database import Database
from server.store.tables import UsageRecord

GROUPINGS = ("key", "agent", "session", "day")


@dataclass(frozen=True)
class UsageSum:
    """The records of one group (or of a whole range, with an empty group) summed."""

    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsageLedger:
    """The usage records of every workspace, summed."""

    def __init__(self, database: Database) -> None:
        self._database = database

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
        async with self._database.engine.connect() as connection:
            rows = (await connection.execute(page_query)).all()
            total = (await connection.execute(select(*sums).where(*where))).one()
        groups = [_sum(str(row[0] or ""), row[1:]) for row in rows]
        return groups, _sum("", total)

    async def total_tokens(self, workspace_id: str) -> int:
        """All the tokens the workspace has used."""
        async with self._database.session() as db:
            total = await db.scalar(
                select(func.coalesce(func.sum(UsageRecord.total_tokens), 0)).where(
                    col(UsageRecord.workspace_id) == workspace_id
                )
            )
        return int(total or 0)

    def _group_column(self, table: Any, group_by: str) -> Any:
        if group_by == "key":
            return func.coalesce(table.c.key_id, "")
        if group_by == "agent":
            return table.c.agent_id
        if group_by == "session":
            return table.c.session_id
        if self._database.sqlite:
            return func.strftime("%Y-%m-%d", table.c.created_at)
        return func.to_char(func.timezone("UTC", table.c.created_at), "YYYY-MM-DD")


def _sum(group: str, row: Any) -> UsageSum:
    return UsageSum(group, int(row[0]), int(row[1]), int(row[2]), int(row[3]))
