"""The simulation: a fleet of drivers and a stream of riders in one city, driving the real
service through its public API only (HTTP and WebSockets), in simulated time.

Time runs ``time_scale`` times faster than the wall clock: cars move that much further per
wall second and decisions come that much sooner, while the service keeps its own (wall)
timers. Randomness is seeded: the same seed gives the same city, demand, trip ends and
each driver's habits; what the service answers (who gets which offer, when) can still
differ between runs, as it would for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidMessage

from ridehail.kernel.geo import haversine_m
from ridehail.simulator.agents import Behaviour, Driver, Phase, idle_plan, new_driver, spread
from ridehail.simulator.client import ApiClient
from ridehail.simulator.metrics import Recorder, RideRecord
from ridehail.streets import City, DemandProfile, RoadNetworkEta, TripSampler

DRIVER_STREAM = "/api/v1/drivers/{}/stream"


@dataclass(frozen=True)
class SimConfig:
    drivers: int = 300
    #: Simulated seconds the run lasts.
    duration_s: float = 900.0
    time_scale: float = 10.0
    seed: int = 1
    #: Rider accounts (each has at most one ride at a time); default: one per driver.
    riders: int | None = None
    #: Ride requests per simulated minute at the peaks; default: one per 20 drivers.
    peak_per_min: float | None = None
    start_hour: float = 7.5
    #: Wall seconds between a driver's location reports.
    report_every_s: float = 3.0
    tick_s: float = 0.2
    #: Simulated seconds a rider waits for a driver before cancelling.
    patience_s: tuple[float, float] = (240.0, 600.0)
    concurrency: int = 128
    behaviour: Behaviour = field(default_factory=Behaviour)
    label: str = "run"
    #: This process simulates part ``part`` (0-based) of ``parts``: the drivers and the
    #: requests whose index is ``part`` modulo ``parts`` (several processes split a fleet).
    part: int = 0
    parts: int = 1
    strategy: str = "unknown"
    #: How the service estimates pickup times, when known ("straight_line", "road_network").
    server_eta: str = "unknown"
    city_kind: dict[str, Any] = field(default_factory=lambda: {"kind": "generated", "seed": 1})

    @property
    def rider_accounts(self) -> int:
        total = self.riders if self.riders is not None else max(20, self.drivers)
        return max(10, total // self.parts)

    @property
    def peak(self) -> float:
        return self.peak_per_min if self.peak_per_min is not None else max(1.0, self.drivers / 20)


@dataclass
class Rider:
    index: int
    rider_id: str
    token: str


class Simulation:
    def __init__(
        self,
        config: SimConfig,
        city: City,
        url: str,
        *,
        admin: tuple[str, str] | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.city = city
        self.graph = city.graph
        self.url = url
        self.admin = admin
        self.on_progress = on_progress
        self.recorder = Recorder(bucket_s=max(10.0, config.duration_s / 60), seed=config.seed)
        self.road_eta = RoadNetworkEta(self.graph)
        self.sampler = TripSampler(city)
        self.drivers: list[Driver] = []
        self.riders: list[Rider] = []
        self.free_riders: deque[int] = deque()
        self.ride_rider: dict[str, int] = {}
        self.sockets: dict[int, ClientConnection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._t0 = 0.0
        self._run_id = f"{config.seed}-{int(time.time() * 1000) % 10**9}"
        self.client = ApiClient(url, self.recorder, self.now, max_connections=config.concurrency)
        self.started_at = datetime.now(UTC)
        self.unserved = 0
        #: Location reports not sent because the previous one was still on its way.
        self.skipped_reports = 0
        #: Drivers left out because their account could not be made.
        self.lost_drivers = 0
        #: Driver streams the service closed during the run, and streams opened again.
        self.streams_dropped = 0
        self.streams_reopened = 0

    # --- the clock ---------------------------------------------------------------------

    def now(self) -> float:
        """Simulated seconds since the run started."""
        if not self._t0:
            return 0.0
        return (time.monotonic() - self._t0) * self.config.time_scale

    async def sleep_sim(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.config.time_scale)

    def spawn(self, work: Coroutine[Any, Any, Any], *, bounded: bool = True) -> None:
        """Run ``work`` in the background; ``bounded`` work waits for one of the
        ``concurrency`` slots (HTTP calls), unbounded work does not (stream frames: cheap,
        and already one per driver at a time)."""

        async def guarded() -> None:
            try:
                if bounded:
                    async with self._slots:
                        await work
                else:
                    await work
            finally:
                work.close()  # a no-op once it ran; frees it if cancelled before it started

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.recorder.request("simulator", 0.0, 0, self.now(), repr(task.exception()))

    # --- set-up ------------------------------------------------------------------------

    async def setup(self, progress: Callable[[str, int, int], None] | None = None) -> None:
        cfg = self.config
        rng = random.Random(f"{cfg.seed}:placement")  # noqa: S311 - a seeded simulation
        starts = spread(self.graph, [self.sampler.point(rng) for _ in range(cfg.drivers)])
        self.drivers = [
            new_driver(
                i, seed=cfg.seed, node=starts[i], behaviour=cfg.behaviour, duration_s=cfg.duration_s
            )
            for i in range(cfg.drivers)
            if i % cfg.parts == cfg.part
        ]
        done = 0

        async def make_driver(d: Driver) -> None:
            nonlocal done
            vehicle = {"make": "Sim", "model": "Car", "plate": f"SIM-{d.index}", "seats": 4}
            made = await self._sign_up(
                "driver", d.index, license_number=f"L{d.index}", vehicle=vehicle
            )
            if made is not None:
                d.driver_id, d.token = made
            done += 1
            if progress:
                progress("accounts", done, len(self.drivers) + cfg.rider_accounts)

        async def make_rider(i: int) -> None:
            nonlocal done
            made = await self._sign_up("rider", i)
            if made is not None:
                self.riders.append(Rider(i, *made))
            done += 1
            if progress:
                progress("accounts", done, len(self.drivers) + cfg.rider_accounts)

        jobs = [make_driver(d) for d in self.drivers] + [
            make_rider(i) for i in range(cfg.rider_accounts)
        ]
        await _bounded(jobs, 32)
        # A driver whose account could not be made (after retries) is not in the fleet.
        self.lost_drivers = sum(1 for d in self.drivers if not d.token)
        self.drivers = [d for d in self.drivers if d.token]
        self.riders.sort(key=lambda r: r.index)
        self.free_riders.extend(range(len(self.riders)))
        # The shift starts before the clock does: the drivers on from the start are online
        # (stream open, first position sent) when the first rider asks.
        await _bounded([self._go_online(d) for d in self.drivers if d.joins_s == 0], 32)
        if self.admin is not None:
            answer = await self.client.call(
                "POST",
                "/api/v1/auth/token",
                json_body={"email": self.admin[0], "password": self.admin[1]},
            )
            self._admin_token: str | None = str(answer.body["access_token"]) if answer.ok else None
        else:
            self._admin_token = None

    async def _sign_up(self, role: str, index: int, **extra: Any) -> tuple[str, str] | None:
        """An account, tried a few times (a loaded service may drop a connection); None
        if it cannot be made: the run goes on without that user, and says so."""
        for attempt in range(4):
            try:
                return await self.client.sign_up(role, index, self._run_id, **extra)
            except (RuntimeError, OSError) as exc:
                last = exc
                await asyncio.sleep(0.5 * 2**attempt)
        self.recorder.request(f"sign-up {role}", 0.0, 0, self.now(), repr(last))
        return None

    # --- the run -----------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        cfg = self.config
        demand_rng = random.Random(f"{cfg.seed}:demand")  # noqa: S311
        profile = DemandProfile(peak_per_min=cfg.peak)
        every = profile.arrivals(demand_rng, start_h=cfg.start_hour, minutes=cfg.duration_s / 60)
        all_trips = [self.sampler.trip(demand_rng) for _ in every]
        all_patience = [demand_rng.uniform(*cfg.patience_s) for _ in every]
        mine = [i for i in range(len(every)) if i % cfg.parts == cfg.part]
        arrivals = [every[i] for i in mine]
        trips = [all_trips[i] for i in mine]
        patience = [all_patience[i] for i in mine]
        self._t0 = time.monotonic()
        wall_start = time.monotonic()
        # Reports spread evenly over the interval, not all at once.
        spacing = cfg.report_every_s / max(1, len(self.drivers))
        next_report = {d.index: self._t0 + n * spacing for n, d in enumerate(self.drivers)}
        last_progress = 0.0
        due = 0
        while (now := self.now()) < cfg.duration_s:
            while due < len(arrivals) and arrivals[due] <= now:
                self.spawn(self._request(arrivals[due], trips[due], patience[due]))
                due += 1
            wall = time.monotonic()
            for d in self.drivers:
                self._step(d, now)
                if wall >= next_report[d.index] and d.phase is not Phase.OFF:
                    next_report[d.index] = wall + cfg.report_every_s
                    self._report(d, now)
            self._levels(now)
            if self.on_progress and wall - last_progress >= 1.0:
                last_progress = wall
                self.on_progress(self.snapshot(now))
            await asyncio.sleep(cfg.tick_s)
        return await self._finish(time.monotonic() - wall_start)

    def _levels(self, now: float) -> None:
        online = sum(1 for d in self.drivers if d.phase is not Phase.OFF)
        busy = sum(
            1 for d in self.drivers if d.phase in (Phase.TO_PICKUP, Phase.AT_PICKUP, Phase.ON_TRIP)
        )
        waiting = sum(
            1
            for r in self.recorder.rides.values()
            if r.matched_s is None and r.outcome == "unfinished"
        )
        self.recorder.levels(now, drivers_online=online, drivers_busy=busy, riders_waiting=waiting)

    def snapshot(self, now: float) -> dict[str, Any]:
        rides = self.recorder.rides.values()
        latency = self.recorder.latency
        return {
            "t_s": now,
            "duration_s": self.config.duration_s,
            "requests": len(self.recorder.rides),
            "matched": sum(1 for r in rides if r.matched_s is not None),
            "completed": sum(1 for r in rides if r.outcome == "completed"),
            "cancelled": sum(1 for r in rides if r.outcome == "rider_cancelled"),
            "no_drivers": sum(1 for r in rides if r.outcome == "no_drivers"),
            "waiting": sum(1 for r in rides if r.matched_s is None and r.outcome == "unfinished"),
            "online": sum(1 for d in self.drivers if d.phase is not Phase.OFF),
            "busy": sum(
                1
                for d in self.drivers
                if d.phase in (Phase.TO_PICKUP, Phase.AT_PICKUP, Phase.ON_TRIP)
            ),
            "errors": self.recorder.error_count,
            "p99_ms": {
                k: v.as_json()["p99"] for k, v in latency.items() if k.startswith(("PUT", "POST"))
            },
        }

    # --- drivers -----------------------------------------------------------------------

    def _step(self, d: Driver, now: float) -> None:
        """Move ``d`` on by what it is doing; API calls go to background tasks (``busy``
        holds any new decision until the call is answered)."""
        if d.busy:
            return
        if d.phase is Phase.OFF:
            if d.joins_s <= now < d.leaves_s:
                self._call(d, self._go_online(d))
        elif d.phase is Phase.IDLE:
            self._step_idle(d, now)
        elif d.phase is Phase.TO_PICKUP:
            if d.give_back_s is not None and now >= d.give_back_s:
                self._call(d, self._give_back(d))
            elif d.arrived(now):
                d.finish_leg()
                self._call(d, self._arrive(d))
        elif d.phase is Phase.AT_PICKUP:
            if now >= d.board_until_s:
                self._call(d, self._start(d))
        elif d.phase is Phase.ON_TRIP and d.arrived(now):
            d.finish_leg()
            self._call(d, self._complete(d))

    def _step_idle(self, d: Driver, now: float) -> None:
        if now >= d.leaves_s:
            self._call(d, self._go_offline(d))
        elif now >= d.idle_until_s:
            if d.arrived(now):
                d.finish_leg()
            idle_plan(d, self.graph, self.config.behaviour, now)

    def _call(self, d: Driver, work: Coroutine[Any, Any, None]) -> None:
        d.busy = True
        self.spawn(work)

    def _report(self, d: Driver, now: float) -> None:
        """Send the driver's position as a stream frame, unless the last one is still on
        its way: a slow service then gets fewer reports, not an ever-growing queue."""
        ws = self.sockets.get(d.index)
        if ws is None:
            # Online without a stream: the service closed it (a restart, a replaced
            # worker). A driver's app opens it again, and so does this one, with a pause
            # between failed attempts.
            if not d.reopening and now >= d.reopen_at_s:
                d.reopening = True
                self.spawn(self._reopen(d))
            return
        if d.reporting:
            self.skipped_reports += 1
            return
        lat, lon = d.position(self.graph, now)
        frame = json.dumps({"type": "location", "latitude": lat, "longitude": lon})

        async def send() -> None:
            started = time.perf_counter()
            try:
                await ws.send(frame)
                status = 200
            except ConnectionClosed:
                status = 0
            finally:
                d.reporting = False
            ms = (time.perf_counter() - started) * 1000
            self.recorder.request("WS location frame", ms, status, self.now(), "")

        d.reporting = True
        # Not behind the HTTP calls' slots: a frame waiting there for seconds while the
        # service answers slowly was a report skipped (measured: 5,000 drivers sent a
        # third of their reports that way).
        self.spawn(send(), bounded=False)

    async def _open_stream(self, d: Driver) -> bool:
        """Open the driver's stream and start reading its offers; False (recorded) if the
        service did not take the connection."""
        started = time.perf_counter()
        try:
            ws = await self.client.socket(DRIVER_STREAM.format(d.driver_id), d.token)
        except (OSError, TimeoutError, InvalidHandshake, InvalidMessage) as exc:
            ms = (time.perf_counter() - started) * 1000
            self.recorder.request("WS connect", ms, 0, self.now(), repr(exc))
            return False
        self.sockets[d.index] = ws
        reader = asyncio.ensure_future(self._offers(d, ws))
        self._tasks.add(reader)
        reader.add_done_callback(self._tasks.discard)
        return True

    async def _reopen(self, d: Driver) -> None:
        try:
            if await self._open_stream(d):
                self.streams_reopened += 1
            else:  # try again a little later
                d.reopen_at_s = self.now() + 30.0 * d.rng.uniform(0.5, 1.5)
        finally:
            d.reopening = False

    async def _go_online(self, d: Driver) -> None:
        try:
            if d.index not in self.sockets and not await self._open_stream(d):
                # The service did not take the connection: try again a little later.
                d.joins_s = max(d.joins_s, self.now() + 30.0 * d.rng.uniform(0.5, 1.5))
                return
            lat, lon = d.position(self.graph, self.now())
            moved = await self.client.call(
                "PUT",
                f"/api/v1/drivers/{d.driver_id}/location",
                token=d.token,
                json_body={"latitude": lat, "longitude": lon},
            )
            online = await self.client.call(
                "PUT",
                f"/api/v1/drivers/{d.driver_id}/availability",
                token=d.token,
                json_body={"status": "available"},
            )
            if moved.ok and online.ok:
                d.phase = Phase.IDLE
                d.idle_until_s = self.now()
        finally:
            d.busy = False

    async def _go_offline(self, d: Driver) -> None:
        try:
            answer = await self.client.call(
                "PUT",
                f"/api/v1/drivers/{d.driver_id}/availability",
                token=d.token,
                json_body={"status": "offline"},
            )
            if answer.ok:
                d.phase = Phase.OFF
                d.joins_s = float("inf")  # the shift is over
        finally:
            d.busy = False

    async def _offers(self, d: Driver, ws: ClientConnection) -> None:
        try:
            await self._read_offers(d, ws)
        except asyncio.CancelledError:
            return  # the run is over
        # The service ended the stream: forget it, so that the driver opens a new one.
        if self.sockets.get(d.index) is ws:
            del self.sockets[d.index]
            self.streams_dropped += 1

    async def _read_offers(self, d: Driver, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") != "offer":
                    continue
                offer_id = str(message["offer_id"])
                if offer_id in d.offers_seen:
                    continue
                d.offers_seen.add(offer_id)
                self.spawn(self._consider(d, message))

    async def _consider(self, d: Driver, offer: dict[str, Any]) -> None:
        behaviour = self.config.behaviour
        await self.sleep_sim(d.rng.uniform(*behaviour.reaction_s))
        ride_id = str(offer["ride_id"])
        if d.phase is not Phase.IDLE or d.busy:
            return  # busy with something else: the offer expires
        d.busy = True
        try:
            if d.rng.random() >= d.accept_p:
                await self.client.call("POST", f"/api/v1/rides/{ride_id}:decline", token=d.token)
                return
            answer = await self.client.call(
                "POST", f"/api/v1/rides/{ride_id}:accept", token=d.token
            )
            if not answer.ok:
                return
            now = self.now()
            pickup = (offer["pickup"]["latitude"], offer["pickup"]["longitude"])
            dropoff = (offer["dropoff"]["latitude"], offer["dropoff"]["longitude"])
            here = d.position(self.graph, now)
            d.ride_id = ride_id
            d.pickup_node = self.graph.nearest_node(pickup)
            d.dropoff_node = self.graph.nearest_node(dropoff)
            route = self.graph.route(d.node_now(now), d.pickup_node)
            d.phase = Phase.TO_PICKUP
            d.drive(self.graph, route.nodes if route else (), now)
            d.give_back_s = (
                now + d.rng.uniform(10.0, 60.0)
                if d.rng.random() < behaviour.give_back_share
                else None
            )
            record = self.recorder.rides.get(ride_id)
            self.recorder.count(now, "matches")
            if record is not None:
                record.matched_s = now
                record.driver_distance_m = haversine_m(*here, *pickup)
                eta = offer.get("eta_s")
                record.straight_eta_s = float(eta) if eta is not None else None
                (road,) = self.road_eta.times_s([(here, pickup)], at=datetime.now(UTC))
                record.road_eta_s = road
        finally:
            d.busy = False

    async def _give_back(self, d: Driver) -> None:
        try:
            answer = await self.client.call(
                "POST",
                f"/api/v1/rides/{d.ride_id}:cancel",
                token=d.token,
                json_body={"reason": "simulated driver gave the ride back"},
            )
            d.give_back_s = None
            if answer.ok:
                record = self.recorder.rides.get(d.ride_id or "")
                if record is not None:
                    record.matched_s = None
                self.recorder.count(self.now(), "cancellations")
                self._idle(d)
        finally:
            d.busy = False

    def _idle(self, d: Driver) -> None:
        d.phase = Phase.IDLE
        d.ride_id = None
        d.idle_until_s = self.now()

    async def _arrive(self, d: Driver) -> None:
        try:
            self._report(d, self.now())
            answer = await self.client.call(
                "POST", f"/api/v1/rides/{d.ride_id}:arrive", token=d.token
            )
            now = self.now()
            if answer.ok:
                d.phase = Phase.AT_PICKUP
                d.board_until_s = now + d.rng.uniform(*self.config.behaviour.boarding_s)
                self.recorder.count(now, "pickups")
                record = self.recorder.rides.get(d.ride_id or "")
                if record is not None:
                    record.picked_up_s = now
            elif answer.status in (404, 409):  # the rider cancelled meanwhile
                self._idle(d)
        finally:
            d.busy = False

    async def _start(self, d: Driver) -> None:
        try:
            answer = await self.client.call(
                "POST", f"/api/v1/rides/{d.ride_id}:start", token=d.token
            )
            now = self.now()
            if answer.ok and d.dropoff_node is not None:
                d.phase = Phase.ON_TRIP
                route = self.graph.route(d.node_now(now), d.dropoff_node)
                d.drive(self.graph, route.nodes if route else (), now)
            elif answer.status in (404, 409):
                self._idle(d)
        finally:
            d.busy = False

    async def _complete(self, d: Driver) -> None:
        try:
            self._report(d, self.now())
            ride_id = d.ride_id or ""
            answer = await self.client.call(
                "POST", f"/api/v1/rides/{ride_id}:complete", token=d.token
            )
            now = self.now()
            if answer.ok or answer.status in (404, 409):
                record = self.recorder.rides.get(ride_id)
                if answer.ok and record is not None:
                    record.completed_s = now
                    record.outcome = "completed"
                    record.fare = (answer.body.get("fare") or {}).get("amount")
                    self.recorder.count(now, "completions")
                self._release_rider(ride_id)
                self._idle(d)
        finally:
            d.busy = False

    # --- riders ------------------------------------------------------------------------

    async def _request(
        self, at_s: float, trip: tuple[tuple[float, float], tuple[float, float]], patience_s: float
    ) -> None:
        """Rider demand arriving at ``at_s`` (simulated): request, then cancel if nobody
        has accepted within the rider's patience."""
        if not self.free_riders:
            self.unserved += 1
            return
        rider = self.riders[self.free_riders.popleft()]
        (a, b) = trip
        answer = await self.client.call(
            "POST",
            "/api/v1/rides",
            token=rider.token,
            json_body={
                "start_latitude": a[0],
                "start_longitude": a[1],
                "end_latitude": b[0],
                "end_longitude": b[1],
            },
        )
        if answer.status != 202:
            self.free_riders.append(rider.index)
            return
        ride_id = str(answer.body["ride_id"])
        self.ride_rider[ride_id] = rider.index
        self.recorder.rides[ride_id] = RideRecord(
            ride_id=ride_id, rider=rider.index, requested_s=at_s, origin=a, destination=b
        )
        self.recorder.count(at_s, "requests")
        await self.sleep_sim(at_s + patience_s - self.now())
        record = self.recorder.rides[ride_id]
        if record.matched_s is not None or record.outcome != "unfinished":
            return
        cancel = await self.client.call(
            "POST",
            f"/api/v1/rides/{ride_id}:cancel",
            token=rider.token,
            json_body={"reason": "waited too long"},
        )
        now = self.now()
        if cancel.ok and cancel.body.get("status") == "cancelled":
            record.outcome = "rider_cancelled"
            self.recorder.count(now, "cancellations")
            self._release_rider(ride_id)
            return
        ride = await self.client.call("GET", f"/api/v1/rides/{ride_id}", token=rider.token)
        if ride.ok and ride.body.get("status") == "no_drivers_available":
            record.outcome = "no_drivers"
            self.recorder.count(now, "no_drivers")
            self._release_rider(ride_id)

    def _release_rider(self, ride_id: str) -> None:
        index = self.ride_rider.pop(ride_id, None)
        if index is not None:
            self.free_riders.append(index)

    # --- the end -----------------------------------------------------------------------

    async def _finish(self, wall_s: float) -> dict[str, Any]:
        now = self.now()
        surge: list[dict[str, Any]] = []
        if self._admin_token:
            answer = await self.client.call("GET", "/api/v1/pricing/surge", token=self._admin_token)
            if answer.ok:
                surge = list(answer.body.get("cells", []))
        positions = [
            list(d.position(self.graph, now)) for d in self.drivers if d.phase is not Phase.OFF
        ]
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        # All sockets at once, bounded: one at a time took minutes with thousands of them.
        closing = [asyncio.ensure_future(ws.close()) for ws in self.sockets.values()]
        if closing:
            _, late = await asyncio.wait(closing, timeout=10)
            for task in late:
                task.cancel()
        await self.client.close()
        cfg = self.config
        timeline = self.recorder.timeline()
        busy_share = [
            (b.get("drivers_busy", 0) / b["drivers_online"]) if b.get("drivers_online") else 0.0
            for b in timeline
        ]
        return {
            "version": 1,
            "label": cfg.label,
            "config": {
                "seed": cfg.seed,
                "drivers": cfg.drivers,
                "part": cfg.part,
                "parts": cfg.parts,
                "riders": cfg.rider_accounts,
                "duration_s": cfg.duration_s,
                "time_scale": cfg.time_scale,
                "strategy": cfg.strategy,
                "server_eta": cfg.server_eta,
                "url": self.url,
                "city": cfg.city_kind,
                "peak_per_min": cfg.peak,
                "start_hour": cfg.start_hour,
                "report_every_s": cfg.report_every_s,
            },
            "started_at": self.started_at.isoformat(),
            "wall_s": round(wall_s, 2),
            **self.recorder.as_json(),
            "unserved_requests": self.unserved,
            "skipped_location_reports": self.skipped_reports,
            "lost_drivers": self.lost_drivers,
            "streams_dropped": self.streams_dropped,
            "streams_reopened": self.streams_reopened,
            "drivers": {"positions": positions, "busy_share_by_bucket": busy_share},
            "surge": surge,
            "summary": {},
        }


async def _bounded(jobs: Sequence[Awaitable[None]], limit: int) -> None:
    slots = asyncio.Semaphore(limit)

    async def one(job: Awaitable[None]) -> None:
        async with slots:
            await job

    await asyncio.gather(*(one(j) for j in jobs))


def write_metrics(metrics: dict[str, Any] | list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, separators=(",", ":")))
    return path
