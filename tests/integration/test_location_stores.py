"""The driver location store contract, run against both adapters, plus what only Redis shows.

The same behavioural tests run against the in-memory H3 index and against a real Redis, so
the two profiles cannot drift apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
import redis.asyncio as aioredis

from ridehail.kernel.geo import haversine_m, offset
from ridehail.locations.memory import InMemoryLocationStore
from ridehail.locations.ports import DriverLocationStore, LocationFix
from ridehail.locations.redis_store import TRACE_TTL_S, RedisLocationStore

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
    redis_store = RedisLocationStore(client, key_prefix=backend.prefix)
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
        stores = [RedisLocationStore(client, key_prefix=redis_prefix) for client in clients]
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
    store = RedisLocationStore(redis_client, key_prefix=redis_prefix)
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
    store = RedisLocationStore(redis_client, key_prefix=redis_prefix)
    stale = [fix(f"stale{n}", *north_of_centre(10 + n), at_s=-600) for n in range(40)]
    await store.record_many([*stale, fix("fresh", *north_of_centre(900))])
    assert await search(store, limit=1) == ["fresh"]


@pytest.mark.redis
async def test_works_with_a_decoding_client(redis_url: str, redis_prefix: str) -> None:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        store = RedisLocationStore(client, key_prefix=redis_prefix)
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
    store = RedisLocationStore(redis_client, key_prefix=redis_prefix)
    await store.record(fix("d1"))
    assert await redis_client.exists(f"{redis_prefix}loc:trace:d1") == 0  # RPUSHX made none
    await store.begin_trace("d1")
    ttl = await redis_client.ttl(f"{redis_prefix}loc:trace:d1")
    assert TRACE_TTL_S - 5 <= ttl <= TRACE_TTL_S
