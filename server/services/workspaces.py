"""`switchboard.v1.WorkspaceService`: the caller's own workspace."""

from __future__ import annotations

import grpc
from switchboard.v1 import workspace_service_pb2 as pb
from switchboard.v1 import workspace_service_pb2_grpc

from server import resources
from server.auth import current_principal
from server.errors import InvalidArgument, clip
from server.store.tables import Workspace
from server.store.workspaces import Workspaces

_UPDATABLE = ("display_name",)


def _to_proto(row: Workspace) -> pb.Workspace:
    workspace = pb.Workspace(
        name=f"workspaces/{row.id}",
        id=row.id,
        display_name=row.name,
        create_time=resources.timestamp(row.created_at),
    )
    if row.token_balance is not None:
        workspace.token_balance = row.token_balance
    return workspace


class WorkspaceService(workspace_service_pb2_grpc.WorkspaceServiceServicer):
    """The caller's own workspace."""

    def __init__(self, workspaces: Workspaces) -> None:
        self._workspaces = workspaces

    async def GetWorkspace(
        self, request: pb.GetWorkspaceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Workspace:
        """The caller's workspace, with its token balance when it has one."""
        return _to_proto(await self._workspaces.get(current_principal().workspace_id))

    async def UpdateWorkspace(
        self, request: pb.UpdateWorkspaceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Workspace:
        """Renames the caller's workspace; the token balance is the operator's to set."""
        paths = list(request.update_mask.paths) or ["display_name"]
        for path in paths:
            if path == "token_balance":
                raise InvalidArgument(
                    "update_mask",
                    "the token balance is set by the operator "
                    "(`switchboard workspaces set-balance`), not through the API",
                )
            if path not in _UPDATABLE:
                raise InvalidArgument("update_mask", f"{clip(path)!r} cannot be updated")
        if not request.workspace.display_name.strip():
            raise InvalidArgument("workspace.display_name", "must not be empty")
        row = await self._workspaces.rename(
            current_principal().workspace_id, request.workspace.display_name
        )
        return _to_proto(row)
