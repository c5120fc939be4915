"""Surge through the API on both profiles: demand and supply made through the API, the
updater run (deterministically, by hand), the multiplier shown to admins, locked into new
rides and used by their final fare."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from ridehail.dispatch import SurgeUpdater
from ridehail.kernel.clock import utcnow
from ridehail.kernel.geo import offset
from ridehail.pricing import SurgeCell, cell_of, disk, save_surge
from tests.api.client import HELSINKI, Api, User

PICKUP = HELSINKI
DROPOFF = offset(*HELSINKI, north_m=3000, east_m=2000)
CELL = cell_of(*PICKUP, 8)
# The updater runs once at start, then only when the test calls it.
MANUAL = {"surge_interval_s": 3600.0, "surge_cache_s": 0.0}


def _updater(api: Api) -> SurgeUpdater:
    return next(c for c in api.app.state.container.components if isinstance(c, SurgeUpdater))


async def _surge_map(api: Api, admin_headers: dict[str, str]) -> dict[str, dict[str, object]]:
    resp = await api.http.get("/api/v1/pricing/surge", headers=admin_headers)
    assert resp.status_code == 200, resp.text
    return {c["cell"]: c for c in resp.json()["cells"]}


async def test_demand_over_supply_surges_and_locks_into_new_rides(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False, **MANUAL) as api:
        admin = await api.admin()
        driver = await api.driver()
        await api.go_online(driver, *PICKUP)
        # A driver far away and one who went offline are no supply here.
        far, gone = await api.driver(), await api.driver()
        await api.go_online(far, *offset(*PICKUP, north_m=20_000, east_m=0))
        await api.go_online(gone, *offset(*PICKUP, north_m=100, east_m=0))
        offline = await api.http.put(
            f"/api/v1/drivers/{gone.id}/availability",
            json={"status": "offline"},
            headers=gone.headers,
        )
        assert offline.status_code == 200
        for _ in range(3):
            ride = await api.request_ride(await api.rider(), PICKUP, DROPOFF)
            assert ride["surge_multiplier"] == "1.0"

        await _updater(api).update()
        cells = await _surge_map(api, admin.headers)
        here = cells[CELL]
        # demand 3, supply 1 (neighbours empty): ratio 3 -> 1 + 0.5 x (3 - 1) = 2.0
        assert (here["demand"], here["supply"], here["multiplier"]) == (3, 1, "2.0")
        assert abs(here["latitude"] - PICKUP[0]) < 0.01  # type: ignore[operator]
        assert here["resolution"] == 8 and here["updated_at"]
        # Each neighbour: demand 0.5 x 3 over supply max(1, 0.5 x 1): 1.25 -> 1.2.
        for neighbour in disk(CELL):
            if neighbour != CELL:
                assert cells[neighbour]["multiplier"] == "1.2"
                assert (cells[neighbour]["demand"], cells[neighbour]["supply"]) == (0, 0)

        rider = await api.rider()
        quoted = await api.http.get(
            "/api/v1/pricing/estimate",
            params={
                "start_latitude": PICKUP[0],
                "start_longitude": PICKUP[1],
                "end_latitude": DROPOFF[0],
                "end_longitude": DROPOFF[1],
            },
            headers=rider.headers,
        )
        assert quoted.json()["surge_multiplier"] == "2.0"
        locked = await api.request_ride(rider, PICKUP, DROPOFF)
        assert locked["surge_multiplier"] == "2.0"
        estimate = locked["fare_estimate"]
        assert estimate == quoted.json()
        lines = estimate["breakdown"]
        metered = sum(Decimal(lines[k]) for k in ("base", "distance", "time"))
        assert Decimal(lines["surge"]) == metered  # x2.0: the surge line doubles it
        assert sum(Decimal(v) for v in lines.values()) == Decimal(estimate["amount"])

        # A fourth request raises it; the ride already requested keeps its multiplier.
        await _updater(api).update()
        assert (await _surge_map(api, admin.headers))[CELL]["multiplier"] == "2.5"
        assert (await api.ride(rider, locked["ride_id"]))["surge_multiplier"] == "2.0"

        # Five minutes on, the requests have left the window (and the driver's fix is
        # stale): every surge falls back to 1.0 and the cells, with nothing going on, go.
        later = await _updater(api).update(now=utcnow() + timedelta(seconds=301))
        # (Every surging cell was looked at with its neighbours: two rings around CELL.)
        assert set(later) == {n for c in disk(CELL) for n in disk(c)}
        assert all(c.multiplier == 1 for c in later.values())
        assert await _surge_map(api, admin.headers) == {}


async def test_the_final_fare_uses_the_multiplier_locked_at_request(make_api) -> None:  # type: ignore[no-untyped-def]
    # No updater at all: the cells written here stay as they are.
    async with make_api(surge_enabled=False, surge_cache_s=0.0) as api:
        assert not any(isinstance(c, SurgeUpdater) for c in api.app.state.container.components)
        db = api.app.state.runtime.db
        async with db.transaction() as session:
            surge = {CELL: SurgeCell(CELL, 5, 1, Decimal("1.5"))}
            await save_surge(session, surge, resolution=8, now=utcnow())
        rider, driver = await api.rider(), await api.driver()
        await api.go_online(driver, *offset(*PICKUP, north_m=200, east_m=0))
        ride = await api.request_ride(rider, PICKUP, DROPOFF)
        assert ride["surge_multiplier"] == "1.5"
        # The surge changes after the request: the ride does not care.
        async with db.transaction() as session:
            surge = {CELL: SurgeCell(CELL, 9, 1, Decimal("3.0"))}
            await save_surge(session, surge, resolution=8, now=utcnow())
        await api.wait_for_offer(driver, ride["ride_id"])
        for verb in ("accept", "arrive", "start"):
            assert (await api.act(driver, ride["ride_id"], verb)).status_code == 200
        done = await api.act(driver, ride["ride_id"], "complete")
        assert done.status_code == 200, done.text
        fare = done.json()["fare"]
        assert fare["surge_multiplier"] == "1.5"
        lines = fare["breakdown"]
        metered = sum(Decimal(lines[k]) for k in ("base", "distance", "time"))
        assert Decimal(lines["surge"]) == (metered * Decimal("0.5")).quantize(Decimal("0.01"))


async def test_surge_map_is_for_admins_only(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False, **MANUAL) as api:
        rider, driver = await api.rider(), await api.driver()
        assert (await api.http.get("/api/v1/pricing/surge")).status_code == 401
        for who in (rider, driver):
            resp = await api.http.get("/api/v1/pricing/surge", headers=who.headers)
            assert resp.status_code == 403
            assert resp.headers["content-type"].startswith("application/problem+json")
        admin = await api.admin()
        resp = await api.http.get("/api/v1/pricing/surge", headers=admin.headers)
        assert resp.status_code == 200
        assert resp.json() == {"resolution": 8, "window_s": 300.0, "cells": []}
        bad = await api.http.get("/api/v1/pricing/surge", headers={"Authorization": "Bearer x.y.z"})
        assert bad.status_code == 401


async def test_a_driver_on_a_ride_is_not_supply(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(**MANUAL) as api:
        admin = await api.admin()
        first, second = await api.driver(), await api.driver()
        await api.go_online(first, *PICKUP)
        await api.go_online(second, *offset(*PICKUP, north_m=50, east_m=0))
        ride = await api.request_ride(await api.rider(), PICKUP, DROPOFF)
        taker = await _offered(api, (first, second), ride["ride_id"])
        accepted = await api.act(taker, ride["ride_id"], "accept")
        assert accepted.status_code == 200, accepted.text

        await _updater(api).update()
        here = (await _surge_map(api, admin.headers))[CELL]
        # Two drivers online at the pickup; the one who took the ride is not supply.
        assert (here["demand"], here["supply"]) == (1, 1)


async def _offered(api: Api, drivers: tuple[User, ...], ride_id: str) -> User:
    """Whichever of ``drivers`` is offered the ride (waiting for the dispatcher)."""
    for _ in range(200):
        for driver in drivers:
            if any(o["ride_id"] == ride_id for o in await api.offers(driver)):
                return driver
        await asyncio.sleep(0.05)
    raise AssertionError("nobody was offered the ride")
