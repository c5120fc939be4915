"""Offers and the driver's answer to them. The paths sit under /rides and /drivers because
that is where clients look for them; the use cases belong to dispatch."""

from __future__ import annotations

from fastapi import APIRouter

from ridehail.dispatch import service
from ridehail.dispatch.schemas import Declined, DispatchLog, OfferList, OfferOut
from ridehail.kernel.auth import Role
from ridehail.kernel.clock import utcnow
from ridehail.rides import RideOut
from ridehail.web.deps import (
    PrincipalDep,
    ReadSession,
    RuntimeDep,
    require_role,
    require_self_driver,
)

router = APIRouter(prefix="/api/v1", tags=["dispatch"])


@router.get("/drivers/{driver_id}/offers", response_model=OfferList)
async def list_offers(driver_id: str, principal: PrincipalDep, session: ReadSession) -> OfferList:
    """The rides currently offered to this driver (open, not expired)."""
    require_self_driver(principal, driver_id)
    offers = await service.open_offers(session, driver_id=driver_id, now=utcnow())
    return OfferList(offers=[OfferOut.of(o) for o in offers])


@router.post("/rides/{ride_id}:accept", response_model=RideOut)
async def accept(ride_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> RideOut:
    """Take the ride. Needs an open offer; of concurrent accepts exactly one wins (409 for
    the rest)."""
    require_role(principal, Role.DRIVER)
    async with runtime.db.transaction() as session:
        ride = await service.accept(
            session, ride_id=ride_id, driver_id=principal.subject_id, now=utcnow()
        )
    return RideOut.of(ride)


@router.post("/rides/{ride_id}:decline", response_model=Declined)
async def decline(ride_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> Declined:
    require_role(principal, Role.DRIVER)
    async with runtime.db.transaction() as session:
        await service.decline(
            session, ride_id=ride_id, driver_id=principal.subject_id, now=utcnow()
        )
    runtime.nudge_dispatch()
    return Declined(ride_id=ride_id)


@router.get("/rides/{ride_id}/dispatch", response_model=DispatchLog)
async def dispatch_log(ride_id: str, principal: PrincipalDep, session: ReadSession) -> DispatchLog:
    """Admins: how the ride was matched - every driver each search round considered, with
    distance, estimated pickup time, score, and what became of them (offered and then
    accepted, declined, expired or withdrawn; skipped and why; passed over and why)."""
    require_role(principal, Role.ADMIN)
    return await service.dispatch_log(session, ride_id=ride_id)
