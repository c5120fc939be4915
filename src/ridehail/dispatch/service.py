"""Dispatch use cases: searches, offers, accept and decline. Never commit.

A search is advanced by whichever dispatcher claims it when it is due; all of its state
(deadline, next check, offers and their expiry) is in the database, so a dispatcher that
dies loses nothing. Who gets the ride is decided by a guarded UPDATE on the ride itself.

Lock order, everywhere: driver, then searches (by ride id), then ride, then offers. Every
write path below takes its locks in that order, so concurrent accepts, declines, expiries,
cancels and a driver going offline queue behind each other instead of deadlocking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail import drivers, locations, rides
from ridehail.dispatch import repository
from ridehail.dispatch.models import Offer, Search
from ridehail.kernel.errors import Conflict, NotFound
from ridehail.kernel.ids import new_id

log = structlog.get_logger("ridehail.dispatch")


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    radius_m: float = 5_000.0
    candidates: int = 20
    offer_ttl_s: float = 15.0
    search_timeout_s: float = 120.0
    retry_interval_s: float = 2.0
    stale_after_s: float = 30.0


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


async def close_search(session: AsyncSession, *, ride_id: str, outcome: str, now: datetime) -> None:
    await repository.lock_searches(session, [ride_id])
    await repository.withdraw_offers(session, ride_id=ride_id)
    search = await repository.get_search(session, ride_id)
    if search is not None and search.state == "active":
        search.state = "closed"
        search.closed_at = now
        search.outcome = outcome
        await session.flush()


async def _pick_candidate(
    session: AsyncSession,
    search: Search,
    *,
    store: locations.DriverLocationStore,
    now: datetime,
    policy: DispatchPolicy,
) -> locations.NearbyDriver | None:
    """The nearest driver who is online, fresh, idle, not holding another offer and not
    already offered this ride."""
    nearby = await locations.nearby(
        store,
        latitude=search.pickup_latitude,
        longitude=search.pickup_longitude,
        radius_m=policy.radius_m,
        limit=policy.candidates,
        stale_after_s=policy.stale_after_s,
    )
    if not nearby:
        return None
    ids = [n.driver_id for n in nearby]
    available = await drivers.available_driver_ids(session, ids)
    busy = await rides.drivers_with_active_rides(session, ids)
    holding = await repository.drivers_with_pending_offers(session, ids, now)
    tried = await repository.drivers_offered_ride(session, search.ride_id)
    for candidate in nearby:
        d = candidate.driver_id
        if d in available and d not in busy and d not in holding and d not in tried:
            return candidate
    return None


async def make_offer(
    session: AsyncSession,
    *,
    ride: rides.Ride,
    driver_id: str,
    distance_m: float,
    now: datetime,
    ttl_s: float,
) -> Offer:
    offer = Offer(
        id=new_id("ofr"),
        ride_id=ride.id,
        driver_id=driver_id,
        status=repository.PENDING,
        distance_to_pickup_m=round(distance_m, 1),
        pickup={"latitude": ride.start_latitude, "longitude": ride.start_longitude},
        dropoff={"latitude": ride.end_latitude, "longitude": ride.end_longitude},
        fare_estimate=ride.fare_estimate,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    session.add(offer)
    await session.flush()
    return offer


async def advance(
    session: AsyncSession,
    search: Search,
    *,
    store: locations.DriverLocationStore,
    now: datetime,
    policy: DispatchPolicy,
) -> tuple[str, Offer | None]:
    """One step of a due search: what happened (for logs and metrics), and the offer made,
    if one was."""
    ride = await rides.get_ride(session, search.ride_id)
    if ride.status != rides.RideStatus.SEARCHING.value:
        await close_search(session, ride_id=ride.id, outcome=ride.status, now=now)
        return "closed", None
    pending = [
        o for o in await repository.pending_offers_for_ride(session, ride.id) if o.expires_at > now
    ]
    if pending:
        search.next_check_at = min(o.expires_at for o in pending)
        return "waiting", None
    candidate = await _pick_candidate(session, search, store=store, now=now, policy=policy)
    if candidate is not None:
        offer = await make_offer(
            session,
            ride=ride,
            driver_id=candidate.driver_id,
            distance_m=candidate.distance_m,
            now=now,
            ttl_s=policy.offer_ttl_s,
        )
        search.attempts += 1
        search.next_check_at = offer.expires_at
        log.info(
            "offer_made",
            ride_id=ride.id,
            driver_id=candidate.driver_id,
            distance_m=offer.distance_to_pickup_m,
        )
        return "offered", offer
    if now >= search.deadline_at:
        await rides.give_up_search(session, ride_id=ride.id)
        await close_search(session, ride_id=ride.id, outcome="no_drivers_available", now=now)
        log.info("search_gave_up", ride_id=ride.id, attempts=search.attempts)
        return "gave_up", None
    search.next_check_at = min(search.deadline_at, now + timedelta(seconds=policy.retry_interval_s))
    return "retry", None


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
