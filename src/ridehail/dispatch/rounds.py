"""Matching rounds: due searches in, offers out.

A round takes searches its caller has claimed (one, a batch of them, or a whole batch
window), closes those whose ride left 'searching', keeps waiting on open offers, ranks the
drivers for the rest (candidates.py) and offers by the policy's strategy: each search its
best free drivers in claim order (sequential, broadcast), or an optimal assignment across
all of them (batch, assignment.py). Everything it decides is written to the dispatch log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail import locations, rides
from ridehail.dispatch import assignment, candidates, repository
from ridehail.dispatch.candidates import Considered
from ridehail.dispatch.eta import EtaProvider
from ridehail.dispatch.models import Offer, Search
from ridehail.dispatch.policy import DispatchPolicy, Strategy
from ridehail.dispatch.service import close_search
from ridehail.kernel.ids import new_id

log = structlog.get_logger("ridehail.dispatch")


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
