"""Finding and ranking the drivers for a round of searches.

One round serves any number of searches at once (one for the sequential and broadcast
strategies, a whole window of them for batch matching): the location store is asked ring by
ring (nearest first, the radius growing until enough drivers qualify or the maximum is
reached), and the database questions are asked once per ring for every driver found, not
once per driver.

A driver qualifies when they are available and active, hold no open offer, have no active
ride, seat enough passengers and were never offered this ride before (after a decline, an
expiry or giving the ride back). Qualified drivers are ranked by a score in seconds:

    pickup ETA + acceptance_weight_s x (1 - acceptance rate) - idle_weight x idle seconds

so a driver a little further away who has waited long, or who takes what they are offered,
can come first. The acceptance rate is smoothed towards a prior (a new driver is neither
punished nor favoured); idle time counts from the later of going available and the end of
the last trip, capped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from ridehail import drivers, locations, rides
from ridehail.dispatch import repository
from ridehail.dispatch.eta import EtaProvider
from ridehail.dispatch.models import Search
from ridehail.dispatch.policy import DispatchPolicy

#: Why a driver the store returned was not eligible (first that applies).
ALREADY_OFFERED = "already_offered"
UNAVAILABLE = "unavailable"
ON_TRIP = "on_trip"
HOLDING_OFFER = "holding_offer"
TOO_FEW_SEATS = "too_few_seats"


@dataclass(slots=True)
class Considered:
    """A driver a round looked at, with the numbers it ranked them by."""

    driver_id: str
    latitude: float
    longitude: float
    distance_m: float
    reason: str | None = None
    eta_s: float | None = None
    score: float | None = None
    acceptance_rate: float | None = None
    idle_s: float | None = None

    @property
    def eligible(self) -> bool:
        return self.reason is None


@dataclass(slots=True)
class Pool:
    """The drivers one search's round considered: eligible ones best first, then the rest."""

    search: Search
    radius_m: float = 0.0
    considered: list[Considered] = field(default_factory=list)

    @property
    def eligible(self) -> list[Considered]:
        return [c for c in self.considered if c.eligible]


@dataclass(slots=True)
class _Facts:
    """What the database says about the drivers seen so far in a round."""

    profiles: dict[str, drivers.DispatchProfile] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)
    holding: set[str] = field(default_factory=set)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    trip_ends: dict[str, datetime] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)

    async def learn(self, session: AsyncSession, driver_ids: set[str]) -> None:
        new = driver_ids - self.known
        if not new:
            return
        self.known |= new
        self.profiles.update(await drivers.dispatch_profiles(session, new))
        # Only drivers who are available at all need the other questions.
        available = new & self.profiles.keys()
        self.busy |= await rides.drivers_with_active_rides(session, available)
        holding, counts = await repository.offer_history(session, available)
        self.holding |= holding
        self.counts.update(counts)
        self.trip_ends.update(await repository.last_trip_ends(session, available))


def _reason(
    facts: _Facts, offered: set[tuple[str, str]], search: Search, driver: str
) -> str | None:
    if (search.ride_id, driver) in offered:
        return ALREADY_OFFERED
    profile = facts.profiles.get(driver)
    if profile is None:
        return UNAVAILABLE
    if driver in facts.busy:
        return ON_TRIP
    if driver in facts.holding:
        return HOLDING_OFFER
    if profile.seats < search.seats:
        return TOO_FEW_SEATS
    return None


async def gather(
    session: AsyncSession,
    searches: Sequence[Search],
    *,
    store: locations.DriverLocationStore,
    eta: EtaProvider,
    policy: DispatchPolicy,
    now: datetime,
    wanted: int,
) -> list[Pool]:
    """Rank the drivers for each of ``searches``, widening each search's ring until it has
    ``wanted`` eligible drivers or reaches the maximum radius."""
    pools = {s.ride_id: Pool(search=s) for s in searches}
    offered = await repository.offered_pairs(session, pools.keys())
    facts = _Facts()
    fresh_since = now - timedelta(seconds=policy.stale_after_s)
    rings = policy.rings()
    # Per search: which ring, and how many hits to ask for. A full page of hits that still
    # holds too few eligible drivers asks again for more in the same ring before widening.
    where = {s.ride_id: (0, policy.candidates) for s in searches}
    open_searches = list(searches)
    while open_searches:
        # The store's searches all at once (Redis pipelines them on its connections).
        hits = await asyncio.gather(
            *(
                store.nearest(
                    latitude=search.pickup_latitude,
                    longitude=search.pickup_longitude,
                    radius_m=rings[where[search.ride_id][0]],
                    limit=where[search.ride_id][1],
                    fresh_since=fresh_since,
                )
                for search in open_searches
            )
        )
        found = {s.ride_id: h for s, h in zip(open_searches, hits, strict=True)}
        await facts.learn(session, {n.driver_id for hits in found.values() for n in hits})
        still_open = []
        for search in open_searches:
            ring, limit = where[search.ride_id]
            pool = pools[search.ride_id]
            pool.radius_m = rings[ring]
            pool.considered = [
                Considered(
                    driver_id=n.driver_id,
                    latitude=n.latitude,
                    longitude=n.longitude,
                    distance_m=n.distance_m,
                    reason=_reason(facts, offered, search, n.driver_id),
                )
                for n in found[search.ride_id]
            ]
            if sum(c.eligible for c in pool.considered) >= wanted:
                continue
            if len(pool.considered) >= limit and limit < policy.max_candidates:
                where[search.ride_id] = (ring, min(limit * 2, policy.max_candidates))
            elif ring + 1 < len(rings):
                where[search.ride_id] = (ring + 1, limit)
            else:
                continue
            still_open.append(search)
        open_searches = still_open
    await _rank(list(pools.values()), facts, eta=eta, policy=policy, now=now)
    return list(pools.values())


async def _rank(
    pools: list[Pool], facts: _Facts, *, eta: EtaProvider, policy: DispatchPolicy, now: datetime
) -> None:
    pairs = []
    scored: list[Considered] = []
    for pool in pools:
        pickup = (pool.search.pickup_latitude, pool.search.pickup_longitude)
        for c in pool.considered:
            if c.eligible:
                pairs.append(((c.latitude, c.longitude), pickup))
                scored.append(c)
    times = await eta.travel_times_s(pairs, at=now) if pairs else []
    for c, eta_s in zip(scored, times, strict=True):
        accepted, answered = facts.counts.get(c.driver_id, (0, 0))
        rate = (accepted + policy.acceptance_prior * policy.acceptance_prior_weight) / (
            answered + policy.acceptance_prior_weight
        )
        profile = facts.profiles[c.driver_id]
        since = max(
            profile.available_since, facts.trip_ends.get(c.driver_id, profile.available_since)
        )
        idle = min(max(0.0, (now - since).total_seconds()), policy.idle_cap_s)
        c.eta_s = round(eta_s, 1)
        c.acceptance_rate = round(rate, 3)
        c.idle_s = round(idle, 1)
        c.score = round(
            eta_s + policy.acceptance_weight_s * (1.0 - rate) - policy.idle_weight * idle, 1
        )
    for pool in pools:
        pool.considered.sort(key=lambda c: (not c.eligible, c.score or 0.0, c.distance_m))
