"""The outbox publishes only what committed, and work survives a process restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from ridehail import pricing
from ridehail.db import OutboxEvent
from ridehail.kernel.geo import offset
from ridehail.rides import service as ride_service
from tests.api.client import HELSINKI


class Boom(Exception):
    pass


async def test_rolled_back_ride_and_its_event_are_never_published(make_api) -> None:  # type: ignore[no-untyped-def]
    """Nothing is published from a transaction that rolled back; a committed ride's event
    is published once and marked."""
    async with make_api(dispatch_enabled=False) as api:
        runtime = api.app.state.runtime
        relay = api.app.state.container.relay
        rider = await api.rider()
        policy = pricing.policy_from_settings(runtime.settings)
        trip = ride_service.Trip(start=HELSINKI, end=offset(*HELSINKI, north_m=1000, east_m=0))

        async def request_then_fail() -> None:
            async with runtime.db.transaction() as session:
                await ride_service.request_ride(
                    session, rider_id=rider.id, trip=trip, policy=policy
                )
                raise Boom

        with pytest.raises(Boom):
            await request_then_fail()
        async with runtime.db.read_only() as session:
            assert await session.scalar(select(func.count()).select_from(OutboxEvent)) == 0
        # A committed one is published and marked.
        ride = await api.request_ride(rider, HELSINKI, offset(*HELSINKI, north_m=1000, east_m=0))
        rows: list[tuple[str, str, bool]] = []
        for _ in range(100):  # the running relay publishes it; wait for the mark
            await relay.relay_once()
            async with runtime.db.read_only() as session:
                rows = [
                    (r.aggregate_id, r.topic, r.published_at is not None)
                    for r in (await session.execute(select(OutboxEvent))).scalars()
                ]
            if rows and rows[0][2]:
                break
            await asyncio.sleep(0.05)
        assert rows == [(ride["ride_id"], "rides.requested", True)]


@pytest.mark.parametrize("profile", ["production"])
async def test_a_ride_requested_while_no_dispatcher_runs_is_dispatched_after_restart(  # type: ignore[no-untyped-def]
    make_api,
    profile: str,
) -> None:
    # First process: API only; the ride's event waits in the Redis stream.
    async with make_api(dispatch_enabled=False) as api:
        rider, driver = await api.rider(), await api.driver()
        await api.go_online(driver, *offset(*HELSINKI, north_m=150, east_m=0))
        ride = await api.request_ride(rider, HELSINKI, offset(*HELSINKI, north_m=2000, east_m=0))
        await asyncio.sleep(0.3)
        assert await api.offers(driver) == []
    # A new process with a dispatcher picks it up from the stream and the database.
    async with make_api() as api:
        offer = await api.wait_for_offer(driver, ride["ride_id"])
        assert offer["ride_id"] == ride["ride_id"]


async def test_relay_prunes_old_published_events_only(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        runtime = api.app.state.runtime
        relay = api.app.state.container.relay
        rider = await api.rider()
        await api.request_ride(rider, HELSINKI, offset(*HELSINKI, north_m=1000, east_m=0))
        for _ in range(100):
            await relay.relay_once()
            async with runtime.db.read_only() as session:
                published = await session.scalar(
                    select(func.count())
                    .select_from(OutboxEvent)
                    .where(OutboxEvent.published_at.is_not(None))
                )
            if published:
                break
            await asyncio.sleep(0.05)
        now = datetime.now(UTC)
        assert await relay.prune(now=now) == 0  # fresh: kept
        assert await relay.prune(now=now + timedelta(days=2)) == 1
        async with runtime.db.read_only() as session:
            assert await session.scalar(select(func.count()).select_from(OutboxEvent)) == 0
