"""Fare estimates before a ride is requested; the surge map for operations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ridehail.kernel.auth import Role
from ridehail.pricing import service
from ridehail.pricing.domain import estimate_fare
from ridehail.pricing.schemas import FareEstimateOut, SurgeCellOut, SurgeMap
from ridehail.web.deps import PrincipalDep, ReadSession, RuntimeDep, require_role

router = APIRouter(prefix="/api/v1", tags=["pricing"])

Lat = Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)]
Lon = Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)]


@router.get("/pricing/estimate", response_model=FareEstimateOut)
async def fare_estimate(
    *,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    session: ReadSession,
    start_latitude: Lat,
    start_longitude: Lon,
    end_latitude: Lat,
    end_longitude: Lon,
    product: Annotated[str, Query(min_length=1, max_length=32)] = "standard",
) -> FareEstimateOut:
    """The itemized fare a ride between two points would be estimated at now, with the
    surge in force at the pickup: the same figure `POST /rides` puts in the ride's
    `fare_estimate` (and locks). Any signed-in caller."""
    del principal  # authentication is the requirement; any role may ask
    settings = runtime.settings
    quote = await service.surge_board(runtime.extras, settings).quote(
        session,
        latitude=start_latitude,
        longitude=start_longitude,
        resolution=settings.surge_resolution,
    )
    fare = estimate_fare(
        service.policy_from_settings(settings, product),
        start=(start_latitude, start_longitude),
        end=(end_latitude, end_longitude),
        surge_multiplier=quote.multiplier,
    )
    return FareEstimateOut(**fare.as_json())


@router.get("/pricing/surge", response_model=SurgeMap)
async def surge_map(principal: PrincipalDep, runtime: RuntimeDep, session: ReadSession) -> SurgeMap:
    """Admin: the cells with demand, supply or surge now, as the last update left them."""
    require_role(principal, Role.ADMIN)
    cells = await service.surge_cells(session)
    return SurgeMap(
        resolution=runtime.settings.surge_resolution,
        window_s=runtime.settings.surge_window_s,
        cells=[SurgeCellOut.model_validate(c) for c in cells],
    )
