"""The driver location store contract, run against both adapters, plus what only Redis shows.

The same behavioural tests run against the in-memory H3 index and against a real Redis, so
the two profiles cannot drift apart.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import h3
import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from ridehail.kernel.geo import haversine_m, offset
from ridehail.locations.memory import InMemoryLocationStore
from ridehail.locations.ports import (
    DriverLocationStore,
    LocationFix,
    Recorded,
    position_channel,
    position_message,
)
from ridehail.locations.redis_store import (
    GEO_MAX_LATITUDE,
    TRACE_TTL_S,
    RedisLocationStore,
    geo_score,
    position_json,
)
from ridehail.messaging import RedisPubSub

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
FRESH_SINCE = NOW - timedelta(seconds=60)
CENTRE = (52.520008, 13.404954)  # Berlin


def fix(
    driver_id: str,
    lat: float = CENTRE[0],
    lon: float = CENTRE[1],
    *,
    at_s: float = 0.0,
    speed_mps: float | None = None,
    accuracy_m: float | None = None,
) -> LocationFix:
    """A fix ``at_s`` seconds after NOW."""
    return LocationFix(
        driver_id=driver_id,
        latitude=lat,
        longitude=lon,
        recorded_at=NOW + timedelta(seconds=at_s),
        speed_mps=speed_mps,
        accuracy_m=accuracy_m,
    )


def north_of_centre(metres: float) -> tuple[float, float]:
    return offset(*CENTRE, north_m=metres, east_m=0.0)


async def search(
    store: DriverLocationStore,
    *,
    radius_m: float = 5_000,
    limit: int = 10,
    at: tuple[float, float] = CENTRE,
    fresh_since: datetime = FRESH_SINCE,
) -> list[str]:
    found = await store.nearest(
        latitude=at[0], longitude=at[1], radius_m=radius_m, limit=limit, fresh_since=fresh_since
    )
    return [hit.driver_id for hit in found]


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client with default options (bytes replies), as production creates it."""
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


def redis_store_at_now(client: aioredis.Redis, prefix: str, **options: Any) -> RedisLocationStore:
    """A Redis store configured as production configures it (announcing positions), whose
    clock stands at NOW: the tests' fixes are dated around NOW, and staleness (what the
    store prunes) is judged against its clock."""
    return RedisLocationStore(
        client,
        key_prefix=prefix,
        announce_prefix=f"{prefix}rt:",
        clock=NOW.timestamp,
        **options,
    )


@dataclass(frozen=True)
class Backend:
    name: str
    redis_url: str = ""
    prefix: str = ""


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Resolved synchronously (async fixtures cannot be requested from a running loop), and
    so that the in-memory runs do not need Redis at all."""
    if request.param == "memory":
        return Backend("memory")
    return Backend(
        "redis",
        redis_url=request.getfixturevalue("redis_url"),
        prefix=request.getfixturevalue("redis_prefix"),
    )


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[DriverLocationStore]:
    if backend.name == "memory":
        memory = InMemoryLocationStore()
        yield memory
        await memory.close()
        return
    client = aioredis.from_url(backend.redis_url)  # default options: bytes replies
    # Writes through the ingest lane, as production wires the store.
    redis_store = redis_store_at_now(client, backend.prefix, ingest_lane=True)
    yield redis_store
    await redis_store.close()
    await client.aclose()


# --- live position ------------------------------------------------------------------------


async def test_current_returns_the_recorded_fix_exactly(store: DriverLocationStore) -> None:
    sent = LocationFix(
        driver_id="d1",
        latitude=52.5200081234567,
        longitude=13.4049541234567,
        recorded_at=NOW + timedelta(microseconds=123_456),
        heading=271.5,
        speed_mps=12.25,
        accuracy_m=4.0,
    )
    await store.record(sent)
    assert await store.current("d1") == sent
    assert await store.current("nobody") is None


async def test_recorded_at_comes_back_in_utc(store: DriverLocationStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = LocationFix("d2", 1.0, 2.0, datetime(2026, 3, 1, 14, 0, 5, tzinfo=plus_two))
    await store.record(local)
    current = await store.current("d2")
    assert current is not None
    assert current.recorded_at == NOW + timedelta(seconds=5)
    assert current.recorded_at.utcoffset() == timedelta(0)


async def test_older_or_equal_fix_does_not_move_live_position(store: DriverLocationStore) -> None:
    newest = fix("d1", *north_of_centre(100), at_s=10)
    await store.record(newest)
    await store.record(fix("d1", *north_of_centre(900), at_s=5))
    await store.record(fix("d1", *north_of_centre(700), at_s=10))
    assert await store.current("d1") == newest
    newer = fix("d1", *north_of_centre(300), at_s=11)
    await store.record(newer)
    assert await store.current("d1") == newer


async def test_older_fix_still_lands_in_open_trace(store: DriverLocationStore) -> None:
    await store.begin_trace("d1")
    await store.record(fix("d1", *north_of_centre(200), at_s=20))
    late = fix("d1", *north_of_centre(100), at_s=10)
    await store.record(late)
    current = await store.current("d1")
    assert current is not None
    assert current.recorded_at == NOW + timedelta(seconds=20)
    points = await store.end_trace("d1")
    assert [p.recorded_at for p in points] == [late.recorded_at, NOW + timedelta(seconds=20)]
    assert points[0] == late


# --- nearest ------------------------------------------------------------------------------


async def place_line(store: DriverLocationStore) -> None:
    """Drivers due north of the centre at 100 m, 500 m, 1 km and 3 km."""
    for driver_id, metres in [("d3000", 3000), ("d500", 500), ("d100", 100), ("d1000", 1000)]:
        await store.record(fix(driver_id, *north_of_centre(metres)))


async def test_nearest_orders_by_distance_within_radius(store: DriverLocationStore) -> None:
    await place_line(store)
    found = await store.nearest(
        latitude=CENTRE[0], longitude=CENTRE[1], radius_m=2_000, limit=10, fresh_since=FRESH_SINCE
    )
    assert [hit.driver_id for hit in found] == ["d100", "d500", "d1000"]
    assert [hit.distance_m for hit in found] == pytest.approx([100, 500, 1000], abs=0.5)
    first = found[0]
    assert (first.latitude, first.longitude) == north_of_centre(100)  # exact, not quantised
    assert first.recorded_at == NOW


async def test_nearest_respects_limit(store: DriverLocationStore) -> None:
    await place_line(store)
    assert await search(store, limit=2) == ["d100", "d500"]
    assert await search(store, limit=0) == []


async def test_radius_boundary_uses_haversine(store: DriverLocationStore) -> None:
    await store.record(fix("edge", *north_of_centre(1_000)))
    distance = haversine_m(*CENTRE, *north_of_centre(1_000))
    assert await search(store, radius_m=distance) == ["edge"]
    assert await search(store, radius_m=distance - 0.01) == []


async def test_nearest_excludes_stale_drivers(store: DriverLocationStore) -> None:
    await store.record(fix("stale", *north_of_centre(50), at_s=-61))
    await store.record(fix("fresh", *north_of_centre(400), at_s=-60))
    assert await search(store) == ["fresh"]


async def test_nearest_of_empty_store_is_empty(store: DriverLocationStore) -> None:
    assert await search(store) == []


async def test_forget_removes_driver_from_search(store: DriverLocationStore) -> None:
    await place_line(store)
    await store.forget("d100")
    await store.forget("never-seen")
    assert await search(store, limit=1) == ["d500"]
    assert await store.current("d100") is None
    await store.record(fix("d100", *north_of_centre(100), at_s=1))
    assert await search(store, limit=1) == ["d100"]


async def test_drivers_across_the_antimeridian_are_found(store: DriverLocationStore) -> None:
    await store.record(fix("east", 0.0, 179.99))
    await store.record(fix("west", 0.0, -179.99))
    found = await store.nearest(
        latitude=0.0, longitude=179.99, radius_m=5_000, limit=5, fresh_since=FRESH_SINCE
    )
    assert [hit.driver_id for hit in found] == ["east", "west"]
    assert found[1].distance_m == pytest.approx(2_224, abs=2)
    assert await search(store, at=(0.0, -179.999), radius_m=5_000) == ["west", "east"]


# --- drivers per cell ---------------------------------------------------------------------


def scatter(
    n: int, spread_m: float, seed: int, around: tuple[float, float] = CENTRE
) -> dict[str, tuple[float, float]]:
    """``n`` drivers in a square ``2 * spread_m`` wide."""
    rng = random.Random(seed)
    return {
        f"d{i}": offset(
            *around,
            north_m=rng.uniform(-spread_m, spread_m),
            east_m=rng.uniform(-spread_m, spread_m),
        )
        for i in range(n)
    }


@pytest.mark.parametrize("k", [1, 6], ids=["few cells", "many cells"])
async def test_drivers_in_cells_places_each_fresh_driver_in_its_cell(
    store: DriverLocationStore, k: int
) -> None:
    """Few cells are searched around one by one; a disk of 127 cells is what the Redis store
    reads whole, region by region (the other test below proves which way it went)."""
    centre_cell = h3.latlng_to_cell(*CENTRE, 8)
    cells = set(h3.grid_disk(centre_cell, k))
    placed = scatter(600, 4_000.0 if k > 1 else 1_500.0, seed=k)
    await store.record_many([fix(d, *p) for d, p in placed.items()])
    # Stale, forgotten, moved: each judged by its live fix.
    await store.record(fix("stale", *CENTRE, at_s=-61))
    await store.record(fix("gone", *CENTRE))
    await store.forget("gone")
    await store.record(fix("d0", *CENTRE, at_s=5))
    placed["d0"] = CENTRE
    expected = {
        d: h3.latlng_to_cell(*p, 8) for d, p in placed.items() if h3.latlng_to_cell(*p, 8) in cells
    }
    assert expected["d0"] == centre_cell
    assert 20 < len(expected) < len(placed)  # some inside, some outside the cells
    assert await store.drivers_in_cells(cells, fresh_since=FRESH_SINCE) == expected
    # Fresher than everyone: nobody.
    later = NOW + timedelta(seconds=30)
    assert await store.drivers_in_cells(cells, fresh_since=later) == {}


async def test_drivers_in_cells_asks_cells_of_one_resolution(store: DriverLocationStore) -> None:
    assert await store.drivers_in_cells(set(), fresh_since=FRESH_SINCE) == {}
    await store.record(fix("d1", *CENTRE))
    mixed = {h3.latlng_to_cell(*CENTRE, 8), h3.latlng_to_cell(*CENTRE, 9)}
    with pytest.raises(ValueError, match="one resolution"):
        await store.drivers_in_cells(mixed, fresh_since=FRESH_SINCE)
    with pytest.raises(ValueError, match="one resolution"):
        await store.drivers_in_cells({"not a cell"}, fresh_since=FRESH_SINCE)


@pytest.mark.redis
async def test_drivers_in_cells_reads_busy_regions_whole(
    redis_client: aioredis.Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many cells of a region: no search per cell, one scan of the region, in pages (more
    members than a page); a leftover member in a region its driver has left is skipped."""
    store = redis_store_at_now(redis_client, redis_prefix)
    searches: list[float] = []
    real_nearest = store.nearest

    async def counted(**query: Any) -> Any:
        searches.append(query["radius_m"])
        return await real_nearest(**query)

    monkeypatch.setattr(store, "nearest", counted)
    # Around the middle of a region, so that every cell asked lies well inside it.
    middle = h3.cell_to_latlng(store.region_of(*CENTRE))
    placed = scatter(2_500, 2_500.0, seed=11, around=middle)
    await store.record_many([fix(d, *p) for d, p in placed.items()])
    far = offset(*middle, north_m=100_000, east_m=0)
    far_middle = h3.cell_to_latlng(store.region_of(*far))
    far_geo, _far_seen = store.region_keys(store.region_of(*far))
    await redis_client.zadd(far_geo, {"d1": geo_score(*far_middle)})  # d1 is not there
    cells = set(h3.grid_disk(h3.latlng_to_cell(*middle, 8), 5))
    cells |= set(h3.grid_disk(h3.latlng_to_cell(*far_middle, 8), 5))
    expected = {
        d: h3.latlng_to_cell(*p, 8) for d, p in placed.items() if h3.latlng_to_cell(*p, 8) in cells
    }
    assert len(expected) > 1_000
    assert await store.drivers_in_cells(cells, fresh_since=FRESH_SINCE) == expected
    assert searches == []
    # A handful of cells: searched around, with the same answer as the whole reading.
    few = set(h3.grid_disk(h3.latlng_to_cell(*middle, 8), 1))
    found = await store.drivers_in_cells(few, fresh_since=FRESH_SINCE)
    assert found == {d: c for d, c in expected.items() if c in few}
    assert len(searches) == len(few)


# --- traces -------------------------------------------------------------------------------


async def test_trace_returns_points_sorted_and_closes(store: DriverLocationStore) -> None:
    await store.record(fix("d1", at_s=0))  # before the trace: not part of it
    await store.begin_trace("d1")
    for at_s in (3, 1, 2):
        await store.record(fix("d1", *north_of_centre(at_s * 10), at_s=at_s))
    await store.record(fix("other", at_s=2))
    points = await store.end_trace("d1")
    assert [p.recorded_at for p in points] == [NOW + timedelta(seconds=s) for s in (1, 2, 3)]
    assert {p.driver_id for p in points} == {"d1"}
    assert await store.end_trace("d1") == []
    await store.record(fix("d1", at_s=4))  # the trace is closed: nothing collects this
    assert await store.end_trace("d1") == []


async def test_trace_skips_exact_duplicates(store: DriverLocationStore) -> None:
    await store.begin_trace("d1")
    await store.record(fix("d1", 1.0, 2.0, at_s=1, speed_mps=3.0))
    await store.record(fix("d1", 1.0, 2.0, at_s=1, speed_mps=9.0))  # a retried upload
    await store.record(fix("d1", 1.5, 2.0, at_s=1))  # same instant, another place: kept
    points = await store.end_trace("d1")
    assert [(p.latitude, p.speed_mps) for p in points] == [(1.0, 3.0), (1.5, None)]


async def test_begin_trace_again_discards_old_points(store: DriverLocationStore) -> None:
    await store.begin_trace("d1")
    await store.record(fix("d1", at_s=1))
    await store.begin_trace("d1")
    await store.record(fix("d1", at_s=2))
    assert [p.recorded_at for p in await store.end_trace("d1")] == [NOW + timedelta(seconds=2)]


async def test_end_trace_without_begin_is_empty(store: DriverLocationStore) -> None:
    await store.record(fix("d1"))
    assert await store.end_trace("d1") == []
    await store.begin_trace("d2")
    assert await store.end_trace("d2") == []


async def test_trace_survives_forget(store: DriverLocationStore) -> None:
    await store.begin_trace("d1")
    await store.record(fix("d1", at_s=1))
    await store.forget("d1")
    assert len(await store.end_trace("d1")) == 1


# --- batches and housekeeping -------------------------------------------------------------


async def test_record_many_applies_the_same_rules(store: DriverLocationStore) -> None:
    await store.begin_trace("d1")
    await store.record_many(
        [
            fix("d1", *north_of_centre(300), at_s=3),
            fix("d1", *north_of_centre(100), at_s=1),  # older: traced, not live
            fix("d2", *north_of_centre(200), at_s=2),
        ]
    )
    await store.record_many([])
    current = await store.current("d1")
    assert current is not None
    assert current.recorded_at == NOW + timedelta(seconds=3)
    assert await search(store) == ["d2", "d1"]
    assert [p.recorded_at.second for p in await store.end_trace("d1")] == [1, 3]


async def test_ping_and_close(store: DriverLocationStore) -> None:
    await store.ping()


# --- Redis only ---------------------------------------------------------------------------


@pytest.mark.redis
async def test_concurrent_writers_keep_the_newest_fix(redis_url: str, redis_prefix: str) -> None:
    """Two processes racing an old and a new fix: whoever lands last, the new one wins."""
    clients = [aioredis.from_url(redis_url) for _ in range(2)]
    try:
        stores = [redis_store_at_now(client, redis_prefix) for client in clients]
        rounds = 40
        for n in range(rounds):
            new = fix(f"d{n}", *north_of_centre(10), at_s=2)
            old = fix(f"d{n}", *north_of_centre(20), at_s=1)
            first, second = (new, old) if n % 2 else (old, new)
            await asyncio.gather(stores[0].record(first), stores[1].record(second))
        await asyncio.gather(
            stores[0].record_many([fix(f"d{n}", at_s=1.5) for n in range(rounds)]),
            stores[1].record_many([fix(f"d{n}", at_s=2.5) for n in range(rounds)]),
        )
        for n in range(rounds):
            current = await stores[0].current(f"d{n}")
            assert current is not None
            assert current.recorded_at == NOW + timedelta(seconds=2.5)
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.redis
async def test_polar_fix_is_kept_but_not_searchable(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = redis_store_at_now(redis_client, redis_prefix)
    await store.record(fix("d1", 85.0, 10.0, at_s=0))
    assert await search(store, at=(85.0, 10.0)) == ["d1"]
    await store.begin_trace("d1")
    polar = fix("d1", 89.5, 10.0, at_s=1)
    await store.record(polar)  # must not raise
    assert await store.current("d1") == polar
    assert await search(store, at=(85.0, 10.0)) == []  # its old GEO entry is gone too
    assert await store.end_trace("d1") == [polar]


@pytest.mark.redis
async def test_nearest_fetches_past_many_stale_drivers(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    # A stale window wider than the test's ages keeps the stale members in the region (no
    # pruning), so that search itself has to page past them.
    store = redis_store_at_now(redis_client, redis_prefix, stale_after_s=3600)
    stale = [fix(f"stale{n}", *north_of_centre(10 + n), at_s=-600) for n in range(40)]
    await store.record_many([*stale, fix("fresh", *north_of_centre(900))])
    assert await search(store, limit=1) == ["fresh"]


@pytest.mark.redis
async def test_works_with_a_decoding_client(redis_url: str, redis_prefix: str) -> None:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        store = redis_store_at_now(client, redis_prefix)
        sent = fix("d1", *north_of_centre(100), accuracy_m=5.0)
        await store.begin_trace("d1")
        await store.record(sent)
        assert await store.current("d1") == sent
        assert await search(store) == ["d1"]
        assert await store.end_trace("d1") == [sent]
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_trace_expires_and_ingest_needs_no_trace(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = redis_store_at_now(redis_client, redis_prefix)
    key = store.trace_key("d1")
    assert key == f"{redis_prefix}loc:trace:{{d1}}"
    await store.record(fix("d1"))
    assert await redis_client.exists(key) == 0  # no trace open: the write made none
    await store.begin_trace("d1")
    ttl = await redis_client.ttl(key)
    assert TRACE_TTL_S - 5 <= ttl <= TRACE_TTL_S
    await store.record(fix("d1", at_s=1))
    await store.trace_only(fix("d1", at_s=2))
    assert TRACE_TTL_S - 5 <= await redis_client.ttl(key) <= TRACE_TTL_S  # appends keep it


@pytest.mark.redis
async def test_prefix_may_not_hold_hash_tags(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="hash tags"):
        RedisLocationStore(redis_client, key_prefix="{ridehail}:")


# --- Redis only: key layout and regions -----------------------------------------------------


async def _scan(client: aioredis.Redis, pattern: str) -> set[str]:
    return {key.decode() async for key in client.scan_iter(match=pattern, count=1000)}


@pytest.mark.redis
async def test_keys_per_region_and_per_driver(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = redis_store_at_now(redis_client, redis_prefix, driver_ttl_s=600)
    here = store.region_of(*CENTRE)
    away = (CENTRE[0] + 0.5, CENTRE[1])  # 55 km north: another region
    there = store.region_of(*away)
    assert here != there
    assert store.region_keys(here) == (
        f"{redis_prefix}loc:{{{here}}}:geo",
        f"{redis_prefix}loc:{{{here}}}:seen",
    )
    await store.record(fix("d1", at_s=1))
    geo, seen = store.region_keys(here)
    state = store.state_key("d1")
    assert state == f"{redis_prefix}loc:drv:{{d1}}"
    assert await _scan(redis_client, f"{redis_prefix}*") == {geo, seen, state}
    assert await redis_client.zscore(seen, "d1") == (NOW.timestamp() + 1) * 1000
    assert 600_000 - 5_000 <= await redis_client.pttl(state) <= 600_000
    assert 60_000 - 5_000 <= await redis_client.pttl(geo) <= 60_000  # 2 x stale_after_s
    assert 60_000 - 5_000 <= await redis_client.pttl(seen) <= 60_000

    await store.record(fix("d1", *away, at_s=7200))  # far, but two hours later
    assert await redis_client.exists(geo, seen) == 0  # the last member left: keys gone
    assert await redis_client.zscore(store.region_keys(there)[1], "d1") is not None
    await store.record(fix("d1", 89.0, 0.0, at_s=7300))  # polar: out of every region
    assert await _scan(redis_client, f"{redis_prefix}*") == {state}
    await store.forget("d1")
    assert await _scan(redis_client, f"{redis_prefix}*") == set()


@pytest.mark.redis
async def test_geo_scores_are_those_geoadd_computes(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """The store files members with ZADD and its own geohash; GEOSEARCH must see exactly
    what GEOADD would have stored."""
    rng = random.Random(3)
    points = [
        (rng.uniform(-GEO_MAX_LATITUDE, GEO_MAX_LATITUDE), rng.uniform(-180.0, 180.0))
        for _ in range(3000)
    ]
    points += [
        (GEO_MAX_LATITUDE - 1e-9, 179.9999999),
        (-GEO_MAX_LATITUDE, -180.0),
        (0.0, 0.0),
        (-0.0, -0.0),
        (60.17, 24.94),
        (52.520008, 13.404954),
    ]
    key = f"{redis_prefix}geoadd"
    async with redis_client.pipeline(transaction=False) as pipe:
        for n, (lat, lon) in enumerate(points):
            pipe.geoadd(key, [lon, lat, str(n)])
        await pipe.execute()
    stored: dict[bytes, float] = dict(await redis_client.zrange(key, 0, -1, withscores=True))  # type: ignore[arg-type]
    for n, (lat, lon) in enumerate(points):
        assert stored[str(n).encode()] == geo_score(lat, lon), (lat, lon)
    # At the very top of the ranges GEOADD spills a bit into the other coordinate; the
    # store files such a member in the last step instead (a centimetre away).
    top = geo_score(GEO_MAX_LATITUDE, 180.0)
    assert top == geo_score(GEO_MAX_LATITUDE - 1e-9, 179.9999999) < 2**52


@pytest.mark.redis
async def test_search_merges_regions_nearest_first(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = redis_store_at_now(redis_client, redis_prefix)
    # Walk east until the region changes; place drivers either side of the border.
    east = [offset(*CENTRE, north_m=0, east_m=100.0 * n) for n in range(800)]
    border = next(
        n for n in range(20, 780) if store.region_of(*east[n]) != store.region_of(*east[n - 1])
    )
    query = east[border]
    placed = {f"w{k}": east[border - 1 - 3 * k] for k in range(4)}
    placed |= {f"e{k}": east[border + 1 + 3 * k] for k in range(4)}
    await store.record_many([fix(d, *p) for d, p in placed.items()])
    regions = {store.region_of(*p) for p in placed.values()}
    assert len(regions) >= 2
    found = await store.nearest(
        latitude=query[0], longitude=query[1], radius_m=2_000, limit=10, fresh_since=FRESH_SINCE
    )
    expected = sorted(placed, key=lambda d: (haversine_m(*query, *placed[d]), d))
    assert [hit.driver_id for hit in found] == expected
    assert [hit.distance_m for hit in found] == sorted(hit.distance_m for hit in found)
    assert await search(store, at=query, radius_m=2_000, limit=3) == expected[:3]
    assert await search(store, at=query, radius_m=450) == expected[:4]


@pytest.mark.redis
async def test_a_member_outside_its_drivers_region_is_ignored(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """The state is the truth: a leftover member in a region the driver has left (what a
    cluster writer delayed between its two steps can leave behind) is never a hit."""
    store = redis_store_at_now(redis_client, redis_prefix)
    await store.record(fix("d1", *north_of_centre(100)))
    away = (CENTRE[0] + 0.5, CENTRE[1])
    leftover_geo, leftover_seen = store.region_keys(store.region_of(*away))
    await redis_client.zadd(leftover_geo, {"d1": geo_score(*away)})
    await redis_client.zadd(leftover_seen, {"d1": NOW.timestamp() * 1000})
    assert await search(store, at=away, radius_m=1_000) == []
    assert await search(store) == ["d1"]


@pytest.mark.redis
@pytest.mark.parametrize(
    ("latitude", "longitude", "radius_m"),
    [
        (52.52, 13.40, 5_000.0),
        (60.17, 24.94, 20_000.0),
        (0.0, 179.999, 8_000.0),  # the antimeridian
        (-33.86, 151.21, 12_000.0),
        (70.0, -179.95, 15_000.0),
        (1.0, 1.0, 100.0),
    ],
)
async def test_regions_within_cover_every_point_of_the_circle(
    redis_client: aioredis.Redis, latitude: float, longitude: float, radius_m: float
) -> None:
    store = RedisLocationStore(redis_client, key_prefix="unused:")
    regions = set(store.regions_within(latitude, longitude, radius_m))
    hit: set[str] = set()
    rng = random.Random(5)
    for _ in range(3_000):
        distance = radius_m * math.sqrt(rng.random())
        angle = rng.uniform(0, 2 * math.pi)
        point = offset(
            latitude,
            longitude,
            north_m=distance * math.cos(angle),
            east_m=distance * math.sin(angle),
        )
        if haversine_m(latitude, longitude, *point) <= radius_m:
            hit.add(store.region_of(*point))
    assert hit <= regions
    assert len(regions) <= 2 * len(hit) + 6  # the cells around the circle, not a blanket


@pytest.mark.redis
async def test_a_search_wider_than_the_region_index_allows_is_refused(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = redis_store_at_now(redis_client, redis_prefix)
    with pytest.raises(ValueError, match="radius too large"):
        await store.nearest(
            latitude=0.0, longitude=0.0, radius_m=2_000_000, limit=1, fresh_since=FRESH_SINCE
        )


# --- Redis only: batches ----------------------------------------------------------------------


def _messy_fixes(rng: random.Random, count: int) -> list[LocationFix]:
    """Fixes of six drivers, shuffled in time, some near, some far (another region), a few
    polar ones and exact repeats: every rule gets exercised."""
    far = (CENTRE[0] + 0.4, CENTRE[1] + 0.3)
    fixes: list[LocationFix] = []
    for _ in range(count):
        driver = f"d{rng.randrange(6)}"
        if fixes and rng.random() < 0.05:
            fixes.append(fixes[-1])
            continue
        base = rng.choice([CENTRE, CENTRE, far, (88.0, 10.0)] if rng.random() < 0.1 else [CENTRE])
        lat, lon = offset(*base, north_m=rng.uniform(-800, 800), east_m=rng.uniform(-800, 800))
        fixes.append(
            LocationFix(
                driver_id=driver,
                latitude=lat,
                longitude=lon,
                recorded_at=NOW + timedelta(microseconds=rng.randrange(-20_000_000, 400_000_000)),
                heading=rng.choice([None, rng.uniform(0, 360)]),
                speed_mps=rng.choice([None, rng.uniform(0, 30)]),
                accuracy_m=rng.choice([None, 5.0]),
            )
        )
    return fixes


async def _region_contents(client: aioredis.Redis, prefix: str) -> dict[str, object]:
    contents: dict[str, object] = {}
    for key in await _scan(client, f"{prefix}loc:{{*}}:*"):
        contents[key.removeprefix(prefix)] = await client.zrange(key, 0, -1, withscores=True)
    return contents


@pytest.mark.redis
async def test_record_many_ends_as_record_one_by_one(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    one_prefix, many_prefix = f"{redis_prefix}one:", f"{redis_prefix}many:"
    options: dict[str, Any] = {"max_speed_mps": 40.0, "stale_after_s": 3600}
    one = redis_store_at_now(redis_client, one_prefix, **options)
    many = redis_store_at_now(redis_client, many_prefix, **options)
    drivers = [f"d{n}" for n in range(6)]
    for store in (one, many):
        await store.begin_trace("d1")
        await store.begin_trace("d4")
    rng = random.Random(11)
    far = (CENTRE[0] + 0.4, CENTRE[1] + 0.3)
    # d2 ends in another region, d3 at the pole (in none).
    fixes = [*_messy_fixes(rng, 600), fix("d2", *far, at_s=4000), fix("d3", 88.0, 1.0, at_s=9e4)]

    one_by_one = [await one.record(f) for f in fixes]
    batched: list[Recorded] = []
    for start, end in [(0, 1), (1, 602)]:  # the second spans two script calls (CHUNK)
        batched += await many.record_many(fixes[start:end])

    assert batched == one_by_one
    assert set(one_by_one) == {Recorded.LIVE, Recorded.OLDER, Recorded.IMPLAUSIBLE}
    for driver in drivers:
        assert await many.current(driver) == await one.current(driver)
    contents = await _region_contents(redis_client, one_prefix)
    assert len(contents) >= 4  # two regions at least, geo and seen each
    assert await _region_contents(redis_client, many_prefix) == contents
    for at in (CENTRE, far):
        assert await search(many, at=at, radius_m=3_000) == await search(one, at=at, radius_m=3_000)
    for driver in ("d1", "d4"):
        traced = await one.end_trace(driver)
        assert len(traced) > 20
        assert await many.end_trace(driver) == traced


@pytest.mark.redis
async def test_record_many_beyond_one_script_call(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = redis_store_at_now(redis_client, redis_prefix)
    fixes = [fix(f"d{n % 1500}", *north_of_centre(n % 900), at_s=n // 1500) for n in range(3000)]
    assert await store.record_many(fixes) == [Recorded.LIVE] * 3000
    assert len(await search(store, limit=2000)) == 1500


# --- Redis only: traces -------------------------------------------------------------------------


@pytest.mark.redis
async def test_traces_are_fixed_width_records_read_back_exactly(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = redis_store_at_now(redis_client, redis_prefix)
    await store.begin_trace("d1")  # before the driver has any state
    points = [
        LocationFix("d1", 52.123456789012345, 13.98765432109876, NOW, heading=0.1),
        LocationFix("d1", -0.0, 179.99999999999997, NOW + timedelta(microseconds=1)),
        LocationFix("d1", 1e-300, -180.0, NOW - timedelta(days=1), speed_mps=1 / 3),
        LocationFix("d1", 89.99, 5.0, NOW + timedelta(seconds=3), accuracy_m=2.5e-7),
    ]
    await store.record(points[0])
    await store.trace_only(points[1])
    await store.record_many(points[2:])
    assert await redis_client.strlen(store.trace_key("d1")) == 48 * len(points)
    back = await store.end_trace("d1")
    assert back == sorted(points, key=lambda p: p.recorded_at)
    for got, sent in zip(back, sorted(points, key=lambda p: p.recorded_at), strict=True):
        assert (math.copysign(1, got.latitude), got.longitude) == (
            math.copysign(1, sent.latitude),
            sent.longitude,
        )


@pytest.mark.redis
async def test_an_expired_trace_is_not_recreated_by_ingest(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = redis_store_at_now(redis_client, redis_prefix)
    await store.record(fix("d1", at_s=0))
    await store.begin_trace("d1")
    await store.record(fix("d1", at_s=1))
    await redis_client.delete(store.trace_key("d1"))  # as if its TTL ran out
    await store.record(fix("d1", at_s=2))
    await store.record_many([fix("d1", at_s=3)])
    await store.trace_only(fix("d1", at_s=4))
    assert await redis_client.exists(store.trace_key("d1")) == 0
    assert await store.end_trace("d1") == []
    await store.begin_trace("d1")  # a new trip traces again
    await store.record_many([fix("d1", at_s=5)])
    assert [p.recorded_at for p in await store.end_trace("d1")] == [NOW + timedelta(seconds=5)]


@pytest.mark.redis
async def test_a_trace_survives_its_driver_being_forgotten_and_coming_back(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = redis_store_at_now(redis_client, redis_prefix)
    await store.record(fix("d1", at_s=0))
    await store.begin_trace("d1")
    await store.forget("d1")
    await store.record(fix("d1", at_s=1))  # a fresh state: the open trace is found again
    await store.record(fix("d1", at_s=2))
    assert [p.recorded_at.second for p in await store.end_trace("d1")] == [1, 2]


# --- Redis only: announcing positions -----------------------------------------------------------


async def _published(
    client: aioredis.Redis, prefix: str, action: Callable[[], Awaitable[object]]
) -> list[tuple[str, str]]:
    """(channel without the prefix, payload) of every message ``action`` published."""
    pubsub = client.pubsub()
    await pubsub.psubscribe(f"{prefix}rt:*")
    try:
        while await pubsub.get_message(timeout=1.0) is None:  # the subscription's ack
            pass
        await action()
        messages: list[tuple[str, str]] = []
        quiet_until = asyncio.get_running_loop().time() + 0.3
        while asyncio.get_running_loop().time() < quiet_until:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if message is not None:
                channel = message["channel"].decode().removeprefix(f"{prefix}rt:")
                messages.append((channel, message["data"].decode()))
        return messages
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


def _as_published(fixes: list[LocationFix]) -> list[tuple[str, str]]:
    return [(position_channel(f.driver_id), json.dumps(position_message(f))) for f in fixes]


@pytest.mark.redis
async def test_live_positions_are_announced_exactly_as_the_pubsub_does(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = redis_store_at_now(redis_client, redis_prefix, max_speed_mps=100.0)
    assert store.announces_positions
    for driver in ("d1", 'd"2\\é', "d3"):
        await store.follow(driver, for_s=60)
    plus_two = timezone(timedelta(hours=2))
    first = LocationFix("d1", 52.52, 13.4, NOW, heading=271.5)
    odd = LocationFix('d"2\\é', 1e-05, -0.0, datetime(2026, 3, 1, 14, 0, 0, 7, tzinfo=plus_two))
    later = fix("d1", *north_of_centre(30), at_s=5)
    older = fix("d1", at_s=1)
    too_far = fix("d1", *north_of_centre(5_000), at_s=6)

    messages = await _published(redis_client, redis_prefix, lambda: store.record(first))
    assert messages == _as_published([first])
    messages = await _published(redis_client, redis_prefix, lambda: store.record(odd))
    assert messages == _as_published([odd])
    # A batch announces each driver's newest live fix once; older and implausible ones,
    # never.
    batch = [later, odd, older, too_far, fix("d3", at_s=2), fix("d3", at_s=3)]
    messages = await _published(redis_client, redis_prefix, lambda: store.record_many(batch))
    assert sorted(messages) == sorted(_as_published([later, fix("d3", at_s=3)]))
    messages = await _published(redis_client, redis_prefix, lambda: store.record(older))
    assert messages == []


@pytest.mark.redis
async def test_only_followed_drivers_are_announced(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """A rider watching on another process follows the driver through Redis; the ingesting
    process sees it within a second, and stops announcing when the follow lapses."""
    now = [NOW.timestamp()]

    def clock() -> float:
        return now[0]

    def process() -> RedisLocationStore:
        return RedisLocationStore(
            redis_client, key_prefix=redis_prefix, announce_prefix=f"{redis_prefix}rt:", clock=clock
        )

    ingesting, watching = process(), process()

    async def published(driver: str, at_s: float) -> list[tuple[str, str]]:
        return await _published(
            redis_client, redis_prefix, lambda: ingesting.record(fix(driver, at_s=at_s))
        )

    assert await published("d1", 0) == []  # nobody follows d1 yet
    await watching.follow("d1", for_s=30)
    now[0] += 1.0  # the ingesting process re-reads who is followed once a second
    assert [channel for channel, _ in await published("d1", 1)] == [position_channel("d1")]
    assert await published("d2", 1) == []
    now[0] += 30.0  # the follow lapsed (the watcher stopped renewing it)
    assert await published("d1", 31) == []
    # Lapsed follows are pruned from Redis, not kept forever.
    now[0] += 60.0
    await published("d1", 91)
    assert await redis_client.zcard(f"{redis_prefix}loc:followed") == 0


@pytest.mark.redis
async def test_a_store_without_announce_prefix_publishes_nothing(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = RedisLocationStore(redis_client, key_prefix=redis_prefix, clock=NOW.timestamp)
    assert not store.announces_positions
    messages = await _published(redis_client, redis_prefix, lambda: store.record(fix("d1")))
    assert messages == []


@pytest.mark.redis
async def test_followers_on_the_redis_pubsub_receive_the_announcements(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """The wiring production uses: the store announces under ``<prefix>rt:``, and
    RedisPubSub (subscribed under the same prefix) delivers the message."""
    pubsub = RedisPubSub(redis_client, key_prefix=redis_prefix)
    await pubsub.start()
    subscription = pubsub.subscription()
    try:
        await subscription.add(position_channel("d1"))
        store = redis_store_at_now(redis_client, redis_prefix)
        await store.follow("d1", for_s=60)
        sent = fix("d1", *north_of_centre(10), at_s=1)
        await store.record_many([fix("d1"), sent])
        async with asyncio.timeout(5):
            channel, message = await subscription.get()
        assert channel == position_channel("d1")
        assert message == json.loads(json.dumps(position_message(sent)))
    finally:
        await subscription.close()
        await pubsub.stop()


@settings(max_examples=300, deadline=None)
@given(
    driver_id=st.text(max_size=12),
    latitude=st.floats(-90, 90),
    longitude=st.floats(-180, 180),
    heading=st.none() | st.floats(0, 360),
    moment=st.datetimes(timezones=st.timezones()),
)
def test_position_json_is_what_json_dumps_writes(
    driver_id: str,
    latitude: float,
    longitude: float,
    heading: float | None,
    moment: datetime,
) -> None:
    sent = LocationFix(driver_id, latitude, longitude, moment, heading=heading)
    assert position_json(sent, repr(latitude), repr(longitude)) == json.dumps(
        position_message(sent)
    )


# --- Redis only: seen times -----------------------------------------------------------------


@pytest.mark.redis
async def test_seen_times_are_renewed_once_per_step(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """On one Redis a member's seen time moves on entering a region or a new step of fix
    time (half the stale window: 15 s here), not on every fix."""
    store = redis_store_at_now(redis_client, redis_prefix, stale_after_s=30)
    seen = store.region_keys(store.region_of(*CENTRE))[1]
    assert NOW.timestamp() % 15 == 0  # NOW starts a step

    async def seen_after(at_s: float) -> float | None:
        await store.record(fix("d1", *north_of_centre(at_s), at_s=at_s))
        return await redis_client.zscore(seen, "d1")

    ms = NOW.timestamp() * 1000
    assert await seen_after(1) == ms + 1_000  # entered the region
    assert await seen_after(5) == ms + 1_000  # same step
    assert await seen_after(14.9) == ms + 1_000
    assert await seen_after(15) == ms + 15_000  # a new step
    assert await store.record_many([fix("d1", at_s=16), fix("d1", at_s=31)]) == [
        Recorded.LIVE,
        Recorded.LIVE,
    ]
    assert await redis_client.zscore(seen, "d1") == ms + 31_000


@pytest.mark.redis
async def test_a_member_missing_from_its_region_gets_its_seen_time_back(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """If a driver's member vanished (pruned, or the region expired) while its state still
    names the region, the next write files it again with a seen time - also when, in the
    same call, another driver enters the region while a leftover of it is still there, so
    that counting new members alone would not notice."""
    store = redis_store_at_now(redis_client, redis_prefix, stale_after_s=30)
    away = (CENTRE[0] + 0.5, CENTRE[1])
    geo, seen = store.region_keys(store.region_of(*CENTRE))
    await store.record_many([fix("kept", *CENTRE, at_s=1), fix("mover", *away, at_s=1)])
    await redis_client.zrem(geo, "kept")
    await redis_client.zrem(seen, "kept")
    await redis_client.zadd(geo, {"mover": geo_score(*CENTRE)})  # a leftover
    await redis_client.zadd(seen, {"mover": NOW.timestamp() * 1000})
    await store.record_many([fix("kept", *CENTRE, at_s=2), fix("mover", *CENTRE, at_s=7200)])
    assert await redis_client.zscore(seen, "kept") == (NOW.timestamp() + 2) * 1000
    assert await redis_client.zscore(seen, "mover") == (NOW.timestamp() + 7200) * 1000
    assert set(await redis_client.zrange(geo, 0, -1)) == set(await redis_client.zrange(seen, 0, -1))
