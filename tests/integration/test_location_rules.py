"""The rules for messy GPS data, on both stores: what goes live, what only joins the trace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from ridehail.kernel.geo import offset
from ridehail.locations import DriverLocationStore, LocationFix, Recorded, ingest, ingest_many
from ridehail.locations.memory import InMemoryLocationStore
from ridehail.locations.redis_store import RedisLocationStore

HERE = (60.1699, 24.9384)
MAX_SPEED = 250 / 3.6
NOW = datetime.now(UTC)
T0 = NOW.replace(microsecond=0) - timedelta(minutes=10)


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[DriverLocationStore]:
    if request.param == "memory":
        yield InMemoryLocationStore(max_speed_mps=MAX_SPEED)
        return
    client = aioredis.from_url(redis_url)
    yield RedisLocationStore(client, key_prefix=redis_prefix, max_speed_mps=MAX_SPEED)
    await client.aclose()


def fix(
    seconds: float, north_m: float, *, accuracy: float | None = 5.0, driver: str = "drv_a"
) -> LocationFix:
    lat, lon = offset(*HERE, north_m=north_m, east_m=0)
    return LocationFix(
        driver_id=driver,
        latitude=lat,
        longitude=lon,
        recorded_at=T0 + timedelta(seconds=seconds),
        accuracy_m=accuracy,
    )


async def live_north_m(store: DriverLocationStore) -> float | None:
    current = await store.current("drv_a")
    if current is None:
        return None
    return round((current.latitude - HERE[0]) * 111_195, 0)


async def test_a_jump_faster_than_the_limit_is_flagged_and_kept_out(
    store: DriverLocationStore,
) -> None:
    assert await ingest(store, fix(0, 0), now=NOW) is Recorded.LIVE
    # 1 km in 5 s is 720 km/h: flagged, the live position stays.
    assert await ingest(store, fix(5, 1000), now=NOW) is Recorded.IMPLAUSIBLE
    assert await live_north_m(store) == 0
    # 100 m in 10 s (36 km/h) is fine.
    assert await ingest(store, fix(10, 100), now=NOW) is Recorded.LIVE
    assert await live_north_m(store) == 100
    # A real move after a gap: 3 km in 2 minutes (90 km/h) goes live.
    assert await ingest(store, fix(130, 3100), now=NOW) is Recorded.LIVE
    found = await store.nearest(
        latitude=HERE[0], longitude=HERE[1], radius_m=5000, limit=5, fresh_since=T0
    )
    assert [round((d.latitude - HERE[0]) * 111_195) for d in found] == [3100]


async def test_poor_accuracy_only_joins_the_trace(store: DriverLocationStore) -> None:
    assert await ingest(store, fix(0, 0), now=NOW, max_accuracy_m=100) is Recorded.LIVE
    await store.begin_trace("drv_a")
    outcome = await ingest(store, fix(10, 50, accuracy=250), now=NOW, max_accuracy_m=100)
    assert outcome is Recorded.IMPRECISE
    assert await live_north_m(store) == 0
    assert await ingest(store, fix(20, 120), now=NOW, max_accuracy_m=100) is Recorded.LIVE
    trace = await store.end_trace("drv_a")
    assert [p.accuracy_m for p in trace] == [250, 5.0]


async def test_older_and_duplicate_points_only_join_the_trace(store: DriverLocationStore) -> None:
    await store.begin_trace("drv_a")
    assert await ingest(store, fix(10, 100), now=NOW) is Recorded.LIVE
    assert await ingest(store, fix(10, 100), now=NOW) is Recorded.OLDER  # duplicate
    assert await ingest(store, fix(5, 50), now=NOW) is Recorded.OLDER  # late
    assert await live_north_m(store) == 100
    trace = await store.end_trace("drv_a")
    assert [p.recorded_at for p in trace] == [T0 + timedelta(seconds=5), T0 + timedelta(seconds=10)]


async def test_future_points_are_refused_and_store_nothing(store: DriverLocationStore) -> None:
    from ridehail.kernel.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        await ingest(store, fix(3600, 0), now=NOW)
    with pytest.raises(InvalidRequest):
        await ingest_many(store, [fix(0, 0), fix(3600, 10)], now=NOW)
    assert await store.current("drv_a") is None


async def test_a_batch_applies_the_rules_in_time_order(store: DriverLocationStore) -> None:
    await store.begin_trace("drv_a")
    batch = [fix(20, 200), fix(0, 0), fix(10, 100), fix(15, 5000), fix(25, 250, accuracy=500)]
    outcomes = await ingest_many(store, batch, now=NOW, max_accuracy_m=100)
    # time order: 0 live, 10 live, 15 implausible (4.9 km in 5 s), 20 live, 25 imprecise
    assert outcomes == [
        Recorded.LIVE,
        Recorded.LIVE,
        Recorded.IMPLAUSIBLE,
        Recorded.LIVE,
        Recorded.IMPRECISE,
    ]
    assert await live_north_m(store) == 200
    assert len(await store.end_trace("drv_a")) == 5
