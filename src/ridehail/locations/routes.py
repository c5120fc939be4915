"""Location ingest: the hottest write path. Token check, validation, one store write; no
database round trip."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ridehail.kernel.clock import utcnow
from ridehail.locations import service
from ridehail.locations.ports import Recorded
from ridehail.locations.schemas import LocationBatchIn, LocationBatchOut, LocationIn
from ridehail.web.deps import PrincipalDep, RuntimeDep, require_self_driver

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
    require_self_driver(principal, driver_id)
    now = utcnow()
    fix = body.to_fix(driver_id, now=now)
    await service.ingest(
        runtime.locations,
        fix,
        feed=runtime.pubsub,
        now=now,
        max_accuracy_m=runtime.settings.location_max_accuracy_m,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/drivers/{driver_id}/locations", response_model=LocationBatchOut)
async def upload_locations(
    driver_id: str, body: LocationBatchIn, principal: PrincipalDep, runtime: RuntimeDep
) -> LocationBatchOut:
    """Points the app buffered while offline (each with its `recorded_at`), up to 500.
    All are stored or, if one is invalid, none."""
    require_self_driver(principal, driver_id)
    now = utcnow()
    fixes = [point.to_fix(driver_id, now=now) for point in body.locations]
    outcomes = await service.ingest_many(
        runtime.locations,
        fixes,
        feed=runtime.pubsub,
        now=now,
        max_accuracy_m=runtime.settings.location_max_accuracy_m,
    )
    flagged = sum(o in (Recorded.IMPLAUSIBLE, Recorded.IMPRECISE) for o in outcomes)
    return LocationBatchOut(accepted=len(fixes), flagged=flagged)
