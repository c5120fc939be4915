"""CoalescingStore: concurrent record() calls share batched writes and change no outcome."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from ridehail.kernel.geo import offset
from ridehail.locations.coalesce import CoalescingStore
from ridehail.locations.memory import InMemoryLocationStore
from ridehail.locations.ports import DriverLocationStore, LocationFix, Recorded
from ridehail.locations.redis_store import RedisLocationStore

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CENTRE = (60.1699, 24.9384)
MAX_SPEED_MPS = 250 / 3.6


class Counting:
    """Passes calls to a real store and counts the batched writes it receives."""

    def __init__(self, inner: DriverLocationStore) -> None:
        self.inner = inner
        self.announces_positions = inner.announces_positions
        self.batches: list[int] = []
        self.fail_next = False

    async def record_many(self, fixes: Sequence[LocationFix]) -> list[Recorded]:
        self.batches.append(len(fixes))
        await asyncio.sleep(0)  # a real store awaits I/O here; let more callers queue up
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("store unreachable")
        return await self.inner.record_many(fixes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def kind(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """Resolved synchronously: async fixtures cannot request fixtures from a running loop."""
    if request.param == "memory":
        return ("memory", "", "")
    return (
        "redis",
        request.getfixturevalue("redis_url"),
        request.getfixturevalue("redis_prefix"),
    )


@pytest.fixture
async def make_store(kind: tuple[str, str, str]) -> AsyncIterator[Any]:
    """A factory of fresh, independent stores of the parametrized kind."""
    name, url, prefix = kind
    clients: list[aioredis.Redis] = []

    def factory() -> DriverLocationStore:
        if name == "memory":
            return InMemoryLocationStore(max_speed_mps=MAX_SPEED_MPS)
        client = aioredis.from_url(url)
        clients.append(client)
        return RedisLocationStore(
            client, key_prefix=f"{prefix}{len(clients)}:", max_speed_mps=MAX_SPEED_MPS
        )

    yield factory
    for client in clients:
        await client.aclose()


def one_each(count: int) -> list[LocationFix]:
    """One plausible report from each of ``count`` drivers."""
    return [
        LocationFix(driver_id=f"drv_{n}", latitude=CENTRE[0], longitude=CENTRE[1], recorded_at=NOW)
        for n in range(count)
    ]


def messy_fixes(count: int, drivers: int, seed: int = 7) -> list[LocationFix]:
    """Reports of several drivers, with late, duplicate and impossible ones mixed in."""
    rng = random.Random(seed)
    fixes = []
    for n in range(count):
        driver = f"drv_{rng.randrange(drivers)}"
        at = NOW + timedelta(seconds=rng.choice([n, n, n, max(0, n - 5)]))
        jump = rng.choice([0.0, 0.0, 0.0, 90_000.0])  # 90 km: implausible within seconds
        lat, lon = offset(*CENTRE, north_m=rng.uniform(-500, 500) + jump, east_m=0.0)
        fixes.append(LocationFix(driver_id=driver, latitude=lat, longitude=lon, recorded_at=at))
    return fixes


async def test_concurrent_reports_share_batches_and_keep_their_outcomes(make_store: Any) -> None:
    fixes = messy_fixes(300, drivers=20)
    sequential = make_store()
    expected = [await sequential.record(fix) for fix in fixes]
    assert {Recorded.LIVE, Recorded.OLDER, Recorded.IMPLAUSIBLE} <= set(expected)

    counting = Counting(make_store())
    store = CoalescingStore(counting)
    outcomes = await asyncio.gather(*(store.record(fix) for fix in fixes))

    assert outcomes == expected
    assert sum(counting.batches) == len(fixes)
    assert len(counting.batches) < len(fixes) / 10  # really shared
    for driver in {fix.driver_id for fix in fixes}:
        assert await store.current(driver) == await sequential.current(driver)


async def test_a_lone_report_is_written_at_once(make_store: Any) -> None:
    counting = Counting(make_store())
    store = CoalescingStore(counting)
    fix = one_each(1)[0]
    assert await asyncio.wait_for(store.record(fix), timeout=1.0) is Recorded.LIVE
    assert counting.batches == [1]


async def test_a_failed_batch_fails_each_caller_and_the_next_batch_works(
    make_store: Any,
) -> None:
    counting = Counting(make_store())
    store = CoalescingStore(counting)
    fixes = one_each(40)
    counting.fail_next = True
    results = await asyncio.gather(*(store.record(f) for f in fixes[:20]), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await store.current(fixes[0].driver_id) is None
    outcomes = await asyncio.gather(*(store.record(f) for f in fixes[20:]))
    assert set(outcomes) == {Recorded.LIVE}


async def test_going_offline_waits_for_the_reports_already_accepted(make_store: Any) -> None:
    store = CoalescingStore(Counting(make_store()))
    fix = one_each(1)[0]
    report = asyncio.create_task(store.record(fix))
    await asyncio.sleep(0)  # accepted, not yet written
    await store.forget(fix.driver_id)
    assert await report is Recorded.LIVE
    assert await store.current(fix.driver_id) is None
    found = await store.nearest(
        latitude=fix.latitude,
        longitude=fix.longitude,
        radius_m=1_000,
        limit=5,
        fresh_since=NOW - timedelta(minutes=1),
    )
    assert found == []


async def test_a_cancelled_caller_does_not_disturb_the_others(make_store: Any) -> None:
    store = CoalescingStore(Counting(make_store()))
    fixes = one_each(30)
    tasks = [asyncio.create_task(store.record(f)) for f in fixes]
    await asyncio.sleep(0)
    tasks[3].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[3], asyncio.CancelledError)
    assert [d for i, d in enumerate(done) if i != 3] == [Recorded.LIVE] * 29
    # The cancelled caller's fix had been accepted: it was still written.
    assert await store.current(fixes[3].driver_id) is not None
