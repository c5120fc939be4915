"""Races fired for real: many concurrent requests, then the invariants."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from ridehail.dispatch import rounds as dispatch_rounds
from ridehail.kernel.clock import utcnow
from ridehail.kernel.geo import offset
from ridehail.rides.models import Ride
from tests.api.client import HELSINKI, Api, User

DROPOFF = offset(*HELSINKI, north_m=2000, east_m=500)


async def _offer(api: Api, ride_id: str, driver: User) -> bool:
    """Hand ``driver`` an open offer as a broadcasting dispatcher would; False if the
    database refused it."""
    runtime = api.app.state.runtime
    async with runtime.db.transaction() as session:
        ride = await session.get(Ride, ride_id)
        assert ride is not None
        offer = await dispatch_rounds.offer_ride(
            session, ride=ride, driver_id=driver.id, distance_m=100.0, now=utcnow(), ttl_s=60
        )
    return offer is not None


async def _codes(calls: list[Any]) -> Counter[int]:
    responses = await asyncio.gather(*calls)
    return Counter(r.status_code for r in responses)


async def test_fifty_drivers_accept_one_ride_exactly_one_wins(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        rider = await api.rider()
        ride = await api.request_ride(rider, HELSINKI, DROPOFF)
        drivers = [await api.driver(f"D{i}") for i in range(50)]
        for d in drivers:
            await _offer(api, ride["ride_id"], d)
        codes = await _codes([api.act(d, ride["ride_id"], "accept") for d in drivers])
        assert codes == Counter({200: 1, 409: 49}), codes
        final = await api.ride(rider, ride["ride_id"])
        assert final["status"] == "driver_en_route"
        assert final["driver"]["driver_id"] in {d.id for d in drivers}


async def test_one_driver_fifty_concurrent_accepts(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        rider, driver = await api.rider(), await api.driver()
        ride = await api.request_ride(rider, HELSINKI, DROPOFF)
        await _offer(api, ride["ride_id"], driver)
        codes = await _codes([api.act(driver, ride["ride_id"], "accept") for _ in range(50)])
        assert codes == Counter({200: 1, 409: 49}), codes


async def test_a_driver_never_holds_two_open_offers(make_api) -> None:  # type: ignore[no-untyped-def]
    """Whichever dispatcher makes them: the database refuses a second open offer, also when
    fifty are made at once."""
    async with make_api(dispatch_enabled=False) as api:
        driver = await api.driver()
        rides = [await api.request_ride(await api.rider(), HELSINKI, DROPOFF) for _ in range(50)]
        made = await asyncio.gather(*(_offer(api, r["ride_id"], driver) for r in rides))
        assert sum(made) == 1
        assert len(await api.offers(driver)) == 1


async def test_one_driver_two_rides_at_most_one_succeeds(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        for _round in range(5):
            driver = await api.driver()
            riders = [await api.rider(), await api.rider()]
            rides = [await api.request_ride(r, HELSINKI, DROPOFF) for r in riders]
            assert await _offer(api, rides[0]["ride_id"], driver)
            # The second offer is refused while the first is open ...
            assert not await _offer(api, rides[1]["ride_id"], driver)
            # ... so a driver racing to accept both gets at most one.
            codes = await _codes([api.act(driver, r["ride_id"], "accept") for r in rides])
            assert codes == Counter({200: 1, 404: 1}), codes  # no offer of the second: 404
            runtime = api.app.state.runtime
            async with runtime.db.read_only() as session:
                active = await session.scalar(
                    select(func.count())
                    .select_from(Ride)
                    .where(
                        Ride.driver_id == driver.id,
                        Ride.status.in_(["driver_en_route", "driver_arrived", "in_progress"]),
                    )
                )
            assert active == 1


async def test_concurrent_cancel_and_accept_never_both_win(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        for _round in range(5):
            rider, driver = await api.rider(), await api.driver()
            ride = await api.request_ride(rider, HELSINKI, DROPOFF)
            await _offer(api, ride["ride_id"], driver)
            accept, cancel = await asyncio.gather(
                api.act(driver, ride["ride_id"], "accept"),
                api.act(rider, ride["ride_id"], "cancel"),
            )
            final = await api.ride(rider, ride["ride_id"])
            assert accept.status_code in (200, 409) and cancel.status_code == 200
            if accept.status_code == 200:
                # The cancel came second: the ride was assigned, then cancelled by the rider.
                assert final["status"] == "cancelled" and final["cancelled_by"] == "rider"
            else:
                assert final["status"] == "cancelled" and final["driver"] is None
