"""Dispatch use cases: searches, offers, accept and decline. Never commit.

A search is advanced by whichever dispatcher claims it when it is due; all of its state
(deadline, next check, offers and their expiry) is in the database, so a dispatcher that
dies loses nothing. Who gets the ride is decided by a guarded UPDATE on the ride itself.

Lock order, everywhere: driver, then searches (by ride id), then ride, then offers. Every
write path below takes its locks in that order, so concurrent accepts, declines, expiries,
cancels and a driver going offline queue behind each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail import drivers, rides
from ridehail.contracts import RideRequested
from ridehail.dispatch import repository
from ridehail.dispatch.models import Offer, Search
from ridehail.dispatch.policy import DispatchPolicy
from ridehail.dispatch.schemas import DispatchLog
from ridehail.kernel.errors import Conflict, NotFound

log = structlog.get_logger("ridehail.dispatch")


async def open_search(
    session: AsyncSession, *, ride_id: str, now: datetime, policy: DispatchPolicy
) -> Search | None:
    """Start (or, after a driver gave the ride back, restart) the search for a ride.
    Idempotent: an active search is left as it is."""
    ride = await rides.get_ride(session, ride_id)
    if ride.status != rides.RideStatus.SEARCHING.value:
        return None
    search = await repository.get_search(session, ride_id)
    deadline = now + timedelta(seconds=policy.search_timeout_s)
    if search is None:
        search = Search(
            ride_id=ride_id,
            state="active",
            pickup_latitude=ride.start_latitude,
            pickup_longitude=ride.start_longitude,
            seats=ride.seats,
            deadline_at=deadline,
            next_check_at=now,
            attempts=0,
            created_at=now,
        )
        session.add(search)
    elif search.state != "active":
        search.state = "active"
        search.deadline_at = deadline
        search.next_check_at = now
        search.closed_at = None
        search.outcome = None
    await session.flush()
    return search


async def open_new_searches(
    session: AsyncSession,
    requests: Sequence[RideRequested],
    *,
    now: datetime,
    policy: DispatchPolicy,
) -> None:
    """Open the searches of rides requested in this very transaction: the event says all
    a search needs, and nothing can exist yet, so one INSERT and no reads."""
    deadline = now + timedelta(seconds=policy.search_timeout_s)
    await repository.insert_searches(
        session,
        [
            {
                "ride_id": r.ride_id,
                "state": "active",
                "pickup_latitude": r.pickup_latitude,
                "pickup_longitude": r.pickup_longitude,
                "seats": r.seats,
                "deadline_at": deadline,
                "next_check_at": now,
                "attempts": 0,
                "rounds": 0,
                "created_at": now,
            }
            for r in requests
        ],
    )


async def adopt_orphans(
    session: AsyncSession, *, now: datetime, policy: DispatchPolicy
) -> list[str]:
    """Open searches for rides that have been 'searching' for ``policy.orphan_after_s``
    without an active one: the event that should have started it was lost (dead-lettered,
    trimmed from its stream, or handled while the ride was briefly in another state). A
    backstop; normally it finds nothing. Returns the ride ids adopted."""
    before = now - timedelta(seconds=policy.orphan_after_s)
    ride_ids = await rides.rides_searching_since_before(session, before)
    active = await repository.active_searches(session, ride_ids)
    adopted = [r for r in ride_ids if r not in active]
    for ride_id in adopted:
        await open_search(session, ride_id=ride_id, now=now, policy=policy)
        log.warning("orphan_search_adopted", ride_id=ride_id)
    return adopted


async def close_search(session: AsyncSession, *, ride_id: str, outcome: str, now: datetime) -> None:
    await repository.lock_searches(session, [ride_id])
    await repository.withdraw_offers(session, ride_id=ride_id)
    search = await repository.get_search(session, ride_id)
    if search is not None and search.state == "active":
        search.state = "closed"
        search.closed_at = now
        search.outcome = outcome
        await session.flush()


async def accept(
    session: AsyncSession, *, ride_id: str, driver_id: str, now: datetime
) -> rides.Ride:
    """The driver takes the ride. Their offer must still be open; the ride must still be
    searching (one guarded UPDATE decides between concurrent accepts); a driver with an
    active ride is refused by the database's unique index.

    Concurrent accepts queue on the driver (one driver's accepts) and on the search (one
    ride's accepts) instead of deadlocking on each other's offer rows and index entries."""
    driver = await drivers.lock_driver(session, driver_id)
    await repository.lock_searches(session, [ride_id])
    await rides.lock_ride(session, ride_id)
    if not await repository.respond(
        session, ride_id=ride_id, driver_id=driver_id, status="accepted", now=now
    ):
        await _explain_no_open_offer(session, ride_id=ride_id, driver_id=driver_id)
    snapshot = {"name": driver.name, "vehicle": driver.vehicle()}
    ride = await rides.assign_driver(
        session, ride_id=ride_id, driver_id=driver_id, snapshot=snapshot
    )
    await close_search(session, ride_id=ride_id, outcome="accepted", now=now)
    await repository.withdraw_offers(session, driver_id=driver_id)
    return ride


async def decline(session: AsyncSession, *, ride_id: str, driver_id: str, now: datetime) -> None:
    await drivers.lock_driver(session, driver_id)
    await repository.lock_searches(session, [ride_id])
    if not await repository.respond(
        session, ride_id=ride_id, driver_id=driver_id, status="declined", now=now
    ):
        await _explain_no_open_offer(session, ride_id=ride_id, driver_id=driver_id)
    await repository.wake_searches(session, [ride_id], now)


async def _explain_no_open_offer(session: AsyncSession, *, ride_id: str, driver_id: str) -> None:
    if driver_id in await repository.drivers_offered_ride(session, ride_id):
        raise Conflict("this offer is no longer open (expired, withdrawn or answered)")
    raise NotFound("no offer of this ride for this driver")


async def open_offers(session: AsyncSession, *, driver_id: str, now: datetime) -> list[Offer]:
    return await repository.open_offers_for_driver(session, driver_id, now)


async def expire_offers(session: AsyncSession, *, now: datetime) -> int:
    """Expire overdue offers and wake their searches. Searches another dispatcher is busy
    with are skipped (SKIP LOCKED) and handled on a later tick."""
    due = await repository.rides_with_overdue_offers(session, now)
    if not due:
        return 0
    with_search = await repository.existing_searches(session, due)
    locked = await repository.lock_searches(session, with_search, skip_locked=True)
    ride_ids = (due - with_search) | locked
    expired = await repository.expire_offers(session, ride_ids, now)
    await repository.wake_searches(session, locked, now)
    return expired


async def driver_went_offline(session: AsyncSession, *, driver_id: str, now: datetime) -> None:
    await drivers.lock_driver(session, driver_id)
    offers = await repository.open_offers_for_driver(session, driver_id, now)
    ride_ids = {o.ride_id for o in offers}
    await repository.lock_searches(session, ride_ids)
    await repository.withdraw_offers(session, driver_id=driver_id)
    await repository.wake_searches(session, ride_ids, now)


async def dispatch_log(session: AsyncSession, *, ride_id: str) -> DispatchLog:
    """The ride's search and every candidate its rounds considered, offers with their fate."""
    ride = await rides.get_ride(session, ride_id)
    return DispatchLog.of(
        ride_id=ride.id,
        ride_status=ride.status,
        search=await repository.get_search(session, ride_id),
        considered=await repository.candidates_for_ride(session, ride_id),
        offers=await repository.offers_for_ride(session, ride_id),
    )
