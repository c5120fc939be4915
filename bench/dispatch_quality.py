"""Benchmark 2c: dispatch quality. One seeded demand, replayed under each strategy.

A discrete-time replay on a simulated clock (1 s steps) against the real engine: the
dispatch, ride and driver service functions on a SQLite file migrated with ``upgrade``, the
in-process location store and ``StraightLineEta``, with the engine's default policy (search
timeout 120 s, offers open 15 s, batch window 2 s). The same scenario runs once per strategy
(sequential, broadcast, batch) and, by default, for three seeds:

- DRIVERS drivers at seeded points of the synthetic city of bench/common.py (39 x 25 km,
  40 % of them around the four hotspots), all available and reporting every REPORT_EVERY_S;
- RIDES requests over DEMAND_MIN simulated minutes (a Poisson process conditioned on the
  count: sorted uniform arrival times), origins around the hotspots (DEMAND_HOTSPOT_SHARE)
  or anywhere, destinations 2-10 km away in a random direction, inside the box;
- each step, as the API and the dispatcher would do it: new requests (``request_ride`` and,
  as the dispatch handler does on RideRequested, ``open_search``), the drivers' and riders'
  actions due, location fixes, ``expire_offers``, then dispatch rounds as
  ``dispatch.worker.Dispatcher.tick`` runs them (sequential and broadcast: claim one due
  search per transaction until none is due; batch: one round of every due search at each
  batch window);
- a driver answers an offer after 2-8 s: accepts (85 %), declines (10 %) or never answers
  (5 %, the offer expires); an accepted driver drives to the pickup in a straight line,
  taking exactly the ETA model's time (distance x detour ÷ the hour's speed), then
  ``arrive``, ``start``, drives to the destination the same way, ``complete``, and is idle
  at the drop-off; a rider still unmatched after RIDER_PATIENCE_S cancels.

Every random number comes from a generator seeded per entity (a ride, a driver, a ride
and driver pair), so a strategy's different choices never shift anybody else's draws: the
demand and the driver positions are the same for every strategy, and a driver offered the
same ride answers the same way after the same delay under every strategy.

Times about the service (pickup, wait, time to offer) are simulated seconds from the
replay's clock; the engine's own ride timestamps use the wall clock and are not used. Where
the engine itself reads the wall clock, the replay does the work at simulated time instead:
the dispatch event handler's reactions (``open_search`` on a new ride, ``close_search`` on
a cancel, ``record_trip_end`` after ``complete``) are called directly rather than through
the outbox and bus, and a driver's ``availability_changed_at`` (stamped by
``set_availability``, read for the idle bonus) is set to the start of the replay. The
replay ends once every search has ended after the demand window; a driver still on the way
to a pickup then arrives when the accept fixed (nothing random is left). The wall-clock
time of each replay and of its dispatch rounds (``perf_counter`` around ``run_round``) are
measured too.

    .venv/bin/python -m bench.dispatch_quality [--seed N] [--seeds K]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import os
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench import common
from ridehail import accounts, drivers, pricing
from ridehail.db import Database
from ridehail.db.migrate import upgrade
from ridehail.dispatch import repository, rounds, service
from ridehail.dispatch.eta import StraightLineEta
from ridehail.dispatch.models import Offer
from ridehail.dispatch.policy import DispatchPolicy, Strategy
from ridehail.dispatch.worker import MAX_STEPS_PER_TICK
from ridehail.kernel.auth import Principal, Role
from ridehail.kernel.errors import Conflict, NotFound
from ridehail.kernel.geo import haversine_m, offset
from ridehail.locations.memory import InMemoryLocationStore
from ridehail.locations.ports import LocationFix
from ridehail.logging import configure as configure_logging
from ridehail.rides import service as rides_service
from ridehail.rides.models import Ride

DRIVERS = int(os.environ.get("BENCH_QUALITY_DRIVERS", "300"))
RIDES = int(os.environ.get("BENCH_QUALITY_RIDES", "300"))
DEMAND_MIN = float(os.environ.get("BENCH_QUALITY_MINUTES", "10"))
SEEDS = int(os.environ.get("BENCH_QUALITY_SEEDS", "3"))
SEED = 20_240_612
STRATEGIES = (Strategy.SEQUENTIAL, Strategy.BROADCAST, Strategy.BATCH)

#: The simulated clock starts here (a fixed date: the replay ages only relative to itself);
#: the hour sets StraightLineEta's speed (UTC, the default city time zone).
START = datetime(2024, 6, 11, 12, 0, tzinfo=UTC)
STEP_S = 1
#: Every driver sends a fix this often (staggered), well inside the 30 s freshness limit.
REPORT_EVERY_S = 5
#: Share of ride origins around a hotspot (the rest uniform over the box).
DEMAND_HOTSPOT_SHARE = 0.6
TRIP_M = (2_000.0, 10_000.0)
ACCEPT_P = 0.85
DECLINE_P = 0.10  # the remaining 5 % never answer
ANSWER_DELAY_S = (2, 8)
RIDER_PATIENCE_S = 300
#: After the demand window the replay goes on until every search has ended (riders cancel
#: after RIDER_PATIENCE_S, so this bound is never reached unless something is wrong).
DRAIN_MAX_S = 900
#: "Nearby" for the tightness figure: no idle driver this close when a request arrives.
LOCAL_M = 2_000.0
SEARCH_TIMEOUT_S = 120.0
OFFER_TTL_S = 15.0
BATCH_WINDOW_S = 2.0
#: Fares are computed by ``complete`` but not measured here.
FARES = pricing.FarePolicy(
    base=Decimal("2.50"),
    per_km=Decimal("1.20"),
    per_minute=Decimal("0.30"),
    minimum=Decimal("5.00"),
    booking_fee=Decimal("1.00"),
)

Point = tuple[float, float]


# ---------------------------------------------------------------- the scenario


def _in_box(point: Point) -> bool:
    lat, lon = point
    return (
        abs(lat - common.CENTRE_LAT) <= common.HALF_LAT
        and abs(lon - common.CENTRE_LON) <= common.HALF_LON
    )


def _clamp(point: Point) -> Point:
    lat = min(
        max(point[0], common.CENTRE_LAT - common.HALF_LAT), common.CENTRE_LAT + common.HALF_LAT
    )
    lon = min(
        max(point[1], common.CENTRE_LON - common.HALF_LON), common.CENTRE_LON + common.HALF_LON
    )
    return lat, lon


def origin_point(rng: random.Random) -> Point:
    if rng.random() < DEMAND_HOTSPOT_SHARE:
        east, north, sigma = rng.choice(common.HOTSPOTS)
        lat = common.CENTRE_LAT + rng.gauss(north, sigma) / common.KM_PER_DEG_LAT
        lon = common.CENTRE_LON + rng.gauss(east, sigma) / common.KM_PER_DEG_LON
        return _clamp((lat, lon))
    return (
        common.CENTRE_LAT + rng.uniform(-common.HALF_LAT, common.HALF_LAT),
        common.CENTRE_LON + rng.uniform(-common.HALF_LON, common.HALF_LON),
    )


def destination_point(rng: random.Random, origin: Point) -> Point:
    """TRIP_M away in a random direction, inside the box (redrawn until it is)."""
    point = origin
    for _ in range(50):
        metres = rng.uniform(*TRIP_M)
        angle = rng.uniform(0.0, 2 * math.pi)
        point = offset(*origin, north_m=metres * math.cos(angle), east_m=metres * math.sin(angle))
        if _in_box(point):
            return point
    return _clamp(point)


@dataclass(frozen=True, slots=True)
class Request:
    index: int
    at_s: int
    origin: Point
    destination: Point


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int
    drivers: list[Point]
    requests: list[Request]
    demand_s: int


def scenario(seed: int, n_drivers: int = DRIVERS, n_rides: int = RIDES) -> Scenario:
    demand_s = round(DEMAND_MIN * 60)
    arrivals = random.Random(f"{seed}:arrivals")
    times = sorted(arrivals.uniform(0, demand_s) for _ in range(n_rides))
    requests = []
    for index, at in enumerate(times):
        rng = random.Random(f"{seed}:ride:{index}")
        origin = origin_point(rng)
        requests.append(Request(index, int(at), origin, destination_point(rng, origin)))
    places = [common.city_point(random.Random(f"{seed}:driver:{i}")) for i in range(n_drivers)]
    return Scenario(seed=seed, drivers=places, requests=requests, demand_s=demand_s)


def answer(seed: int, ride: int, driver: int) -> tuple[str, int]:
    """What driver ``driver`` does with an offer of ride ``ride``, and after how long."""
    rng = random.Random(f"{seed}:answer:{ride}:{driver}")
    draw = rng.random()
    delay = rng.randint(*ANSWER_DELAY_S)
    if draw < ACCEPT_P:
        return "accept", delay
    if draw < ACCEPT_P + DECLINE_P:
        return "decline", delay
    return "silent", delay


# ---------------------------------------------------------------- the replay


@dataclass(slots=True)
class Leg:
    """A straight drive from ``a`` (at ``t0``) to ``b`` (at ``t1``), simulated seconds."""

    a: Point
    b: Point
    t0: int
    t1: int

    def at(self, t: int) -> Point:
        share = (
            1.0 if self.t1 <= self.t0 else min(1.0, max(0.0, (t - self.t0) / (self.t1 - self.t0)))
        )
        return (
            self.a[0] + (self.b[0] - self.a[0]) * share,
            self.a[1] + (self.b[1] - self.a[1]) * share,
        )


@dataclass(slots=True)
class Agent:
    index: int
    id: str
    where: Point
    leg: Leg | None = None
    ride: int | None = None  # on a ride (to the pickup or with the rider)

    def position(self, t: int) -> Point:
        return self.where if self.leg is None else self.leg.at(t)


@dataclass(slots=True)
class RideLog:
    request: Request
    ride_id: str = ""
    rider_id: str = ""
    offers: int = 0
    first_offer_s: int | None = None
    accepted_s: int | None = None
    driver: int | None = None
    pickup_m: float | None = None
    #: When the driver reaches the pickup: fixed at the accept (straight drive, ETA model).
    pickup_due_s: int | None = None
    picked_up_s: int | None = None
    outcome: str | None = None  # matched | no_drivers_available | cancelled

    @property
    def searching(self) -> bool:
        return self.outcome is None


@dataclass(slots=True)
class Clocks:
    round_s: list[float] = field(default_factory=list)
    dispatch_s: float = 0.0
    searches_advanced: int = 0
    capped_ticks: int = 0


class Replay:
    def __init__(self, sc: Scenario, strategy: Strategy, db: Database) -> None:
        self.sc = sc
        self.strategy = strategy
        self.db = db
        self.policy = DispatchPolicy(
            strategy=strategy,
            search_timeout_s=SEARCH_TIMEOUT_S,
            offer_ttl_s=OFFER_TTL_S,
            batch_window_s=BATCH_WINDOW_S,
        )
        self.eta = StraightLineEta()
        self.store = InMemoryLocationStore(max_speed_mps=250 / 3.6)
        self.agents: list[Agent] = []
        self.by_id: dict[str, int] = {}
        self.rides = [RideLog(r) for r in sc.requests]
        self.by_ride: dict[str, int] = {}
        self.events: list[tuple[int, int, str, int, int]] = []
        self.seq = 0
        self.clocks = Clocks()
        self.answers: Counter[str] = Counter()
        self.busy_s = 0
        self.min_idle = len(sc.drivers)
        self.max_searching = 0
        self.short_s = 0  # seconds with more searching rides than idle drivers
        #: Requests that found no idle driver within LOCAL_M when they arrived.
        self.no_idle_near = 0
        self.picked_up_after_end = 0
        self.end_s = 0

    def now(self, t: int) -> datetime:
        return START + timedelta(seconds=t)

    def later(self, t: int, kind: str, ride: int, driver: int = -1) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, ride, driver))

    async def setup(self) -> None:
        """Accounts, driver profiles (available since the start of the replay), first fixes."""
        async with self.db.transaction() as session:
            for i, place in enumerate(self.sc.drivers):
                account = await accounts.register(
                    session,
                    role=Role.DRIVER,
                    name=f"Driver {i}",
                    email=f"driver{i}@bench.invalid",
                    password_hash="-",
                )
                await drivers.create_profile(
                    session,
                    driver_id=account.id,
                    name=f"Driver {i}",
                    license_number=f"L{i:06d}",
                    vehicle=drivers.VehicleSpec(make="Toyota", model="Prius", plate=f"B-{i}"),
                )
                driver = await drivers.set_availability(
                    session, driver_id=account.id, availability=drivers.Availability.AVAILABLE
                )
                # set_availability stamps the wall clock; idle time counts from here.
                driver.availability_changed_at = self.now(0)
                self.agents.append(Agent(i, account.id, place))
                self.by_id[account.id] = i
            for log in self.rides:
                rider = await accounts.register(
                    session,
                    role=Role.RIDER,
                    name=f"Rider {log.request.index}",
                    email=f"rider{log.request.index}@bench.invalid",
                    password_hash="-",
                )
                log.rider_id = rider.id
            await session.flush()
        await self.report_positions(0, every=True)

    async def report_positions(self, t: int, *, every: bool = False) -> None:
        at = self.now(t)
        fixes = []
        for agent in self.agents:
            if every or agent.index % REPORT_EVERY_S == t % REPORT_EVERY_S:
                lat, lon = agent.position(t)
                fixes.append(LocationFix(agent.id, lat, lon, at))
        await self.store.record_many(fixes)

    async def report(self, agent: Agent, t: int) -> None:
        lat, lon = agent.position(t)
        await self.store.record(LocationFix(agent.id, lat, lon, self.now(t)))

    # ------------------------------------------------------------ riders

    async def request(self, log: RideLog, t: int) -> None:
        r = log.request
        if not any(
            agent.ride is None and haversine_m(*agent.where, *r.origin) <= LOCAL_M
            for agent in self.agents
        ):
            self.no_idle_near += 1
        async with self.db.transaction() as session:
            ride = await rides_service.request_ride(
                session,
                rider_id=log.rider_id,
                trip=rides_service.Trip(start=r.origin, end=r.destination),
                policy=FARES,
            )
        log.ride_id = ride.id
        self.by_ride[ride.id] = r.index
        # The dispatch handler's reaction to RideRequested, at simulated time.
        async with self.db.transaction() as session:
            await service.open_search(session, ride_id=ride.id, now=self.now(t), policy=self.policy)
        self.later(t + RIDER_PATIENCE_S, "patience", r.index)

    async def lose_patience(self, log: RideLog, t: int) -> None:
        if not log.searching:
            return
        rider = Principal(subject_id=log.rider_id, role=Role.RIDER)
        try:
            async with self.db.transaction() as session:
                await rides_service.cancel(
                    session,
                    ride_id=log.ride_id,
                    principal=rider,
                    reason="waited too long",
                    prices=lambda _product: FARES,
                )
        except Conflict:
            return  # matched or given up in the same instant
        # The dispatch handler's reaction to the ride leaving 'searching'.
        async with self.db.transaction() as session:
            await service.close_search(
                session, ride_id=log.ride_id, outcome="cancelled", now=self.now(t)
            )
        log.outcome = "cancelled"

    # ------------------------------------------------------------ drivers

    async def answer_offer(self, log: RideLog, agent: Agent, kind: str, t: int) -> None:
        now = self.now(t)
        try:
            async with self.db.transaction() as session:
                if kind == "accept":
                    await service.accept(session, ride_id=log.ride_id, driver_id=agent.id, now=now)
                else:
                    await service.decline(session, ride_id=log.ride_id, driver_id=agent.id, now=now)
        except (Conflict, NotFound):
            self.answers[f"{kind}_refused"] += 1  # the offer was gone (withdrawn, taken)
            return
        self.answers[kind] += 1
        if kind != "accept":
            return
        assert agent.ride is None, "a driver on a ride accepted another"
        here = agent.position(t)
        metres = haversine_m(*here, *log.request.origin)
        log.outcome = "matched"
        log.accepted_s = t
        log.driver = agent.index
        log.pickup_m = metres
        arrive = t + max(1, math.ceil(self.eta.seconds_for(metres, at=now)))
        log.pickup_due_s = arrive
        agent.where, agent.ride = here, log.request.index
        agent.leg = Leg(here, log.request.origin, t, arrive)
        self.later(arrive, "pickup", log.request.index, agent.index)

    async def pick_up(self, log: RideLog, agent: Agent, t: int) -> None:
        async with self.db.transaction() as session:
            await rides_service.arrive(session, ride_id=log.ride_id, driver_id=agent.id)
        async with self.db.transaction() as session:
            await rides_service.start(
                session, ride_id=log.ride_id, driver_id=agent.id, store=self.store
            )
        log.picked_up_s = t
        origin, destination = log.request.origin, log.request.destination
        metres = haversine_m(*origin, *destination)
        drop = t + max(1, math.ceil(self.eta.seconds_for(metres, at=self.now(t))))
        agent.where = origin
        agent.leg = Leg(origin, destination, t, drop)
        await self.report(agent, t)
        self.later(drop, "dropoff", log.request.index, agent.index)

    async def drop_off(self, log: RideLog, agent: Agent, t: int) -> None:
        async with self.db.transaction() as session:
            await rides_service.complete(
                session,
                ride_id=log.ride_id,
                driver_id=agent.id,
                store=self.store,
                prices=lambda _product: FARES,
            )
        # The dispatch handler's reaction to the trip ending: idle from now.
        async with self.db.transaction() as session:
            await repository.record_trip_end(session, driver_id=agent.id, at=self.now(t))
        agent.where, agent.leg, agent.ride = log.request.destination, None, None
        await self.report(agent, t)

    # ------------------------------------------------------------ dispatch

    async def one_round(self, t: int, limit: int) -> int:
        now = self.now(t)
        began = time.perf_counter()
        async with self.db.transaction() as session:
            searches = await repository.claim_due_searches(session, now, limit)
            if not searches:
                return 0
            round_began = time.perf_counter()
            done = await rounds.run_round(
                session, searches, store=self.store, eta=self.eta, now=now, policy=self.policy
            )
            self.clocks.round_s.append(time.perf_counter() - round_began)
        self.clocks.dispatch_s += time.perf_counter() - began
        self.clocks.searches_advanced += len(searches)
        for offer in done.offers:  # pushed to the drivers' phones
            ride = self.by_ride[offer.ride_id]
            driver = self.by_id[offer.driver_id]
            log = self.rides[ride]
            log.offers += 1
            if log.first_offer_s is None:
                log.first_offer_s = t
            kind, delay = answer(self.sc.seed, ride, driver)
            if kind == "silent":
                self.answers["silent"] += 1
            else:
                self.later(t + delay, kind, ride, driver)
        for ride_id, outcome in done.outcomes.items():
            if outcome == "gave_up":
                self.rides[self.by_ride[ride_id]].outcome = "no_drivers_available"
        return len(searches)

    async def dispatch(self, t: int) -> None:
        """What Dispatcher.tick does: sequential and broadcast advance one search per
        transaction until none is due; batch runs one round per window over all of them."""
        if self.strategy is Strategy.BATCH:
            if t % round(self.policy.batch_window_s) == 0:
                await self.one_round(t, self.policy.batch_max_rides)
            return
        steps = 0
        while steps < MAX_STEPS_PER_TICK:
            if not await self.one_round(t, 1):
                return
            steps += 1
        self.clocks.capped_ticks += 1

    # ------------------------------------------------------------ the clock

    def settled(self) -> bool:
        """Every ride has left the search (matched, given up or cancelled)."""
        return not any(log.searching for log in self.rides)

    async def run(self) -> None:
        arrivals: dict[int, list[RideLog]] = {}
        for log in self.rides:
            arrivals.setdefault(log.request.at_s, []).append(log)
        t = 0
        while True:
            for log in arrivals.get(t, []):
                await self.request(log, t)
            while self.events and self.events[0][0] <= t:
                _, _, kind, ride, driver = heapq.heappop(self.events)
                log = self.rides[ride]
                if kind in ("accept", "decline"):
                    await self.answer_offer(log, self.agents[driver], kind, t)
                elif kind == "pickup":
                    await self.pick_up(log, self.agents[driver], t)
                elif kind == "dropoff":
                    await self.drop_off(log, self.agents[driver], t)
                elif kind == "patience":
                    await self.lose_patience(log, t)
            await self.report_positions(t)
            async with self.db.transaction() as session:
                await service.expire_offers(session, now=self.now(t))
            await self.dispatch(t)
            if t < self.sc.demand_s:
                busy = sum(agent.ride is not None for agent in self.agents)
                searching = sum(log.searching for log in self.rides if log.request.at_s <= t)
                self.busy_s += busy
                idle = len(self.agents) - busy
                self.min_idle = min(self.min_idle, idle)
                self.max_searching = max(self.max_searching, searching)
                self.short_s += searching > idle
            t += STEP_S
            if t >= self.sc.demand_s and (self.settled() or t >= self.sc.demand_s + DRAIN_MAX_S):
                break
        self.end_s = t
        # Nothing random is left: drivers still on their way arrive when they were due.
        for log in self.rides:
            if log.picked_up_s is None and log.pickup_due_s is not None:
                log.picked_up_s = log.pickup_due_s
                self.picked_up_after_end += 1

    # ------------------------------------------------------------ results

    async def database_counts(self) -> dict[str, dict[str, int]]:
        async with self.db.read_only() as session:
            rides = await session.execute(select(Ride.status, func.count()).group_by(Ride.status))
            offers = await session.execute(
                select(Offer.status, func.count()).group_by(Offer.status)
            )
            return {
                "rides": {str(k): int(v) for k, v in rides.all()},
                "offers": {str(k): int(v) for k, v in offers.all()},
            }

    def metrics(self) -> dict[str, Any]:
        logs = self.rides
        matched = [x for x in logs if x.outcome == "matched"]

        def gaps(pairs: Iterable[tuple[int | None, int | None]]) -> list[float]:
            return [float(b - a) for a, b in pairs if a is not None and b is not None]

        def stats(values: list[float], digits: int = 1) -> dict[str, float | None]:
            if not values:
                return {"mean": None, "p90": None}
            ordered = sorted(values)
            return {
                "mean": round(statistics.fmean(ordered), digits),
                "p90": round(common.percentile(ordered, 90), digits),
            }

        outcomes = Counter(x.outcome or "still_searching" for x in logs)
        round_ms = sorted(s * 1000 for s in self.clocks.round_s)
        return {
            "requested": len(logs),
            "matched": len(matched),
            "match_rate": round(len(matched) / len(logs), 4),
            "no_drivers_available": outcomes["no_drivers_available"],
            "cancelled_by_rider": outcomes["cancelled"],
            "still_searching_at_end": outcomes["still_searching"],
            "pickup_m": stats([x.pickup_m for x in matched if x.pickup_m is not None], 0),
            "pickup_s": stats(gaps((x.accepted_s, x.picked_up_s) for x in matched)),
            "wait_s": stats(gaps((x.request.at_s, x.picked_up_s) for x in matched)),
            "first_offer_s": stats(gaps((x.request.at_s, x.first_offer_s) for x in logs)),
            "accept_s": stats(gaps((x.request.at_s, x.accepted_s) for x in matched)),
            "picked_up_after_replay_end": self.picked_up_after_end,
            "offers_per_matched_ride": round(sum(x.offers for x in matched) / len(matched), 3)
            if matched
            else None,
            "offers": sum(x.offers for x in logs),
            "answers": dict(sorted(self.answers.items())),
            "utilisation": round(self.busy_s / (len(self.agents) * self.sc.demand_s), 4),
            "requests_without_idle_driver_within_local_m": self.no_idle_near,
            "min_idle_drivers": self.min_idle,
            "max_searching_rides": self.max_searching,
            "seconds_more_searching_than_idle": self.short_s,
            "simulated_s": self.end_s,
            "rounds": len(round_ms),
            "searches_advanced": self.clocks.searches_advanced,
            "round_ms": {
                "median": round(statistics.median(round_ms), 3) if round_ms else None,
                "p99": round(common.percentile(round_ms, 99), 3) if round_ms else None,
            },
            "dispatch_wall_s": round(self.clocks.dispatch_s, 2),
            "capped_ticks": self.clocks.capped_ticks,
        }


# ---------------------------------------------------------------- runs


async def replay(sc: Scenario, strategy: Strategy, template: Path, workdir: Path) -> dict[str, Any]:
    path = (
        Path(tempfile.mkdtemp(prefix=f"{strategy.value}-{sc.seed}-", dir=workdir)) / "ridehail.db"
    )
    shutil.copyfile(template, path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        began = time.perf_counter()
        sim = Replay(sc, strategy, db)
        await sim.setup()
        set_up = time.perf_counter()
        await sim.run()
        ran = time.perf_counter()
        out = sim.metrics()
        out["database"] = await sim.database_counts()
    finally:
        await db.dispose()
    out["setup_wall_s"] = round(set_up - began, 2)
    out["replay_wall_s"] = round(ran - set_up, 2)
    return out


def consistent(m: dict[str, Any]) -> bool:
    """The replay's own account agrees with the database's: rides by outcome, offers
    accepted, offers made."""
    rides = m["database"]["rides"]
    offers = m["database"]["offers"]
    busy = sum(rides.get(s, 0) for s in ("driver_en_route", "driver_arrived", "in_progress"))
    return bool(
        rides.get("no_drivers_available", 0) == m["no_drivers_available"]
        and rides.get("cancelled", 0) == m["cancelled_by_rider"]
        and rides.get("searching", 0) == m["still_searching_at_end"]
        and busy + rides.get("completed", 0) == m["matched"]
        and offers.get("accepted", 0) == m["matched"]
        and sum(offers.values()) == m["offers"]
    )


METRICS = (
    ("match_rate", None),
    ("matched", None),
    ("no_drivers_available", None),
    ("cancelled_by_rider", None),
    ("pickup_m", "mean"),
    ("pickup_m", "p90"),
    ("pickup_s", "mean"),
    ("pickup_s", "p90"),
    ("wait_s", "mean"),
    ("wait_s", "p90"),
    ("first_offer_s", "mean"),
    ("first_offer_s", "p90"),
    ("accept_s", "mean"),
    ("accept_s", "p90"),
    ("offers_per_matched_ride", None),
    ("offers", None),
    ("utilisation", None),
    ("requests_without_idle_driver_within_local_m", None),
    ("min_idle_drivers", None),
    ("seconds_more_searching_than_idle", None),
    ("round_ms", "median"),
    ("round_ms", "p99"),
    ("rounds", None),
    ("dispatch_wall_s", None),
    ("replay_wall_s", None),
)


def summarise(runs: dict[int, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per strategy and metric: the median over the seeds, with min, max and every seed."""
    out: dict[str, Any] = {}
    for strategy in STRATEGIES:
        rows: dict[str, Any] = {}
        for name, sub in METRICS:
            key = name if sub is None else f"{name}_{sub}"
            values = []
            for per_seed in runs.values():
                value = per_seed[strategy.value][name]
                value = value if sub is None else value[sub]
                if value is not None:
                    values.append(float(value))
            if values:
                precise = ("match_rate", "utilisation", "offers_per_matched_ride")
                digits = 4 if name in precise else 3 if "ms" in name else 1
                rows[key] = common.spread(values, digits)
        out[strategy.value] = rows
    return out


async def run_all(seeds: list[int], workdir: Path) -> dict[int, dict[str, dict[str, Any]]]:
    template = workdir / "template.db"
    await asyncio.to_thread(upgrade, f"sqlite+aiosqlite:///{template}")
    runs: dict[int, dict[str, dict[str, Any]]] = {}
    deadline = common.Deadline(1_800, "dispatch quality replays")
    for turn, seed in enumerate(seeds):
        sc = scenario(seed)
        runs[seed] = {}
        # The order rotates from seed to seed (the quality figures do not depend on it; the
        # wall-clock ones may, on a shared machine).
        order = STRATEGIES[turn % 3 :] + STRATEGIES[: turn % 3]
        for strategy in order:
            m = await replay(sc, strategy, template, workdir)
            runs[seed][strategy.value] = m
            print(
                f"   seed {seed} {strategy.value:10s} matched {m['matched']}/{m['requested']} "
                f"pickup {m['pickup_s']['mean']} s (p90 {m['pickup_s']['p90']}) "
                f"wait {m['wait_s']['mean']} s  no drivers {m['no_drivers_available']} "
                f"cancelled {m['cancelled_by_rider']}  rounds {m['rounds']} "
                f"(median {m['round_ms']['median']} ms)  replay {m['replay_wall_s']} s",
                flush=True,
            )
            deadline.check()
    return runs


def run(seeds: list[int]) -> dict[str, Any]:
    began = common.started()
    machine = common.machine_facts()
    wall = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="ridehail_bench_quality_"))
    try:
        runs = asyncio.run(run_all(seeds, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    checks = {
        "replay_agrees_with_database": sum(
            consistent(m) for per in runs.values() for m in per.values()
        ),
        "replays": sum(len(per) for per in runs.values()),
        "still_searching_at_end": sum(
            m["still_searching_at_end"] for per in runs.values() for m in per.values()
        ),
        "capped_ticks": sum(m["capped_ticks"] for per in runs.values() for m in per.values()),
        "picked_up_after_replay_end": sum(
            m["picked_up_after_replay_end"] for per in runs.values() for m in per.values()
        ),
    }
    part = {
        "settings": {
            "drivers": DRIVERS,
            "rides": RIDES,
            "demand_s": round(DEMAND_MIN * 60),
            "seeds": seeds,
            "start": START.isoformat(),
            "speed_kmh": round(StraightLineEta().speed_mps(START) * 3.6, 1),
            "detour": StraightLineEta().detour_factor,
            "step_s": STEP_S,
            "report_every_s": REPORT_EVERY_S,
            "demand_hotspot_share": DEMAND_HOTSPOT_SHARE,
            "driver_hotspot_share": common.HOTSPOT_SHARE,
            "trip_m": list(TRIP_M),
            "accept_p": ACCEPT_P,
            "decline_p": DECLINE_P,
            "answer_delay_s": list(ANSWER_DELAY_S),
            "rider_patience_s": RIDER_PATIENCE_S,
            "local_m": LOCAL_M,
            "drain_max_s": DRAIN_MAX_S,
            "policy": {
                "search_timeout_s": SEARCH_TIMEOUT_S,
                "offer_ttl_s": OFFER_TTL_S,
                "batch_window_s": BATCH_WINDOW_S,
                "broadcast_k": DispatchPolicy().broadcast_k,
                "batch_k": DispatchPolicy().batch_k,
                "radius_m": DispatchPolicy().radius_m,
                "retry_interval_s": DispatchPolicy().retry_interval_s,
                "stale_after_s": DispatchPolicy().stale_after_s,
            },
            "max_steps_per_tick": MAX_STEPS_PER_TICK,
            "machine": {key: machine[key] for key in ("cpu", "nproc", "kernel", "python")},
        },
        "results": summarise(runs),
        "seeds": {str(seed): per for seed, per in runs.items()},
        "checks": checks,
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    common.write_part("dispatch_quality", began, part)
    assert checks["replay_agrees_with_database"] == checks["replays"], checks
    return part


def main() -> None:
    common.exit_cleanly_on_sigterm()
    configure_logging(level="WARNING")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=SEED, help="first seed")
    parser.add_argument("--seeds", type=int, default=SEEDS, help="how many seeds")
    args = parser.parse_args()
    seeds = [args.seed + i for i in range(args.seeds)]
    common.banner(
        f"2c. dispatch quality: {RIDES} rides, {DRIVERS} drivers, {DEMAND_MIN:g} simulated "
        f"minutes, seeds {seeds}"
    )
    part = run(seeds)
    print(json.dumps(part["checks"]))
    for strategy, rows in part["results"].items():
        print(
            f"   {strategy:10s} match rate {rows['match_rate']['median']:.3f}  "
            f"pickup {rows['pickup_s_mean']['median']:.0f} s  "
            f"wait {rows['wait_s_mean']['median']:.0f} s"
        )
    print(f"   took {part['wall_s']} s")


if __name__ == "__main__":
    main()
