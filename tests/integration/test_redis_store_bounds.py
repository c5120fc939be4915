"""The Redis location store stays bounded with no sweeper: what stops reporting falls out of
search and out of Redis, and a city's worth of updates leaves the key space flat.

The store's clock is injected and moved forward with the fixes' timestamps, so that hours
of reporting take a second; only the TTLs (which Redis counts in real time) need real waits,
and those are set to fractions of a second.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import h3.api.basic_int as h3
import pytest
import redis.asyncio as aioredis

from ridehail.kernel.geo import offset
from ridehail.locations.ports import LocationFix
from ridehail.locations.redis_store import RedisLocationStore

pytestmark = pytest.mark.redis

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CENTRE = (52.520008, 13.404954)


class Clock:
    """The store's notion of now; tests move it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now.timestamp()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


def region_centres(store: RedisLocationStore, count: int) -> list[tuple[float, float]]:
    """Centres of ``count`` neighbouring regions around CENTRE."""
    origin = h3.latlng_to_cell(*CENTRE, store_resolution(store))
    cells = [origin, *sorted(h3.grid_ring(origin, 1))][:count]
    return [h3.cell_to_latlng(cell) for cell in cells]


def store_resolution(store: RedisLocationStore) -> int:
    return h3.get_resolution(int(store.region_of(*CENTRE), 16))  # type: ignore[no-any-return]


def somewhere_in(centre: tuple[float, float], rng: random.Random) -> tuple[float, float]:
    """A point well inside the region around ``centre`` (res-5 cells are ~8 km across)."""
    return offset(*centre, north_m=rng.uniform(-2500, 2500), east_m=rng.uniform(-2500, 2500))


async def keys_under(client: aioredis.Redis, prefix: str) -> list[bytes]:
    """SCAN skips keys whose TTL has run out, even before Redis reclaims them."""
    return [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]


async def footprint(client: aioredis.Redis, prefix: str) -> tuple[int, int]:
    """(keys, summed MEMORY USAGE of every key, all elements sampled)."""
    keys = await keys_under(client, prefix)
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = await pipe.execute()
    return len(keys), sum(size or 0 for size in sizes)


async def test_a_city_of_roaming_drivers_keeps_keys_and_memory_flat(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    """1,000 drivers report every 5 s for 35 rounds, each time from a random one of four
    regions (so most writes move a driver between regions), 50 of them on trips that begin
    and end every ten rounds: after warm-up the key count is constant and memory flat."""
    clock = Clock(T0)
    store = RedisLocationStore(client, key_prefix=redis_prefix, stale_after_s=30, clock=clock)
    centres = region_centres(store, 4)
    rng = random.Random(1)
    drivers = [f"drv_{n:05d}" for n in range(1000)]
    seen: dict[int, tuple[int, int]] = {}
    for cycle in range(36):
        clock.now = T0 + timedelta(seconds=5 * cycle)
        if cycle % 10 == 0:
            for driver in drivers[:50]:
                await store.begin_trace(driver)
        fixes = [
            LocationFix(driver, *somewhere_in(rng.choice(centres), rng), clock.now)
            for driver in drivers
        ]
        await store.record_many(fixes)
        if cycle % 10 == 9:
            for driver in drivers[:50]:
                assert len(await store.end_trace(driver)) == 10
        if cycle in (5, 15, 25, 35):
            seen[cycle] = await footprint(client, redis_prefix)
            filed = [
                await client.zcard(store.region_keys(store.region_of(*centre))[0])
                for centre in centres
            ]
            assert sum(filed) == 1000  # each driver in one region only
    keys, memory = seen[5]
    assert keys == 1000 + 4 * 2 + 50  # states, 4 regions x (geo, seen), open traces
    for cycle in (15, 25, 35):
        assert seen[cycle][0] == keys
        assert seen[cycle][1] <= 1.1 * memory, seen
    found = await store.nearest(
        latitude=centres[0][0],
        longitude=centres[0][1],
        radius_m=50_000,
        limit=2000,
        fresh_since=clock.now,
    )
    assert len(found) == 1000


async def test_churning_drivers_leave_no_keys_behind(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    """Every round 200 new drivers report once and are never heard of again (no forget):
    their states expire and their region members are pruned by later writes, so the key
    space and the regions stay the size of the drivers still reporting."""
    clock = Clock(T0)
    per_round = 200
    store = RedisLocationStore(
        client, key_prefix=redis_prefix, stale_after_s=15, driver_ttl_s=0.1, clock=clock
    )
    centres = region_centres(store, 2)
    rng = random.Random(2)
    footprints: list[tuple[int, int]] = []
    largest_region = 0
    for cycle in range(20):
        clock.now = T0 + timedelta(seconds=10 * cycle)
        fixes = [
            LocationFix(f"c{cycle}_{n}", *somewhere_in(rng.choice(centres), rng), clock.now)
            for n in range(per_round)
        ]
        await store.record_many(fixes)
        footprints.append(await footprint(client, redis_prefix))
        for centre in centres:
            geo, seen = store.region_keys(store.region_of(*centre))
            assert await client.zcard(geo) == await client.zcard(seen)
            largest_region = max(largest_region, await client.zcard(seen))
        await asyncio.sleep(0.15)  # the states' TTL runs out in real time
    # This round's states (the last ones expired) plus two regions' two keys each.
    assert all(keys <= per_round + 4 for keys, _memory in footprints[4:])
    # Positions are kept three rounds (stale after 15 s, plus the 7.5 s by which seen times
    # may lag; rounds 10 s apart), then pruned.
    assert largest_region <= 3 * per_round
    assert footprints[-1][1] <= 1.2 * footprints[5][1], footprints


async def test_a_driver_who_stops_reporting_drops_out_without_forget(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    clock = Clock(T0)
    store = RedisLocationStore(client, key_prefix=redis_prefix, stale_after_s=30, clock=clock)
    geo, seen = store.region_keys(store.region_of(*CENTRE))

    async def others_report(at: datetime) -> None:
        await store.record_many(
            [
                LocationFix(f"busy{n}", *offset(*CENTRE, north_m=50 * n, east_m=0), at)
                for n in range(5)
            ]
        )

    async def nearby(now: datetime) -> list[str]:
        found = await store.nearest(
            latitude=CENTRE[0],
            longitude=CENTRE[1],
            radius_m=2_000,
            limit=10,
            fresh_since=now - timedelta(seconds=30),
        )
        return [hit.driver_id for hit in found]

    quiet = LocationFix("quiet", *offset(*CENTRE, north_m=20, east_m=0), T0)
    await store.record(quiet)
    await others_report(T0)
    assert (await nearby(T0))[:2] == ["busy0", "quiet"]
    clock.now = T0 + timedelta(seconds=31)
    assert "quiet" not in await nearby(clock.now)  # too old for search at once
    # Out of the region once older than the stale window plus the step by which ``seen``
    # times may lag (half the window): 45 s.
    for seconds in (10, 20, 31, 45):
        clock.now = T0 + timedelta(seconds=seconds)
        await others_report(clock.now)
        assert await client.zscore(seen, "quiet") is not None
    clock.now = T0 + timedelta(seconds=46)
    await others_report(clock.now)  # the next write in the region prunes it
    assert await client.zscore(seen, "quiet") is None
    assert await client.zscore(geo, "quiet") is None
    assert await client.zcard(geo) == 5
    assert await store.current("quiet") == quiet  # the state lives on until its TTL


async def test_regions_nobody_writes_to_and_silent_drivers_expire(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    """Region keys live twice the stale window after their last write, states
    ``driver_ttl_s`` after their driver's last live fix (both in Redis's real time)."""
    store = RedisLocationStore(
        client, key_prefix=redis_prefix, stale_after_s=0.05, driver_ttl_s=0.4
    )
    await store.record(LocationFix("d1", *CENTRE, datetime.now(UTC)))
    geo, seen = store.region_keys(store.region_of(*CENTRE))
    assert 0 < await client.pttl(geo) <= 100
    assert 0 < await client.pttl(seen) <= 100
    assert 0 < await client.pttl(store.state_key("d1")) <= 400
    await asyncio.sleep(0.2)
    assert await client.exists(geo, seen) == 0
    assert await store.current("d1") is not None
    await asyncio.sleep(0.3)
    assert await store.current("d1") is None
    assert await keys_under(client, redis_prefix) == []


async def test_a_reporting_drivers_state_lives_on_and_a_silent_ones_expires(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    """The TTL is set when the state is created and renewed when a live fix enters a new
    half-TTL step of fix time; rewrites within a step keep it (they are cheaper). So a
    driver who keeps reporting never expires, and one who stops does within a TTL."""
    store = RedisLocationStore(client, key_prefix=redis_prefix, driver_ttl_s=0.6)
    key = store.state_key("d1")
    away = (CENTRE[0] + 0.5, CENTRE[1])  # another region
    step = timedelta(seconds=0.3)
    now = datetime.now(UTC)
    start = datetime.fromtimestamp(0, UTC) + step * (
        (now - datetime.fromtimestamp(0, UTC)) // step + 1
    )

    async def report(after_s: float, at: tuple[float, float] = CENTRE) -> int:
        await store.record(LocationFix("d1", *at, start + timedelta(seconds=after_s)))
        return int(await client.pttl(key))

    assert 550 <= await report(0.05) <= 600  # created
    await asyncio.sleep(0.1)
    assert await report(0.15) <= 510  # same step: kept
    await asyncio.sleep(0.1)
    assert await report(0.25, away) <= 410  # same step, rewritten whole (new region): kept
    assert await report(0.35, away) >= 550  # the next step: renewed
    reported = 0.35
    for _ in range(8):  # longer than the TTL, reporting as time goes by
        await asyncio.sleep(0.15)
        reported += 0.15
        assert 0 < await report(reported, away) <= 600
    assert await store.current("d1") is not None
    await asyncio.sleep(0.65)  # silence for a TTL
    assert await store.current("d1") is None
