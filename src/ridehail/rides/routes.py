from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, status

from ridehail import pricing
from ridehail.kernel.auth import Role
from ridehail.rides import service
from ridehail.rides.domain import RideStatus
from ridehail.rides.schemas import ReceiptOut, RideCancel, RideCreate, RideOut, RidePage
from ridehail.web.deps import PrincipalDep, ReadSession, RuntimeDep, require_role
from ridehail.web.paging import PageSize, PageToken, decode_page_token, encode_page_token

router = APIRouter(prefix="/api/v1", tags=["rides"])


@router.post("/rides", status_code=status.HTTP_202_ACCEPTED, response_model=RideOut)
async def request_ride(body: RideCreate, principal: PrincipalDep, runtime: RuntimeDep) -> RideOut:
    """Request a ride. It starts `searching`; the dispatcher offers it to nearby drivers."""
    require_role(principal, Role.RIDER)
    trip = service.Trip(
        start=(body.start_latitude, body.start_longitude),
        end=(body.end_latitude, body.end_longitude),
        seats=body.seats,
    )
    settings = runtime.settings
    policy = pricing.policy_from_settings(settings, body.product)
    board = pricing.surge_board(runtime.extras, settings)
    async with runtime.db.transaction() as session:
        surge = await board.quote(
            session,
            latitude=body.start_latitude,
            longitude=body.start_longitude,
            resolution=settings.surge_resolution,
        )
        ride = await service.request_ride(
            session,
            rider_id=principal.subject_id,
            trip=trip,
            policy=policy,
            surge=surge,
            payment_method_id=body.payment_method_id,
        )
    return RideOut.of(ride)


@router.get("/rides", response_model=RidePage)
async def list_rides(
    principal: PrincipalDep,
    session: ReadSession,
    status_filter: Annotated[RideStatus | None, Query(alias="status")] = None,
    page_size: PageSize = 20,
    page_token: PageToken = None,
) -> RidePage:
    """The caller's rides (all rides for an admin), newest first."""
    before = decode_page_token(page_token, "ride_")
    rides = await service.list_rides_for(
        session, principal=principal, status=status_filter, before_id=before, limit=page_size + 1
    )
    more = len(rides) > page_size
    rides = rides[:page_size]
    token = encode_page_token(rides[-1].id) if more and rides else None
    paid = await service.payment_views(session, rides)
    return RidePage(rides=[RideOut.of(r, paid.get(r.id)) for r in rides], next_page_token=token)


@router.get("/rides/{ride_id}", response_model=RideOut)
async def get_ride(ride_id: str, principal: PrincipalDep, session: ReadSession) -> RideOut:
    ride = await service.get_ride_for(session, principal=principal, ride_id=ride_id)
    paid = await service.payment_views(session, [ride])
    return RideOut.of(ride, paid.get(ride.id))


@router.get("/rides/{ride_id}/receipt", response_model=ReceiptOut)
async def get_receipt(ride_id: str, principal: PrincipalDep, session: ReadSession) -> ReceiptOut:
    """The receipt of a completed ride (or of one cancelled with a fee): its rider, its
    driver or an admin; 409 while there is nothing to pay."""
    ride = await service.receipt_ride(session, principal=principal, ride_id=ride_id)
    payment = await service.receipt_payment(session, ride)
    return ReceiptOut.of(ride, payment=payment)


@router.post("/rides/{ride_id}:arrive", response_model=RideOut)
async def arrive(ride_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> RideOut:
    driver_id = service.ensure_driver(principal)
    async with runtime.db.transaction() as session:
        ride = await service.arrive(session, ride_id=ride_id, driver_id=driver_id)
    return RideOut.of(ride)


@router.post("/rides/{ride_id}:start", response_model=RideOut)
async def start(ride_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> RideOut:
    driver_id = service.ensure_driver(principal)
    async with runtime.db.transaction() as session:
        ride = await service.start(
            session, ride_id=ride_id, driver_id=driver_id, store=runtime.locations
        )
    return RideOut.of(ride)


@router.post("/rides/{ride_id}:complete", response_model=RideOut)
async def complete(ride_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> RideOut:
    """Finish the trip; the fare is computed from the distance actually driven."""
    driver_id = service.ensure_driver(principal)
    prices = partial(pricing.policy_from_settings, runtime.settings)
    async with runtime.db.transaction() as session:
        ride = await service.complete(
            session, ride_id=ride_id, driver_id=driver_id, store=runtime.locations, prices=prices
        )
    return RideOut.of(ride)


@router.post("/rides/{ride_id}:cancel", response_model=RideOut)
async def cancel(
    ride_id: str, principal: PrincipalDep, runtime: RuntimeDep, body: RideCancel | None = None
) -> RideOut:
    """Rider: the ride is cancelled (with the cancellation fee past the grace period after
    a driver accepted). Driver before pickup: the ride searches again; a driver who waited
    at the pickup past the limit may give the reason "rider_no_show" instead: the ride is
    cancelled with the no-show fee (409 before the limit)."""
    reason = body.reason if body else None
    prices = partial(pricing.policy_from_settings, runtime.settings)
    async with runtime.db.transaction() as session:
        ride = await service.cancel(
            session, ride_id=ride_id, principal=principal, reason=reason, prices=prices
        )
    return RideOut.of(ride)
