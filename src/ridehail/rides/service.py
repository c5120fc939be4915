"""Ride use cases. They never commit; every status change is a guarded UPDATE plus an
outbox event in the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ridehail import locations, payments, pricing
from ridehail.contracts import RideCancelled, RideCompleted, RideRequested, RideStatusChanged
from ridehail.db import add_event
from ridehail.kernel.auth import Principal, Role
from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import Conflict, NotFound, PermissionDenied
from ridehail.kernel.ids import new_id
from ridehail.rides import repository
from ridehail.rides.domain import (
    BEFORE_PICKUP,
    NO_SHOW_REASON,
    RideStatus,
    ensure_transition,
    status_after_cancel,
)
from ridehail.rides.models import Ride

S = RideStatus


@dataclass(frozen=True, slots=True)
class Trip:
    start: tuple[float, float]
    end: tuple[float, float]
    seats: int = 1


async def request_ride(
    session: AsyncSession,
    *,
    rider_id: str,
    trip: Trip,
    policy: pricing.FarePolicy,
    surge: pricing.SurgeQuote | None = None,
    payment_method_id: str | None = None,
) -> Ride:
    """A new searching ride, its estimate priced at the surge in force at the pickup
    (``surge``), which is locked into the ride: the final fare uses the same multiplier.
    It is paid with ``payment_method_id`` (one of the rider's methods, else 422), else the
    rider's default method, else cash (None)."""
    method_id = await payments.choose_payment_method(
        session, rider_id=rider_id, payment_method_id=payment_method_id
    )
    multiplier = surge.multiplier if surge is not None else pricing.parse_multiplier(None)
    estimate = pricing.estimate_fare(
        policy, start=trip.start, end=trip.end, surge_multiplier=multiplier
    )
    now = utcnow()
    ride = Ride(
        id=new_id("ride"),
        rider_id=rider_id,
        status=S.SEARCHING.value,
        start_latitude=trip.start[0],
        start_longitude=trip.start[1],
        end_latitude=trip.end[0],
        end_longitude=trip.end[1],
        seats=trip.seats,
        product=policy.product,
        fare_estimate=estimate.as_json(),
        surge_multiplier=pricing.format_multiplier(multiplier),
        pickup_cell=surge.cell if surge is not None else None,
        payment_method_id=method_id,
        created_at=now,
        updated_at=now,
    )
    await repository.add(session, ride)
    add_event(
        session,
        RideRequested(
            ride_id=ride.id,
            rider_id=rider_id,
            pickup_latitude=trip.start[0],
            pickup_longitude=trip.start[1],
            seats=trip.seats,
        ),
    )
    return ride


def can_view(principal: Principal, ride: Ride) -> bool:
    if principal.is_admin:
        return True
    if principal.role is Role.RIDER:
        return ride.rider_id == principal.subject_id
    return ride.driver_id == principal.subject_id


async def get_ride(session: AsyncSession, ride_id: str) -> Ride:
    ride = await repository.get(session, ride_id)
    if ride is None:
        raise NotFound("ride not found")
    return ride


async def get_rides(session: AsyncSession, ride_ids: Collection[str]) -> dict[str, Ride]:
    """The rides of ``ride_ids`` that exist, by id."""
    return await repository.get_many(session, ride_ids)


async def rides_searching_since_before(
    session: AsyncSession, before: datetime, *, limit: int = 500
) -> list[str]:
    """Ids of rides that have been 'searching' since before ``before``, longest first."""
    return await repository.searching_since_before(session, before, limit)


async def lock_ride(session: AsyncSession, ride_id: str) -> Ride:
    """Read the ride and hold its row lock until the transaction ends (PostgreSQL; SQLite's
    writer lock already serialises). For lock ordering, not as the guard: the guard is
    still the conditional UPDATE."""
    ride = await repository.get_for_update(session, ride_id)
    if ride is None:
        raise NotFound("ride not found")
    return ride


async def get_ride_for(session: AsyncSession, *, principal: Principal, ride_id: str) -> Ride:
    """The ride if the caller may see it. Someone else's ride is 'not found', not
    'forbidden': its existence is not the caller's business."""
    ride = await repository.get(session, ride_id)
    if ride is None or not can_view(principal, ride):
        raise NotFound("ride not found")
    return ride


async def list_rides_for(
    session: AsyncSession,
    *,
    principal: Principal,
    status: RideStatus | None,
    before_id: str | None,
    limit: int,
) -> list[Ride]:
    rider_id = principal.subject_id if principal.role is Role.RIDER else None
    driver_id = principal.subject_id if principal.role is Role.DRIVER else None
    return await repository.list_rides(
        session,
        rider_id=rider_id,
        driver_id=driver_id,
        status=status,
        before_id=before_id,
        limit=limit,
    )


async def _move(
    session: AsyncSession,
    ride: Ride,
    target: RideStatus,
    *,
    values: dict[str, Any] | None = None,
    driver_id: str | None = None,
    reason: str | None = None,
) -> Ride:
    """Guarded transition of ``ride`` (as read) to ``target``, with its event."""
    current = RideStatus(ride.status)
    ensure_transition(current, target)
    now = utcnow()
    changes = {"status": target.value, "updated_at": now, **(values or {})}
    won = await repository.transition(
        session, ride_id=ride.id, expected=current, values=changes, driver_id=driver_id
    )
    if not won:
        raise Conflict("the ride changed meanwhile; reload it and try again")
    add_event(
        session,
        RideStatusChanged(
            ride_id=ride.id,
            rider_id=ride.rider_id,
            driver_id=changes.get("driver_id", ride.driver_id) or ride.driver_id,
            previous_status=current.value,
            status=target.value,
            reason=reason,
        ),
    )
    return await get_ride(session, ride.id)


async def assign_driver(
    session: AsyncSession, *, ride_id: str, driver_id: str, snapshot: dict[str, Any]
) -> Ride:
    """Give a searching ride to a driver. Of concurrent calls for one ride exactly one wins;
    a driver who already has an active ride is refused by a unique index."""
    ride = await get_ride(session, ride_id)
    if ride.status != S.SEARCHING.value:
        raise Conflict(f"the ride is {ride.status}, no longer searching")
    return await _move(
        session,
        ride,
        S.DRIVER_EN_ROUTE,
        values={"driver_id": driver_id, "driver_snapshot": snapshot, "accepted_at": utcnow()},
    )


async def _own_ride_as_driver(session: AsyncSession, ride_id: str, driver_id: str) -> Ride:
    ride = await lock_ride(session, ride_id)
    if ride.driver_id != driver_id:
        raise NotFound("ride not found")
    return ride


async def arrive(session: AsyncSession, *, ride_id: str, driver_id: str) -> Ride:
    ride = await _own_ride_as_driver(session, ride_id, driver_id)
    return await _move(
        session, ride, S.DRIVER_ARRIVED, values={"arrived_at": utcnow()}, driver_id=driver_id
    )


async def start(
    session: AsyncSession, *, ride_id: str, driver_id: str, store: locations.DriverLocationStore
) -> Ride:
    ride = await _own_ride_as_driver(session, ride_id, driver_id)
    moved = await _move(
        session, ride, S.IN_PROGRESS, values={"started_at": utcnow()}, driver_id=driver_id
    )
    await store.begin_trace(driver_id)
    # The trip starts where the driver is: seed the trace with their latest fix.
    here = await store.current(driver_id)
    if here is not None:
        await store.record(here)
    return moved


#: A receipt's route keeps at most this many points of the trip's trace.
ROUTE_MAX_POINTS = 200


def _route(trace: Collection[locations.LocationFix], since: datetime) -> list[list[float]]:
    """The trip's points as [latitude, longitude]: from where the driver was at the start
    (the last fix at or before it) on, evenly thinned to ROUTE_MAX_POINTS."""
    ordered = sorted(trace, key=lambda p: p.recorded_at)
    before = [p for p in ordered if p.recorded_at <= since]
    kept = before[-1:] + [p for p in ordered if p.recorded_at > since]
    if len(kept) > ROUTE_MAX_POINTS:
        last = len(kept) - 1
        picks = sorted({round(i * last / (ROUTE_MAX_POINTS - 1)) for i in range(ROUTE_MAX_POINTS)})
        kept = [kept[i] for i in picks]
    return [[p.latitude, p.longitude] for p in kept]


def _waited_s(ride: Ride, until: datetime) -> float:
    """Seconds the driver has waited at the pickup (0 before arriving)."""
    if ride.arrived_at is None:
        return 0.0
    return max(0.0, (until - ride.arrived_at).total_seconds())


async def complete(
    session: AsyncSession,
    *,
    ride_id: str,
    driver_id: str,
    store: locations.DriverLocationStore,
    prices: Callable[[str], pricing.FarePolicy],
) -> Ride:
    """Finish the trip and price it from the distance the driver's locations actually
    covered (jitter within the reported accuracy ignored), at the surge locked at request,
    with the waiting at pickup beyond the free period. With fewer than two recorded points
    the estimated route distance is charged instead. The fare records its difference from
    the estimate; RideCompleted goes to the outbox in this transaction."""
    ride = await _own_ride_as_driver(session, ride_id, driver_id)
    ensure_transition(RideStatus(ride.status), S.COMPLETED)
    policy = prices(ride.product)
    now = utcnow()
    trace = await store.end_trace(driver_id)
    started_at: datetime = ride.started_at or now
    distance = locations.trace_distance_m(trace, since=started_at)
    if distance is None:
        distance, _ = pricing.estimate_route(
            policy,
            start=(ride.start_latitude, ride.start_longitude),
            end=(ride.end_latitude, ride.end_longitude),
        )
    duration = max(0.0, (now - started_at).total_seconds())
    fare = pricing.compute_fare(
        policy,
        distance_m=distance,
        duration_s=duration,
        surge_multiplier=pricing.parse_multiplier(ride.surge_multiplier),
        waiting_s=_waited_s(ride, started_at),
    ).as_json()
    fare["estimate_amount"] = ride.fare_estimate["amount"]
    fare["estimate_difference"] = pricing.estimate_difference(fare, ride.fare_estimate)
    moved = await _move(
        session,
        ride,
        S.COMPLETED,
        driver_id=driver_id,
        values={
            "completed_at": now,
            "fare": fare,
            "distance_m": round(distance, 1),
            "duration_s": round(duration, 1),
            "route_points": _route(trace, started_at),
        },
    )
    add_event(
        session,
        RideCompleted(
            ride_id=ride.id,
            rider_id=ride.rider_id,
            driver_id=driver_id,
            amount=fare["amount"],
            currency=fare["currency"],
            fare=fare,
            payment_method_id=ride.payment_method_id,
        ),
    )
    return moved


def _cancel_fee(
    ride: Ride, principal: Principal, *, no_show: bool, policy: pricing.FarePolicy, now: datetime
) -> pricing.Fee | None:
    """The fee a cancel that ends the ride costs the rider: the no-show fee for a driver's
    no-show report (refused with 409 before the wait limit); the cancellation fee when the
    rider cancels past the grace period after a driver accepted, while that driver is on
    the way or waiting. Nothing otherwise (admins, searching rides, trips under way)."""
    if no_show:
        waited = _waited_s(ride, now)
        if not pricing.no_show_due(policy, waited_s=waited):
            raise Conflict(
                f"a no-show can be reported after waiting {policy.no_show_wait_s:g} s at "
                f"the pickup; waited {waited:.0f} s so far"
            )
        return pricing.no_show_fee(policy)
    if (
        principal.role is Role.RIDER
        and RideStatus(ride.status) in BEFORE_PICKUP
        and ride.accepted_at is not None
    ):
        since = (now - ride.accepted_at).total_seconds()
        return pricing.rider_cancellation_fee(policy, since_accepted_s=since)
    return None


async def cancel(
    session: AsyncSession,
    *,
    ride_id: str,
    principal: Principal,
    reason: str | None,
    prices: Callable[[str], pricing.FarePolicy],
) -> Ride:
    """Rider or admin: the ride ends. Driver before pickup: the ride goes back to the search
    (without this driver), except a no-show report (reason "rider_no_show", only at the
    pickup after the wait limit), which ends it; driver after pickup: the ride ends.

    A cancel that ends the ride writes RideCancelled with the fee due, if any (see
    :func:`_cancel_fee`); the fee is also the ride's ``fare`` (itemized like a fare)."""
    # Decide from the status as it is once we hold the row: a cancel racing an accept
    # then cancels the assigned ride instead of failing on a status it read too early.
    ride = await lock_ride(session, ride_id)
    if not can_view(principal, ride):
        raise NotFound("ride not found")
    current = RideStatus(ride.status)
    no_show = principal.role is Role.DRIVER and reason == NO_SHOW_REASON
    target = status_after_cancel(current, principal.role, no_show=no_show)
    now = utcnow()
    if target is S.SEARCHING:
        values: dict[str, Any] = {
            "driver_id": None,
            "driver_snapshot": None,
            "accepted_at": None,
            "arrived_at": None,
        }
        return await _move(
            session,
            ride,
            target,
            values=values,
            driver_id=ride.driver_id,
            reason=reason or "driver_cancelled",
        )
    policy = prices(ride.product)
    fee = _cancel_fee(ride, principal, no_show=no_show, policy=policy, now=now)
    values = {"cancelled_at": now, "cancel_reason": reason, "cancelled_by": principal.role.value}
    if fee is not None:
        values["fare"] = fee.as_json()
    moved = await _move(session, ride, target, values=values, reason=reason)
    add_event(
        session,
        RideCancelled(
            ride_id=ride.id,
            rider_id=ride.rider_id,
            driver_id=ride.driver_id,
            cancelled_by=principal.role.value,
            reason=reason,
            fee_kind=fee.kind if fee is not None else None,
            fee_amount=fee.amount.as_json()["amount"] if fee is not None else "0.00",
            currency=policy.currency,
            payment_method_id=ride.payment_method_id,
        ),
    )
    return moved


async def receipt_ride(session: AsyncSession, *, principal: Principal, ride_id: str) -> Ride:
    """The ride a receipt is for: one the caller may see (else 404) that ended with money
    due, i.e. completed or cancelled with a fee (else 409)."""
    ride = await get_ride_for(session, principal=principal, ride_id=ride_id)
    ended_with_fee = ride.status == S.CANCELLED.value and ride.fare is not None
    if ride.status != S.COMPLETED.value and not ended_with_fee:
        raise Conflict(
            f"the ride is {ride.status}: a receipt exists once it is completed "
            "(or cancelled with a fee)"
        )
    return ride


async def receipt_payment(session: AsyncSession, ride: Ride) -> payments.PaymentOut | None:
    """The payment a receipt shows: the one place the payments domain plugs in (through
    its face). None while no payment is known."""
    return (await payments.payment_views(session, [ride.id])).get(ride.id)


async def payment_views(
    session: AsyncSession, rides: Collection[Ride]
) -> dict[str, payments.PaymentOut]:
    """The payment of each of ``rides`` that has one, by ride id (one query for a page)."""
    return await payments.payment_views(session, [r.id for r in rides])


async def give_up_search(session: AsyncSession, *, ride_id: str) -> Ride | None:
    """The dispatcher found nobody in time. A no-op (None) if the ride left 'searching'."""
    ride = await get_ride(session, ride_id)
    if ride.status != S.SEARCHING.value:
        return None
    try:
        return await _move(session, ride, S.NO_DRIVERS_AVAILABLE, reason="search_timeout")
    except Conflict:
        return None


async def pickup_demand(session: AsyncSession, since: datetime) -> dict[str, int]:
    """Surge demand: rides requested since ``since`` by pickup cell (H3, hex)."""
    return await repository.pickup_demand(session, since)


async def drivers_with_active_rides(session: AsyncSession, driver_ids: Collection[str]) -> set[str]:
    return await repository.drivers_with_active_rides(session, driver_ids)


def ensure_driver(principal: Principal) -> str:
    if principal.role is not Role.DRIVER:
        raise PermissionDenied("only the ride's driver may do this")
    return principal.subject_id
