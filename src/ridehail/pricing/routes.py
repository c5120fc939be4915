"""Fare estimates before a ride is requested."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ridehail.pricing import policy_from_settings
from ridehail.pricing.domain import estimate_fare
from ridehail.pricing.schemas import FareEstimateOut
from ridehail.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(prefix="/api/v1", tags=["pricing"])

Lat = Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)]
Lon = Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)]


@router.get("/pricing/estimate", response_model=FareEstimateOut)
async def fare_estimate(
    *,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    start_latitude: Lat,
    start_longitude: Lon,
    end_latitude: Lat,
    end_longitude: Lon,
) -> FareEstimateOut:
    """The itemized fare a ride between two points would be estimated at now: the same
    figure `POST /rides` puts in the ride's `fare_estimate`. Any signed-in caller."""
    del principal  # authentication is the requirement; any role may ask
    fare = estimate_fare(
        policy_from_settings(runtime.settings),
        start=(start_latitude, start_longitude),
        end=(end_latitude, end_longitude),
    )
    return FareEstimateOut(**fare.as_json())
