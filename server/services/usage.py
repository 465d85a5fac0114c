"""`switchboard.v1.UsageService`: the workspace's usage records, summed."""

from __future__ import annotations

from datetime import UTC

import grpc
from switchboard.v1 import usage_service_pb2 as pb
from switchboard.v1 import usage_service_pb2_grpc

from server import resources
from server.auth import current_principal
from server.errors import InvalidArgument
from server.paging import PageTokens
from server.store.usage import UsageLedger, UsageSum

_GROUPINGS = {
    pb.USAGE_GROUPING_UNSPECIFIED: "day",
    pb.USAGE_GROUPING_DAY: "day",
    pb.USAGE_GROUPING_KEY: "key",
    pb.USAGE_GROUPING_AGENT: "agent",
    pb.USAGE_GROUPING_SESSION: "session",
}


def _group(row: UsageSum) -> pb.UsageGroup:
    return pb.UsageGroup(
        group=row.group,
        requests=row.requests,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        total_tokens=row.total_tokens,
    )


class UsageService(usage_service_pb2_grpc.UsageServiceServicer):
    """The token usage of the caller's workspace."""

    def __init__(self, ledger: UsageLedger, pages: PageTokens) -> None:
        self._ledger = ledger
        self._pages = pages

    async def SummarizeUsage(
        self, request: pb.SummarizeUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.SummarizeUsageResponse:
        """Token sums of a time range by key, agent, session or day, a page at a time."""
        workspace = current_principal().workspace_id
        start = request.start_time.ToDatetime(UTC) if request.HasField("start_time") else None
        end = request.end_time.ToDatetime(UTC) if request.HasField("end_time") else None
        if start is not None and end is not None and end <= start:
            raise InvalidArgument("end_time", "must be after start_time")
        limit = resources.page_size(request.page_size, default=100)
        groups, totals = await self._ledger.summarize(
            workspace,
            group_by=_GROUPINGS[request.group_by],
            start=start,
            end=end,
            after=await self._pages.read(request, workspace),
            limit=limit + 1,
        )
        page, next_token = await self._pages.page(
            request, workspace, groups, limit, lambda row: row.group
        )
        return pb.SummarizeUsageResponse(
            groups=[_group(row) for row in page], totals=_group(totals), next_page_token=next_token
        )
