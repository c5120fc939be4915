from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from ridehail import accounts, locations
from ridehail.drivers import service
from ridehail.drivers.schemas import (
    AvailabilityIn,
    DriverCreate,
    DriverOut,
    NearbyDriverOut,
    NearbyOut,
)
from ridehail.kernel.auth import Role
from ridehail.kernel.errors import InvalidRequest
from ridehail.kernel.geo import coarsen, haversine_m
from ridehail.web.deps import (
    PrincipalDep,
    ReadSession,
    RuntimeDep,
    require_role,
    require_self_driver,
)

router = APIRouter(prefix="/api/v1", tags=["drivers"])


@router.post("/drivers", status_code=status.HTTP_201_CREATED, response_model=DriverOut)
async def register_driver(body: DriverCreate, request: Request, runtime: RuntimeDep) -> DriverOut:
    """Sign up as a driver with a vehicle. A used email is 409."""
    hasher: accounts.Passwords = request.app.state.passwords
    password_hash = await hasher.hash(body.password)
    vehicle = service.VehicleSpec(**body.vehicle.model_dump())
    async with runtime.db.transaction() as session:
        account = await accounts.register(
            session,
            role=Role.DRIVER,
            name=body.name,
            email=str(body.email),
            password_hash=password_hash,
            phone=body.phone,
        )
        driver = await service.create_profile(
            session,
            driver_id=account.id,
            name=body.name,
            license_number=body.license_number,
            vehicle=vehicle,
        )
    return DriverOut.of(driver)


@router.get("/drivers/me", response_model=DriverOut)
async def me(principal: PrincipalDep, session: ReadSession) -> DriverOut:
    require_role(principal, Role.DRIVER)
    return DriverOut.of(await service.get_driver(session, principal.subject_id))


@router.put("/drivers/{driver_id}/availability", response_model=DriverOut)
async def set_availability(
    driver_id: str, body: AvailabilityIn, principal: PrincipalDep, runtime: RuntimeDep
) -> DriverOut:
    """Go `available` (receive offers) or `offline` (no new offers)."""
    require_self_driver(principal, driver_id)
    availability = service.Availability(body.status)
    async with runtime.db.transaction() as session:
        driver = await service.set_availability(
            session, driver_id=driver_id, availability=availability
        )
    if availability is service.Availability.OFFLINE:
        await runtime.locations.forget(driver_id)
    return DriverOut.of(driver)


@router.get("/drivers/nearby", response_model=NearbyOut)
async def nearby(  # noqa: PLR0917 - FastAPI passes query parameters by name
    principal: PrincipalDep,
    runtime: RuntimeDep,
    session: ReadSession,
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    radius_m: Annotated[float, Query(gt=0, allow_inf_nan=False)] = 2000.0,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> NearbyOut:
    """Available drivers with a fresh location, nearest first. Admins see ids and exact
    positions; riders see positions snapped to a ~100 m grid and no ids."""
    require_role(principal, Role.ADMIN, Role.RIDER)
    settings = runtime.settings
    is_admin = principal.is_admin
    max_radius = settings.nearby_max_radius_m if is_admin else settings.nearby_rider_max_radius_m
    if radius_m > max_radius:
        raise InvalidRequest(f"radius_m may be at most {max_radius:g}")
    if not is_admin:
        limit = min(limit, settings.nearby_rider_max_results)
    found = await locations.nearby(
        runtime.locations,
        latitude=lat,
        longitude=lon,
        radius_m=radius_m,
        limit=limit * 2,
        stale_after_s=settings.location_stale_after_s,
    )
    online = await service.dispatch_profiles(session, [d.driver_id for d in found])
    visible = [d for d in found if d.driver_id in online][:limit]
    if is_admin:
        out = [
            NearbyDriverOut(
                driver_id=d.driver_id,
                latitude=d.latitude,
                longitude=d.longitude,
                distance_m=round(d.distance_m, 1),
            )
            for d in visible
        ]
    else:
        out = []
        for d in visible:
            c_lat, c_lon = coarsen(d.latitude, d.longitude, cell_m=settings.nearby_coarse_cell_m)
            dist = round(haversine_m(lat, lon, c_lat, c_lon), -1)
            out.append(NearbyDriverOut(latitude=c_lat, longitude=c_lon, distance_m=dist))
        out.sort(key=lambda d: d.distance_m)
    return NearbyOut(drivers=out)
