"""Location ingest: the hottest write path. Token check, validation, one store write; no
database round trip."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ridehail.kernel.auth import Role
from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import PermissionDenied
from ridehail.locations import service
from ridehail.locations.schemas import LocationIn
from ridehail.web.deps import PrincipalDep, RuntimeDep, require_role

router = APIRouter(prefix="/api/v1", tags=["locations"])


@router.put(
    "/drivers/{driver_id}/location",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
async def update_location(
    driver_id: str, body: LocationIn, principal: PrincipalDep, runtime: RuntimeDep
) -> Response:
    """Report the driver's current position (every few seconds while online)."""
    require_role(principal, Role.DRIVER)
    if principal.subject_id != driver_id:
        raise PermissionDenied("a driver may report only their own location")
    now = utcnow()
    fix = body.to_fix(driver_id, now=now)
    await service.ingest(runtime.locations, fix, feed=runtime.pubsub, now=now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
