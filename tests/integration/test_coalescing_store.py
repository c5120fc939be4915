"""CoalescingStore: concurrent record() calls share batched writes and change no outcome."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from ridehail.kernel.geo import offset
from ridehail.locations.coalesce import CoalescingStore, Submits
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

    def submit_many(
        self, fixes: Sequence[LocationFix], done: Callable[[list[Recorded] | Exception], None]
    ) -> bool:
        """Counted too when the inner store sends batches itself (a Redis store with its
        ingest lane); refused, so that record_many is used, when it cannot or when the
        next batch is to fail."""
        if self.fail_next or not isinstance(self.inner, Submits):
            return False
        if not self.inner.submit_many(fixes, done):
            return False
        self.batches.append(len(fixes))
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-lane", marks=pytest.mark.redis),
    ]
)
def kind(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """Resolved synchronously: async fixtures cannot request fixtures from a running loop.
    "redis-lane" is the Redis store as production wires it: its ingest lane submits
    batches without waiting, several on the wire at once."""
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
    stores: list[RedisLocationStore] = []

    def factory() -> DriverLocationStore:
        if name == "memory":
            return InMemoryLocationStore(max_speed_mps=MAX_SPEED_MPS)
        client = aioredis.from_url(url)
        clients.append(client)
        stores.append(
            RedisLocationStore(
                client,
                key_prefix=f"{prefix}{len(clients)}:",
                max_speed_mps=MAX_SPEED_MPS,
                ingest_lane=name == "redis-lane",
            )
        )
        return stores[-1]

    yield factory
    for store in stores:
        await store.close()
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
    report = asyncio.ensure_future(store.record(fix))
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
    tasks = [asyncio.ensure_future(store.record(f)) for f in fixes]
    await asyncio.sleep(0)
    tasks[3].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[3], asyncio.CancelledError)
    assert [d for i, d in enumerate(done) if i != 3] == [Recorded.LIVE] * 29
    # The cancelled caller's fix had been accepted: it was still written.
    assert await store.current(fixes[3].driver_id) is not None


class OnTheWire(RedisLocationStore):
    """The Redis store, counting the batches submitted and not yet answered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_wire = 0
        self.most_on_wire = 0
        self.submitted = 0

    def submit_many(
        self, fixes: Sequence[LocationFix], done: Callable[[list[Recorded] | Exception], None]
    ) -> bool:
        def answered(outcome: list[Recorded] | Exception) -> None:
            self.on_wire -= 1
            done(outcome)

        if not super().submit_many(fixes, answered):
            return False
        self.submitted += 1
        self.on_wire += 1
        self.most_on_wire = max(self.most_on_wire, self.on_wire)
        return True


@pytest.mark.redis
async def test_batches_on_the_wire_together_are_applied_in_the_order_accepted(
    redis_url: str, redis_prefix: str
) -> None:
    """Production's wiring: several batches sent before the first is answered, and yet
    every driver's fixes land in the order they were reported (a batch overtaking an
    earlier one would make that one's fixes OLDER), positions announced as in production."""
    client = aioredis.from_url(redis_url)
    inner = OnTheWire(
        client,
        key_prefix=redis_prefix,
        max_speed_mps=MAX_SPEED_MPS,
        announce_prefix=f"{redis_prefix}rt:",
        ingest_lane=True,
    )
    store = CoalescingStore(inner)
    try:
        drivers, steps = 50, 60
        start = datetime.now(UTC)
        # The first write connects the lane (and reads who is followed): it waits.
        assert await store.record(LocationFix("primer", *CENTRE, start)) is Recorded.LIVE
        futures = []
        for step in range(steps):
            for n in range(drivers):
                lat, lon = offset(*CENTRE, north_m=10.0 * step, east_m=100.0 * n)
                futures.append(
                    store.record(LocationFix(f"drv_{n}", lat, lon, start + timedelta(seconds=step)))
                )
            await asyncio.sleep(0)  # a turn of the loop: this step's batch goes out
        outcomes = await asyncio.gather(*futures)
        assert outcomes == [Recorded.LIVE] * (drivers * steps)
        assert inner.submitted >= 3  # batches went the submitting way
        assert inner.most_on_wire >= 2  # and were on the wire together
        for n in range(drivers):
            current = await store.current(f"drv_{n}")
            assert current is not None
            assert current.recorded_at == start + timedelta(seconds=steps - 1)
        # Going offline right behind reports still on the wire: they are applied first.
        onward = offset(*CENTRE, north_m=10.0 * steps, east_m=0.0)
        last = [store.record(LocationFix("drv_0", *onward, start + timedelta(seconds=steps)))]
        await store.forget("drv_0")
        assert await asyncio.gather(*last) == [Recorded.LIVE]
        assert await store.current("drv_0") is None
    finally:
        await store.close()
        await client.aclose()
