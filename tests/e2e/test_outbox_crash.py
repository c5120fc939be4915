"""The outbox relay SIGKILLed between publishing a batch and marking it published.

The kill is made to land exactly there: the test holds ``LOCK TABLE outbox_events IN SHARE
MODE``, which lets the relay's ``SELECT ... FOR UPDATE SKIP LOCKED`` through (ROW SHARE) but
blocks its ``UPDATE ... SET published_at`` (ROW EXCLUSIVE). The relay has then published the
batch to Redis Streams and waits inside its transaction; it is killed there. A new relay
publishes the same rows again (they are still unpublished), and the consumer applies the
event once.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import asyncpg
import pytest
import redis.asyncio as aioredis

from ridehail.contracts import RideCompleted
from ridehail.db import Database, add_event
from tests import profiles
from tests.e2e.conftest import Processes, server_env

pytestmark = pytest.mark.e2e

TOPIC = RideCompleted.topic


async def _wait_for(check, timeout: float = 20.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_relay_killed_between_publish_and_mark_is_redelivered_and_applied_once(
    pg_db: str, redis_url: str, redis_prefix: str, processes: Processes
) -> None:
    env = server_env(
        {
            "RIDEHAIL_DATABASE_URL": pg_db,
            "RIDEHAIL_REDIS_URL": redis_url,
            "RIDEHAIL_REDIS_KEY_PREFIX": redis_prefix,
            "RIDEHAIL_PAYMENTS_SANDBOX_LATENCY_MS": "0",
        }
    )
    event = RideCompleted(
        ride_id="ride_relaycrash0000000000001",
        rider_id="rdr_relaycrash000000000001",
        driver_id="drv_relaycrash000000000001",
        amount="12.40",
        currency="USD",
        fare={"amount": "12.40", "currency": "USD", "breakdown": {}},
        payment_method_id=None,
    )
    db = Database(pg_db)
    try:
        async with db.transaction() as session:
            add_event(session, event)
    finally:
        await db.dispose()

    redis = aioredis.from_url(redis_url, decode_responses=True)
    stream = f"{redis_prefix}stream:{TOPIC}"
    lock = await asyncpg.connect(profiles.asyncpg_dsn(pg_db))
    try:
        tx = lock.transaction()
        await tx.start()
        await lock.execute("LOCK TABLE outbox_events IN SHARE MODE")
        relay = processes.start(["worker", "relay"], env, "relay-1")

        async def published() -> int:
            return int(await redis.xlen(stream))

        await _wait_for(published, what="the first publish")

        async def blocked_on_mark() -> bool:
            waiting = await lock.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query ILIKE 'UPDATE outbox_events%'"
            )
            return bool(waiting)

        await _wait_for(blocked_on_mark, what="the relay to wait on its mark")
        relay.kill()
        relay.wait(timeout=10)
        await tx.rollback()

        marked = await lock.fetchval(
            "SELECT published_at FROM outbox_events WHERE event_id = $1", event.event_id
        )
        assert marked is None, "the killed relay's mark must not have committed"

        processes.start(["worker", "relay"], env, "relay-2")

        async def republished() -> bool:
            if await redis.xlen(stream) < 2:
                return False
            return bool(
                await lock.fetchval(
                    "SELECT published_at IS NOT NULL FROM outbox_events WHERE event_id = $1",
                    event.event_id,
                )
            )

        await _wait_for(republished, what="the second relay to publish and mark")
        entries = await redis.xrange(stream)
        ids = [fields["id"] for _, fields in entries]  # type: ignore[union-attr,index]
        assert ids == [event.event_id, event.event_id]

        # The consumer sees the event twice and applies it once: one payment for the ride.
        processes.start(["worker", "payments"], env, "payments")

        async def charged() -> bool:
            status = await lock.fetchval(
                "SELECT status FROM payments_payments WHERE ride_id = $1", event.ride_id
            )
            return bool(status == "captured")

        await _wait_for(charged, what="the ride's payment")

        async def both_entries_acknowledged() -> bool:
            groups = await redis.xinfo_groups(stream)
            payments = [g for g in groups if g["name"] == "payments"]
            # Redis 7 counts the entries a group has read: both copies reached the consumer
            # (and none is left unacknowledged), so "applied once" below is about a real
            # second delivery, not one that never came.
            return (
                bool(payments) and payments[0]["pending"] == 0 and payments[0]["entries-read"] == 2
            )

        await _wait_for(both_entries_acknowledged, what="the payments group to read both")
        payments = await lock.fetch(
            "SELECT id, amount FROM payments_payments WHERE ride_id = $1", event.ride_id
        )
        assert len(payments) == 1
        assert Decimal(payments[0]["amount"]) == Decimal("12.40")
        processed = await lock.fetchval(
            "SELECT count(*) FROM messaging_processed_events"
            " WHERE consumer = 'payments' AND event_id = $1",
            event.event_id,
        )
        assert processed == 1
    finally:
        await lock.close()
        await redis.aclose()
