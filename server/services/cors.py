"""`switchboard.v1.CorsService`: whether the edge may grant a browser's CORS preflight."""

from __future__ import annotations

import logging

import grpc
from switchboard.v1 import cors_service_pb2, cors_service_pb2_grpc

from server.auth import ACCESS_BY_METHOD
from server.store.origins import ListedOrigins

log = logging.getLogger("switchboard")

# Longer than any origin a browser sends (scheme, host of at most 253 characters, port).
_MAX_ORIGIN_CHARS = 300


class CorsService(cors_service_pb2_grpc.CorsServiceServicer):
    """Keyless, so it answers only yes or no, and never fails on what it is sent."""

    def __init__(self, origins: ListedOrigins) -> None:
        self._origins = origins

    async def CheckPreflight(
        self, request: cors_service_pb2.CheckPreflightRequest, context: grpc.aio.ServicerContext
    ) -> cors_service_pb2.CheckPreflightResponse:
        """Whether to grant it: a route publishable keys may call, from an origin one lists."""
        access = ACCESS_BY_METHOD.get(request.method)
        if access is None or not access.publishable:
            return cors_service_pb2.CheckPreflightResponse(allowed=False)
        if not 0 < len(request.origin) <= _MAX_ORIGIN_CHARS:
            return cors_service_pb2.CheckPreflightResponse(allowed=False)
        try:
            allowed = await self._origins.is_listed(request.origin)
        except Exception:
            # No key guards this service, so its failures stay in the log: it answers no.
            log.exception("could not read the origins of publishable keys")
            allowed = False
        return cors_service_pb2.CheckPreflightResponse(allowed=allowed)
