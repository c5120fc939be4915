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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail import drivers, locations, rides
from ridehail.contracts import RideRequested
from ridehail.dispatch import assignment, candidates, repository
from ridehail.dispatch.candidates import Considered
from ridehail.dispatch.eta import EtaProvider
from ridehail.dispatch.models import Offer, Search
from ridehail.dispatch.policy import DispatchPolicy, Strategy
from ridehail.dispatch.schemas import CandidateOut, DispatchLog, SearchOut
from ridehail.kernel.errors import Conflict, NotFound
from ridehail.kernel.ids import new_id

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


@dataclass(slots=True)
class Round:
    """What one round did: an outcome per search (for logs and metrics) and the offers made
    (to push to their drivers once committed)."""

    outcomes: dict[str, str] = field(default_factory=dict)
    offers: list[Offer] = field(default_factory=list)


async def run_round(
    session: AsyncSession,
    searches: Sequence[Search],
    *,
    store: locations.DriverLocationStore,
    eta: EtaProvider,
    now: datetime,
    policy: DispatchPolicy,
) -> Round:
    """Advance due ``searches`` (locked by the caller) together: close those whose ride left
    'searching', keep waiting on open offers, and offer the rest to drivers by the policy's
    strategy; a search that finds nobody retries shortly and gives up at its deadline."""
    done = Round()
    ride_ids = [s.ride_id for s in searches]
    found = await rides.get_rides(session, ride_ids)
    waiting = await repository.open_offers_for_rides(session, ride_ids, now)
    needy: list[tuple[Search, rides.Ride]] = []
    for search in searches:
        ride = found.get(search.ride_id)
        if ride is None or ride.status != rides.RideStatus.SEARCHING.value:
            status = ride.status if ride is not None else "missing"
            await close_search(session, ride_id=search.ride_id, outcome=status, now=now)
            done.outcomes[search.ride_id] = "closed"
        elif waiting.get(search.ride_id):
            search.next_check_at = min(o.expires_at for o in waiting[search.ride_id])
            done.outcomes[search.ride_id] = "waiting"
        else:
            needy.append((search, ride))
    if not needy:
        return done
    pools = await candidates.gather(
        session,
        [search for search, _ in needy],
        store=store,
        eta=eta,
        policy=policy,
        now=now,
        wanted=policy.wanted,
    )
    picks = _choose(pools, policy)
    rows = [
        _offer_row(ride, pick, now=now, ttl_s=policy.offer_ttl_s)
        for (_, ride), pool in zip(needy, pools, strict=True)
        for pick in picks.get(pool.search.ride_id, [])
    ]
    inserted = await repository.insert_offers(session, rows)
    made = [Offer(**row) for row in rows if row["id"] in inserted]
    done.offers.extend(made)
    offered = {(o.ride_id, o.driver_id) for o in made}
    await repository.add_candidates(session, _log_rows(pools, picks, offered, policy, now))
    for (search, ride), pool in zip(needy, pools, strict=True):
        search.rounds += 1
        search.radius_m = pool.radius_m
        ours = [o for o in made if o.ride_id == ride.id]
        if ours:
            search.attempts += len(ours)
            search.next_check_at = min(o.expires_at for o in ours)
            done.outcomes[ride.id] = "offered"
            for o in ours:
                log.info(
                    "offer_made",
                    ride_id=ride.id,
                    driver_id=o.driver_id,
                    distance_m=o.distance_to_pickup_m,
                    eta_s=o.eta_s,
                    strategy=policy.strategy.value,
                )
        elif picks.get(ride.id):
            # The drivers picked took another offer meanwhile (another dispatcher): at once.
            search.next_check_at = now
            done.outcomes[ride.id] = "refused"
        elif now >= search.deadline_at:
            await rides.give_up_search(session, ride_id=ride.id)
            await close_search(session, ride_id=ride.id, outcome="no_drivers_available", now=now)
            log.info("search_gave_up", ride_id=ride.id, attempts=search.attempts)
            done.outcomes[ride.id] = "gave_up"
        else:
            age = (now - search.created_at).total_seconds()
            retry = now + timedelta(seconds=policy.retry_after_s(age))
            search.next_check_at = min(search.deadline_at, retry)
            done.outcomes[ride.id] = "retry"
    return done


def _choose(
    pools: Sequence[candidates.Pool], policy: DispatchPolicy
) -> dict[str, list[Considered]]:
    """Which drivers each search offers its ride to in this round."""
    if policy.strategy is Strategy.BATCH:
        return _assign(pools, policy)
    # Searches in claim order (most overdue first), each taking its best drivers not yet
    # taken by an earlier one in this round: what one search per round would do, batched.
    k = policy.offers_per_round
    taken: set[str] = set()
    chosen: dict[str, list[Considered]] = {}
    for pool in pools:
        mine = [c for c in pool.eligible if c.driver_id not in taken][:k]
        if mine:
            chosen[pool.search.ride_id] = mine
            taken.update(c.driver_id for c in mine)
    return chosen


def _assign(
    pools: Sequence[candidates.Pool], policy: DispatchPolicy
) -> dict[str, list[Considered]]:
    """Batch matching: every search's k best drivers as a sparse cost matrix, solved for
    the most rides served at the least total score (pickup time, adjusted)."""
    index: dict[str, int] = {}
    by_column: list[str] = []
    req, col, cost = [], [], []
    options: list[dict[str, Considered]] = []
    # Scores may be negative (the idle bonus); the solver wants costs >= 0.
    shift = policy.idle_weight * policy.idle_cap_s
    for row, pool in enumerate(pools):
        mine: dict[str, Considered] = {}
        for c in pool.eligible[: policy.batch_k]:
            if c.driver_id not in index:
                index[c.driver_id] = len(by_column)
                by_column.append(c.driver_id)
            req.append(row)
            col.append(index[c.driver_id])
            cost.append(max(0.0, (c.score or 0.0) + shift))
            mine[c.driver_id] = c
        options.append(mine)
    edges = assignment.EdgeArrays(req, col, cost)  # type: ignore[arg-type]
    pairs = assignment.assign(len(pools), len(by_column), edges)
    return {pools[row].search.ride_id: [options[row][by_column[column]]] for row, column in pairs}


async def offer_ride(
    session: AsyncSession,
    *,
    ride: rides.Ride,
    driver_id: str,
    distance_m: float,
    now: datetime,
    ttl_s: float,
) -> Offer | None:
    """Offer ``ride`` to one driver; None when the database refuses it (the driver holds
    another open offer, or had this ride before)."""
    pick = Considered(driver_id=driver_id, latitude=0.0, longitude=0.0, distance_m=distance_m)
    row = _offer_row(ride, pick, now=now, ttl_s=ttl_s)
    inserted = await repository.insert_offers(session, [row])
    return Offer(**row) if inserted else None


def _offer_row(
    ride: rides.Ride, pick: Considered, *, now: datetime, ttl_s: float
) -> dict[str, Any]:
    return {
        "id": new_id("ofr"),
        "ride_id": ride.id,
        "driver_id": pick.driver_id,
        "status": repository.PENDING,
        "distance_to_pickup_m": round(pick.distance_m, 1),
        "eta_s": pick.eta_s,
        "pickup": {"latitude": ride.start_latitude, "longitude": ride.start_longitude},
        "dropoff": {"latitude": ride.end_latitude, "longitude": ride.end_longitude},
        "fare_estimate": ride.fare_estimate,
        "created_at": now,
        "expires_at": now + timedelta(seconds=ttl_s),
    }


def _log_rows(
    pools: Sequence[candidates.Pool],
    picks: dict[str, list[Considered]],
    offered: set[tuple[str, str]],
    policy: DispatchPolicy,
    now: datetime,
) -> list[dict[str, Any]]:
    """The dispatch log of a round: per search, the drivers it considered (eligible ones
    best first, then those skipped), at most ``policy.log_limit`` of them plus any offered."""
    taken = {c.driver_id for chosen in picks.values() for c in chosen}
    rows = []
    for pool in pools:
        ride_id = pool.search.ride_id
        mine = {c.driver_id for c in picks.get(ride_id, [])}
        for position, c in enumerate(pool.considered):
            is_offered = (ride_id, c.driver_id) in offered
            if position >= policy.log_limit and not is_offered:
                continue
            if is_offered:
                decision, reason = "offered", None
            elif not c.eligible:
                decision, reason = "skipped", c.reason
            elif c.driver_id in mine:
                decision, reason = "passed_over", "offer_refused"
            elif c.driver_id in taken:
                decision, reason = "passed_over", "matched_elsewhere"
            else:
                decision, reason = "passed_over", "ranked_lower"
            rows.append(
                {
                    "ride_id": ride_id,
                    "round": pool.search.rounds + 1,
                    "strategy": policy.strategy.value,
                    "driver_id": c.driver_id,
                    "distance_m": round(c.distance_m, 1),
                    "eta_s": c.eta_s,
                    "score": c.score,
                    "acceptance_rate": c.acceptance_rate,
                    "idle_s": c.idle_s,
                    "decision": decision,
                    "reason": reason,
                    "considered_at": now,
                }
            )
    return rows


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
    search = await repository.get_search(session, ride_id)
    offers = {o.driver_id: o for o in await repository.offers_for_ride(session, ride_id)}
    rows = []
    for c in await repository.candidates_for_ride(session, ride_id):
        offer = offers.get(c.driver_id) if c.decision == "offered" else None
        if offer is None:
            outcome = c.decision
        else:
            outcome = "open" if offer.status == repository.PENDING else offer.status
        rows.append(
            CandidateOut(
                round=c.round,
                strategy=c.strategy,
                driver_id=c.driver_id,
                distance_m=c.distance_m,
                eta_s=c.eta_s,
                score=c.score,
                acceptance_rate=c.acceptance_rate,
                idle_s=c.idle_s,
                decision=c.decision,
                reason=c.reason,
                outcome=outcome,
                offer_id=offer.id if offer else None,
                responded_at=offer.responded_at if offer else None,
                considered_at=c.considered_at,
            )
        )
    return DispatchLog(
        ride_id=ride.id,
        ride_status=ride.status,
        search=None
        if search is None
        else SearchOut(
            state=search.state,
            outcome=search.outcome,
            rounds=search.rounds,
            offers_made=search.attempts,
            radius_m=search.radius_m,
            seats=search.seats,
            created_at=search.created_at,
            deadline_at=search.deadline_at,
            next_check_at=search.next_check_at,
            closed_at=search.closed_at,
        ),
        candidates=rows,
    )
