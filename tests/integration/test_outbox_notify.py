"""On PostgreSQL a commit that wrote events wakes the relays of other processes (NOTIFY),
so an event does not wait for the next poll; a lost listening connection is re-opened."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ridehail.contracts import RideRequested
from ridehail.db import Database, add_event
from ridehail.messaging import InProcessEventBus, Message
from ridehail.messaging.relay import OutboxRelay
from tests.profiles import asyncpg_dsn, create_database, drop_database

#: Far longer than the test waits: only the NOTIFY can make the relay publish in time.
POLL_S = 60.0


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    url = await create_database(postgres_url)
    yield url
    await drop_database(postgres_url, url)


async def _write_event(db: Database) -> str:
    event = RideRequested(
        ride_id=f"ride_{uuid.uuid4().hex}", rider_id="rdr_x", pickup_latitude=0, pickup_longitude=0
    )
    async with db.transaction() as session:
        add_event(session, event)
    return event.ride_id


async def _arrives(received: list[str], ride_id: str, within_s: float = 5.0) -> float:
    began = time.monotonic()
    while ride_id not in received:
        assert time.monotonic() - began < within_s, "the relay did not publish in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - began


async def test_a_commit_in_another_process_wakes_the_relay(database: str) -> None:
    writer, relay_db = Database(database), Database(database)  # two "processes"
    bus = InProcessEventBus()
    received: list[str] = []

    async def handle(message: Message) -> None:
        received.append(str(message.payload["ride_id"]))

    bus.subscribe(group="test", topics=[RideRequested.topic], handler=handle)
    await bus.start()
    relay = OutboxRelay(db=relay_db, bus=bus, poll_s=POLL_S)
    await relay.start()
    try:
        await asyncio.sleep(0.3)  # the relay's first poll has run; now it waits a minute
        assert await _arrives(received, await _write_event(writer)) < 2.0

        # The listening connection dies (a PostgreSQL restart, a proxy): it comes back.
        conn = await asyncpg.connect(asyncpg_dsn(database))
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            )
        finally:
            await conn.close()
        assert killed == 1
        await asyncio.sleep(1.5)  # the relay re-listens after a second
        assert await _arrives(received, await _write_event(writer)) < 2.0
    finally:
        await relay.stop()
        await bus.stop()
        await writer.dispose()
        await relay_db.dispose()
