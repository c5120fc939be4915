"""The simulator's own parts: cars moving along streets, drivers' seeded habits, and what
the recorder keeps."""

from __future__ import annotations

import random

import pytest

from ridehail.kernel.geo import haversine_m
from ridehail.simulator.agents import Behaviour, Phase, idle_plan, new_driver
from ridehail.simulator.client import template
from ridehail.simulator.metrics import Latencies, Recorder, percentile
from ridehail.streets import generate_city

CITY = generate_city(seed=4, width_m=4000, height_m=4000)
GRAPH = CITY.graph


def test_a_car_moves_along_its_route_at_road_speed() -> None:
    driver = new_driver(0, seed=1, node=0, behaviour=Behaviour(), duration_s=600)
    route = GRAPH.route(0, GRAPH.node_count - 1)
    assert route is not None
    driver.drive(GRAPH, route.nodes, now_s=100.0)
    assert driver.position(GRAPH, 100.0) == GRAPH.point(0)
    assert not driver.arrived(100.0 + route.time_s - 1)
    assert driver.arrived(100.0 + route.time_s)
    assert driver.position(GRAPH, 100.0 + route.time_s + 50) == GRAPH.point(route.nodes[-1])
    # Halfway in time, the car is somewhere between the ends, and it never jumps: a second
    # of driving covers at most a second at the fastest road's speed.
    top = max(GRAPH.speed_mps)
    previous = driver.position(GRAPH, 100.0)
    for t in range(1, int(route.time_s)):
        here = driver.position(GRAPH, 100.0 + t)
        assert haversine_m(*previous, *here) <= top * (1 + 1e-4)
        previous = here
    # Re-routed mid-way, it starts from where it stands.
    mid = 100.0 + route.time_s / 2
    node_then = driver.node_now(mid)
    back = GRAPH.route(node_then, 0)
    assert back is not None
    driver.drive(GRAPH, back.nodes, mid)
    assert driver.position(GRAPH, mid) == GRAPH.point(node_then)


def test_drivers_habits_are_seeded() -> None:
    b = Behaviour()
    one = [new_driver(i, seed=9, node=0, behaviour=b, duration_s=3600) for i in range(50)]
    two = [new_driver(i, seed=9, node=0, behaviour=b, duration_s=3600) for i in range(50)]
    assert [(d.accept_p, d.joins_s, d.leaves_s) for d in one] == [
        (d.accept_p, d.joins_s, d.leaves_s) for d in two
    ]
    other = [new_driver(i, seed=10, node=0, behaviour=b, duration_s=3600) for i in range(50)]
    assert [d.accept_p for d in other] != [d.accept_p for d in one]
    assert all(b.accept_low <= d.accept_p <= b.accept_high for d in one)
    assert any(d.joins_s > 0 for d in one) and any(d.leaves_s < 3600 for d in one)
    assert all(d.phase is Phase.OFF for d in one)


def test_idle_drivers_wait_or_cruise_nearby() -> None:
    behaviour = Behaviour(cruise_share=0.5, cruise_limit_s=120.0)
    driver = new_driver(3, seed=2, node=GRAPH.nearest_node(CITY.center), behaviour=behaviour,
                        duration_s=600)  # fmt: skip
    cruises = waits = 0
    for t in range(0, 4000, 200):
        now = float(t)
        plan = idle_plan(driver, GRAPH, behaviour, now_s=now)
        if "cruise" in plan:
            cruises += 1
            # A drive to a spot within the cruise budget, starting now, ending where it said.
            assert driver.leg is not None and driver.leg.start_s == now
            assert driver.leg.nodes[-1] == plan["cruise"]
            assert 0 < driver.leg.offsets_s[-1] <= behaviour.cruise_limit_s
            assert driver.idle_until_s == driver.leg.end_s
        else:
            waits += 1
            # Parked where it stands, for a wait drawn from the behaviour's range.
            assert driver.leg is None
            low, high = behaviour.wait_s
            assert now + low <= plan["wait_until"] <= now + high
    assert cruises and waits


def test_percentiles_reservoir_and_timeline() -> None:
    assert percentile([], 50) is None
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    lat = Latencies()
    rng = random.Random(1)
    for v in range(10_000):
        lat.add(float(v), rng)
    assert lat.count == 10_000 and len(lat.samples) == 2_000 and lat.max_ms == 9_999.0
    # A uniform reservoir: the kept samples' median is near the stream's.
    assert lat.as_json()["p50"] == pytest.approx(5_000, rel=0.1)

    rec = Recorder(bucket_s=10.0, seed=1)
    rec.count(1.0, "requests")
    rec.count(25.0, "requests")
    rec.levels(2.0, drivers_online=5, drivers_busy=1, riders_waiting=0)
    rec.request("POST /api/v1/rides", 3.0, 202, 1.0, "")
    rec.request("POST /api/v1/rides", 9.0, 409, 2.0, "conflict")
    timeline = rec.timeline()
    assert [b["requests"] for b in timeline] == [1, 0, 1]
    # Levels carry forward into buckets where nothing was written.
    assert [b["drivers_online"] for b in timeline] == [5, 5, 5]
    out = rec.as_json()
    assert out["errors"]["by_endpoint"] == {"POST /api/v1/rides": {"409": 1}}
    assert out["latency_ms"]["POST /api/v1/rides"]["count"] == 2


def test_endpoints_are_named_by_template() -> None:
    assert template("/api/v1/rides/ride_01abc:accept") == "/api/v1/rides/{id}:accept"
    assert template("/api/v1/drivers/drv_0x9/location") == "/api/v1/drivers/{id}/location"
    assert template("/api/v1/rides") == "/api/v1/rides"


def test_parts_of_one_fleet_merge_into_one_run() -> None:
    def part(n: int, rides: int, online: int) -> dict[str, object]:
        rec = Recorder(bucket_s=10.0, seed=n)
        for i in range(rides):
            rec.count(1.0 + i, "requests")
            rec.request("POST /api/v1/rides", float(10 * n + i), 202, 1.0, "")
        rec.request("POST /api/v1/rides/{id}:accept", 5.0, 409, 2.0, "conflict")
        rec.levels(5.0, drivers_online=online, drivers_busy=1, riders_waiting=0)
        return {
            "version": 1,
            "label": "sequential",
            "config": {"seed": 1, "part": n, "parts": 2},
            "wall_s": 10.0 + n,
            **rec.as_json(),
            "drivers": {"positions": [[60.0, 25.0]] * online},
            "surge": [],
        }

    from ridehail.simulator.metrics import merge_parts

    merged = merge_parts([part(0, 3, 4), part(1, 2, 6)])
    assert merged["wall_s"] == 11.0 and merged["config"]["parts"] == 2
    assert merged["timeline"][0]["requests"] == 5
    assert merged["timeline"][0]["drivers_online"] == 10
    assert merged["latency_ms"]["POST /api/v1/rides"]["count"] == 5
    assert merged["latency_ms"]["POST /api/v1/rides"]["p50"] == 2.0  # of 0, 1, 2, 10, 11
    assert merged["errors"]["count"] == 2
    assert merged["errors"]["by_endpoint"] == {"POST /api/v1/rides/{id}:accept": {"409": 2}}
    assert len(merged["drivers"]["positions"]) == 10
    assert merged["drivers"]["busy_share_by_bucket"] == [0.2]


async def test_a_slow_service_gets_fewer_location_reports_not_a_queue() -> None:
    import asyncio

    from ridehail.simulator.engine import SimConfig, Simulation

    class StuckSocket:
        def __init__(self) -> None:
            self.release = asyncio.Event()
            self.sent: list[str] = []

        async def send(self, frame: str) -> None:
            await self.release.wait()
            self.sent.append(frame)

    sim = Simulation(SimConfig(drivers=1), CITY, "http://127.0.0.1:9")
    driver = new_driver(0, seed=1, node=0, behaviour=Behaviour(), duration_s=60)
    socket = StuckSocket()
    sim.sockets[0] = socket  # type: ignore[assignment]
    for _ in range(5):
        sim._report(driver, 0.0)
        await asyncio.sleep(0)
    assert driver.reporting and sim.skipped_reports == 4 and len(sim._tasks) == 1
    socket.release.set()
    while sim._tasks:
        await asyncio.sleep(0.01)
    assert len(socket.sent) == 1 and not driver.reporting
    sim._report(driver, 1.0)
    while sim._tasks:
        await asyncio.sleep(0.01)
    assert len(socket.sent) == 2
    await sim.client.close()
