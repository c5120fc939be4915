"""The Redis location store on a real three-master Redis Cluster.

On a cluster a script may touch one hash slot only, so the store splits each write into a
driver step and region steps, and fans searches out over the shards. These tests run that
path: a search across regions held by different masters, across the antimeridian, the
ingest rules, batches (compared with a single Redis), traces, forget, stale expiry and
announcements. The cluster is started once per session from the ``redis-server`` binary
(see ``tests/redis_servers.py``); without the binary the tests fail, they are not skipped.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import h3
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ridehail.kernel.geo import haversine_m, offset
from ridehail.locations.ports import LocationFix, Recorded, position_channel, position_message
from ridehail.locations.records import to_us
from ridehail.locations.redis_store import RedisLocationStore, _RegionOps, geo_score
from tests.redis_servers import Cluster, running_cluster

pytestmark = pytest.mark.redis

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
FRESH_SINCE = NOW - timedelta(seconds=60)
CENTRE = (52.520008, 13.404954)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(Path(tmp_path_factory.mktemp("redis-cluster"))) as started:
        yield started


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    await client.initialize()
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    """Each test's own keys; the cluster is thrown away with the session."""
    return f"rhtest:{uuid.uuid4().hex[:12]}:"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now.timestamp()


def make_store(client: RedisCluster, prefix: str, **options: object) -> RedisLocationStore:
    settings: dict[str, object] = {"announce_prefix": f"{prefix}rt:", "clock": NOW.timestamp}
    return RedisLocationStore(client, key_prefix=prefix, **{**settings, **options})  # type: ignore[arg-type]


def fix(driver_id: str, lat: float, lon: float, at_s: float = 0.0) -> LocationFix:
    return LocationFix(driver_id, lat, lon, NOW + timedelta(seconds=at_s))


async def ids_near(
    store: RedisLocationStore, at: tuple[float, float], radius_m: float, limit: int = 20
) -> list[str]:
    found = await store.nearest(
        latitude=at[0], longitude=at[1], radius_m=radius_m, limit=limit, fresh_since=FRESH_SINCE
    )
    return [hit.driver_id for hit in found]


async def test_a_cluster_client_takes_the_cluster_path(client: RedisCluster, prefix: str) -> None:
    store = make_store(client, prefix)
    await store.ping()
    assert await store.record(fix("d1", *CENTRE)) is Recorded.LIVE
    slots = {client.keyslot(store.state_key("d1")), client.keyslot(store.trace_key("d1"))}
    assert len(slots) == 1  # a driver's keys share a slot
    geo, seen = store.region_keys(store.region_of(*CENTRE))
    assert client.keyslot(geo) == client.keyslot(seen)
    assert await client.zscore(seen, "d1") == NOW.timestamp() * 1000
    assert await ids_near(store, CENTRE, 1_000) == ["d1"]


def border_between_masters(
    client: RedisCluster, store: RedisLocationStore
) -> tuple[list[tuple[float, float]], int]:
    """Points every 100 m east of the centre, and the index of the first one across a
    region border whose two sides live on different masters."""
    east = [offset(*CENTRE, north_m=0, east_m=100.0 * n) for n in range(3_000)]
    for n in range(20, len(east) - 20):
        west_region, east_region = store.region_of(*east[n - 1]), store.region_of(*east[n])
        if west_region == east_region:
            continue
        west_node = client.get_node_from_key(store.region_keys(west_region)[0])
        east_node = client.get_node_from_key(store.region_keys(east_region)[0])
        assert west_node is not None and east_node is not None
        if west_node.name != east_node.name:
            return east, n
    raise AssertionError("no region border between two masters within 300 km")


async def test_search_merges_regions_held_by_different_masters(
    client: RedisCluster, prefix: str
) -> None:
    store = make_store(client, prefix)
    east, border = border_between_masters(client, store)
    west_key = store.region_keys(store.region_of(*east[border - 1]))[0]
    east_key = store.region_keys(store.region_of(*east[border]))[0]
    slot_west = await client.execute_command("CLUSTER KEYSLOT", west_key)
    slot_east = await client.execute_command("CLUSTER KEYSLOT", east_key)
    assert client.nodes_manager.get_node_from_slot(slot_west).name != (
        client.nodes_manager.get_node_from_slot(slot_east).name
    )

    query = east[border]
    placed = {f"w{k}": east[border - 1 - 3 * k] for k in range(4)}
    placed |= {f"e{k}": east[border + 1 + 3 * k] for k in range(4)}
    await store.record_many([fix(driver, *point) for driver, point in placed.items()])
    expected = sorted(placed, key=lambda d: (haversine_m(*query, *placed[d]), d))
    found = await store.nearest(
        latitude=query[0], longitude=query[1], radius_m=2_000, limit=10, fresh_since=FRESH_SINCE
    )
    assert [hit.driver_id for hit in found] == expected
    assert {d[0] for d in expected[:2]} == {"w", "e"}  # the nearest two: one per side
    assert await ids_near(store, query, 2_000, limit=3) == expected[:3]
    assert await store.current("w0") == fix("w0", *placed["w0"])


@pytest.mark.parametrize("k", [1, 6], ids=["few cells", "many cells"])
async def test_drivers_in_cells_across_masters(
    client: RedisCluster, prefix: str, k: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Supply per cell around a region border whose sides live on different masters: cells
    searched around one by one (few) or regions read whole, page by page (many)."""
    store = make_store(client, prefix)
    east, border = border_between_masters(client, store)
    rng = random.Random(k)
    spread = [(rng.uniform(-3_000, 3_000), rng.uniform(-3_000, 3_000)) for _ in range(1_500)]
    placed = {
        f"d{i}": offset(*east[border], north_m=n, east_m=e) for i, (n, e) in enumerate(spread)
    }
    await store.record_many([fix(driver, *point) for driver, point in placed.items()])
    assert len({store.region_of(*point) for point in placed.values()}) >= 2
    cells = set(h3.grid_disk(h3.latlng_to_cell(*east[border], 8), k))
    expected = {
        d: h3.latlng_to_cell(*p, 8) for d, p in placed.items() if h3.latlng_to_cell(*p, 8) in cells
    }
    assert {store.region_of(*placed[d]) for d in expected} >= {
        store.region_of(*east[border - 1]),
        store.region_of(*east[border]),
    }
    scans: list[str] = []
    scan_region = store._scan_region

    async def counted(region: str, *args: Any) -> None:
        scans.append(region)
        await scan_region(region, *args)

    monkeypatch.setattr(store, "_scan_region", counted)
    assert await store.drivers_in_cells(cells, fresh_since=FRESH_SINCE) == expected
    # Seven cells are searched around; 127 make both border regions worth reading whole.
    if k == 1:
        assert scans == []
    else:
        assert set(scans) >= {store.region_of(*east[border - 1]), store.region_of(*east[border])}
    # A search returning that many drivers reads their states across hundreds of slots
    # (it ran out of connections when each slot's MGET was a call of its own).
    everyone = await store.nearest(
        latitude=east[border][0],
        longitude=east[border][1],
        radius_m=10_000,
        limit=2_000,
        fresh_since=FRESH_SINCE,
    )
    assert {hit.driver_id for hit in everyone} == set(placed)


async def test_search_across_the_antimeridian(client: RedisCluster, prefix: str) -> None:
    store = make_store(client, prefix)
    # At the equator one region straddles the antimeridian; a little north two regions
    # meet on it. Both must work.
    lat = next(
        n / 10
        for n in range(1, 600)
        if store.region_of(n / 10, 179.99) != store.region_of(n / 10, -179.99)
    )
    for row, at in enumerate((0.0, lat)):
        east, west = f"east{row}", f"west{row}"
        await store.record_many([fix(east, at, 179.99), fix(west, at, -179.99)])
        for edge in (180.0, -180.0):
            found = await store.nearest(
                latitude=at, longitude=edge, radius_m=5_000, limit=5, fresh_since=FRESH_SINCE
            )
            assert sorted(hit.driver_id for hit in found) == [east, west]
            assert [hit.distance_m for hit in found] == pytest.approx([1_112, 1_112], abs=2)
        assert await ids_near(store, (at, 179.999), 5_000) == [east, west]
        assert await ids_near(store, (at, -179.999), 5_000) == [west, east]


async def test_ingest_rules_on_the_cluster(client: RedisCluster, prefix: str) -> None:
    store = make_store(client, prefix, max_speed_mps=250 / 3.6)
    north = offset(*CENTRE, north_m=100, east_m=0)
    far = offset(*CENTRE, north_m=1_000, east_m=0)
    assert await store.record(fix("d1", *CENTRE, at_s=10)) is Recorded.LIVE
    assert await store.record(fix("d1", *north, at_s=10)) is Recorded.OLDER  # same instant
    assert await store.record(fix("d1", *north, at_s=5)) is Recorded.OLDER  # late
    assert await store.record(fix("d1", *far, at_s=15)) is Recorded.IMPLAUSIBLE  # 720 km/h
    assert await store.current("d1") == fix("d1", *CENTRE, at_s=10)
    assert await store.record(fix("d1", *north, at_s=20)) is Recorded.LIVE
    assert await store.current("d1") == fix("d1", *north, at_s=20)
    away = (CENTRE[0] + 0.5, CENTRE[1])  # 55 km: another region, fine two hours later
    assert await store.record(fix("d1", *away, at_s=7_200)) is Recorded.LIVE
    assert await ids_near(store, CENTRE, 2_000) == []
    assert await ids_near(store, away, 2_000) == ["d1"]
    here_geo, here_seen = store.region_keys(store.region_of(*CENTRE))
    assert await client.exists(here_geo) == 0  # left the old region
    assert await client.exists(here_seen) == 0
    await store.record(fix("d1", 89.0, 0.0, at_s=99_000))  # polar, a day later: no region
    assert await ids_near(store, away, 2_000) == []
    assert (await store.current("d1") or fix("x", 0, 0)).latitude == 89.0


async def test_record_many_matches_a_single_redis(
    client: RedisCluster, prefix: str, redis_url: str, redis_prefix: str
) -> None:
    """The same messy stream gives the same outcomes, live positions and traces on the
    cluster (record_many, and record one by one) as on one Redis."""
    rng = random.Random(4)
    far = (CENTRE[0] + 0.4, CENTRE[1] + 0.3)
    fixes: list[LocationFix] = []
    for _ in range(300):
        base = far if rng.random() < 0.1 else CENTRE
        lat, lon = offset(*base, north_m=rng.uniform(-900, 900), east_m=rng.uniform(-900, 900))
        at = NOW + timedelta(microseconds=rng.randrange(-20_000_000, 300_000_000))
        fixes.append(LocationFix(f"d{rng.randrange(5)}", lat, lon, at, heading=rng.random()))
    fixes += [fixes[7], fix("d2", *far, at_s=5_000)]
    single_client = aioredis.from_url(redis_url)
    try:
        stores = {
            "single": RedisLocationStore(
                single_client, key_prefix=redis_prefix, max_speed_mps=40.0, clock=NOW.timestamp
            ),
            "batched": make_store(client, f"{prefix}b:", max_speed_mps=40.0),
            "one by one": make_store(client, f"{prefix}o:", max_speed_mps=40.0),
        }
        for store in stores.values():
            await store.begin_trace("d3")
        outcomes = {
            "single": await stores["single"].record_many(fixes),
            "batched": await stores["batched"].record_many(fixes),
            "one by one": [await stores["one by one"].record(f) for f in fixes],
        }
        assert outcomes["batched"] == outcomes["single"]
        assert outcomes["one by one"] == outcomes["single"]
        assert set(outcomes["single"]) == {Recorded.LIVE, Recorded.OLDER, Recorded.IMPLAUSIBLE}
        for driver in ("d0", "d1", "d2", "d3", "d4"):
            expected = await stores["single"].current(driver)
            assert await stores["batched"].current(driver) == expected
            assert await stores["one by one"].current(driver) == expected
        for point in (CENTRE, far):
            expected_ids = await ids_near(stores["single"], point, 3_000)
            assert await ids_near(stores["batched"], point, 3_000) == expected_ids
            assert await ids_near(stores["one by one"], point, 3_000) == expected_ids
        trace = await stores["single"].end_trace("d3")
        assert len(trace) > 30
        assert await stores["batched"].end_trace("d3") == trace
        assert await stores["one by one"].end_trace("d3") == trace
    finally:
        await single_client.aclose()


async def test_traces_and_forget_on_the_cluster(client: RedisCluster, prefix: str) -> None:
    store = make_store(client, prefix)
    await store.record(fix("d1", *CENTRE, at_s=0))  # before the trace: not part of it
    await store.begin_trace("d1")
    await store.record_many([fix("d1", *CENTRE, at_s=3), fix("d1", *CENTRE, at_s=1)])
    await store.trace_only(fix("d1", *CENTRE, at_s=2))
    await store.record(fix("d1", *CENTRE, at_s=3))  # an exact duplicate
    await store.forget("d1")
    assert await store.current("d1") is None
    assert await ids_near(store, CENTRE, 1_000) == []
    assert await client.exists(*store.region_keys(store.region_of(*CENTRE))) == 0
    await store.record(fix("d1", *CENTRE, at_s=4))  # back again: the trace still collects
    points = await store.end_trace("d1")
    assert [p.recorded_at for p in points] == [NOW + timedelta(seconds=s) for s in (1, 2, 3, 4)]
    assert await store.end_trace("d1") == []
    await store.record(fix("d1", *CENTRE, at_s=5))
    assert await client.exists(store.trace_key("d1")) == 0
    await store.forget("never-seen")


async def test_stale_drivers_are_pruned_on_the_cluster(client: RedisCluster, prefix: str) -> None:
    clock = Clock(NOW)
    store = make_store(client, prefix, stale_after_s=30, clock=clock)
    geo, seen = store.region_keys(store.region_of(*CENTRE))
    await store.record(fix("quiet", *CENTRE))
    for seconds in (10, 31):
        clock.now = NOW + timedelta(seconds=seconds)
        await store.record_many(
            [
                fix(f"busy{n}", *offset(*CENTRE, north_m=40.0 * n, east_m=0), seconds)
                for n in range(3)
            ]
        )
    assert await client.zscore(seen, "quiet") is None
    assert await client.zscore(geo, "quiet") is None
    assert await client.zcard(geo) == 3
    assert 0 < await client.pttl(geo) <= 60_000
    assert 0 < await client.pttl(store.state_key("busy0")) <= 24 * 3600 * 1000
    assert await store.current("quiet") is not None  # until its state's TTL


async def test_a_delayed_writer_cannot_undo_a_newer_position(
    client: RedisCluster, prefix: str
) -> None:
    """Old and new fixes of the same drivers race from two clients: the newest always wins
    the state, and search finds each driver once, where the state says."""
    other = RedisCluster(host="127.0.0.1", port=client.get_default_node().port)
    try:
        stores = [make_store(client, prefix), make_store(other, prefix)]
        away = (CENTRE[0] + 0.5, CENTRE[1])
        for n in range(20):
            new = fix(f"d{n}", *away, at_s=7_200)
            old = fix(f"d{n}", *CENTRE, at_s=1)
            first, second = (new, old) if n % 2 else (old, new)
            await asyncio.gather(stores[0].record(first), stores[1].record(second))
        for n in range(20):
            assert await stores[0].current(f"d{n}") == fix(f"d{n}", *away, at_s=7_200)
        assert await ids_near(stores[0], CENTRE, 5_000) == []
        assert sorted(await ids_near(stores[0], away, 5_000, limit=50)) == sorted(
            f"d{n}" for n in range(20)
        )
    finally:
        await other.aclose()


async def test_live_positions_are_announced_on_the_cluster(
    client: RedisCluster, cluster: Cluster, prefix: str
) -> None:
    store = make_store(client, prefix)
    listener = aioredis.Redis(host="127.0.0.1", port=cluster.ports[-1])
    pubsub = listener.pubsub()
    try:
        await pubsub.psubscribe(f"{prefix}rt:*")
        while await pubsub.get_message(timeout=1.0) is None:  # the subscription's ack
            pass
        sent = [fix("d1", *CENTRE, at_s=1), fix("d1", *CENTRE, at_s=2), fix("d2", *CENTRE)]
        for driver in ("d1", "d2"):
            await store.follow(driver, for_s=60)
        # d3 is not followed: nothing is published for it.
        await store.record_many([*sent, fix("d1", *CENTRE, at_s=0), fix("d3", *CENTRE)])
        received: list[tuple[str, str]] = []
        async with asyncio.timeout(5):
            while len(received) < 2:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message is not None:
                    channel = message["channel"].decode().removeprefix(f"{prefix}rt:")
                    received.append((channel, message["data"].decode()))
        # Nothing else follows: not d1's older fix, and not d3, whom nobody follows.
        quiet_until = asyncio.get_running_loop().time() + 0.3
        while asyncio.get_running_loop().time() < quiet_until:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if message is not None:
                channel = message["channel"].decode().removeprefix(f"{prefix}rt:")
                received.append((channel, message["data"].decode()))
        expected = [
            (position_channel(f.driver_id), json.dumps(position_message(f)))
            for f in (sent[1], sent[2])
        ]
        assert sorted(received) == sorted(expected)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await listener.aclose()


async def test_region_steps_compare_times_so_a_late_one_changes_nothing(
    client: RedisCluster, prefix: str
) -> None:
    """What a writer delayed between its driver step and its region steps sends, arriving
    after a newer fix went through both: a removal of the position it saw leave (older)
    and an addition of its own (older) position. Neither may touch the newer member."""
    store = make_store(client, prefix)
    region = store.region_of(*CENTRE)
    geo, seen = store.region_keys(region)
    newer = fix("d1", *CENTRE, at_s=20)
    await store.record(newer)
    before = (await client.zscore(geo, "d1"), await client.zscore(seen, "d1"))
    older_us = to_us(NOW + timedelta(seconds=10))
    late = [
        store._region_call(region, _RegionOps(leaving={"d1": older_us})),
        store._region_call(
            region,
            _RegionOps(
                arriving=["d1", geo_score(*offset(*CENTRE, north_m=900, east_m=0)), older_us]
            ),
        ),
    ]
    await store._run_cluster(late)
    assert (await client.zscore(geo, "d1"), await client.zscore(seen, "d1")) == before
    # The same removal carrying the member's own time does apply (the driver left).
    leaving = _RegionOps(leaving={"d1": to_us(newer.recorded_at)})
    await store._run_cluster([store._region_call(region, leaving)])
    assert await client.zscore(seen, "d1") is None
