"""Location ingest: the hottest write path. Token check, validation, one store write; no
database round trip."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ridehail.kernel.auth import Role
from ridehail.kernel.clock import as_utc, utcnow
from ridehail.kernel.errors import PermissionDenied
from ridehail.locations import service
from ridehail.locations.ports import LocationFix
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
    fix = LocationFix(
        driver_id=driver_id,
        latitude=body.latitude,
        longitude=body.longitude,
        recorded_at=as_utc(body.recorded_at) if body.recorded_at else now,
        heading=body.heading,
        speed_mps=body.speed_mps,
        accuracy_m=body.accuracy_m,
    )
    await service.ingest(runtime.locations, fix, now=now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
