"""WebSockets through a real server: ride events for rider/driver/admin, the driver's
stream, authentication by first message, ownership, throttling."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ridehail.kernel.geo import offset
from tests.api.client import HELSINKI, next_message, open_socket

DROPOFF = offset(*HELSINKI, north_m=3000, east_m=0)


async def _status(ws: ClientConnection, status: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            message = await next_message(ws, "ride.status")
            if message["ride"]["status"] == status:
                return message


async def _drain(ws: ClientConnection) -> None:
    async with asyncio.timeout(10):
        while True:
            await ws.recv()


async def _close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes the socket; its close code."""
    with pytest.raises(ConnectionClosed):
        await _drain(ws)
    return ws.close_code


async def test_rider_follows_the_ride_and_the_driver_live(make_live_api) -> None:  # type: ignore[no-untyped-def]
    async with make_live_api() as api:
        rider, driver, admin = await api.rider(), await api.driver("Lea"), await api.admin()
        await api.go_online(driver, *offset(*HELSINKI, north_m=250, east_m=0))
        ride = await api.request_ride(rider, HELSINKI, DROPOFF)
        path = f"/api/v1/rides/{ride['ride_id']}/events"
        rider_ws = await open_socket(api, path, rider)
        admin_ws = await open_socket(api, path, admin)
        snapshot = await next_message(rider_ws, "ride.status")
        assert snapshot["ride"]["ride_id"] == ride["ride_id"]
        assert snapshot["ride"]["status"] == "searching"

        await api.wait_for_offer(driver, ride["ride_id"])
        assert (await api.act(driver, ride["ride_id"], "accept")).status_code == 200
        en_route = await _status(rider_ws, "driver_en_route")
        assert en_route["ride"]["driver"]["name"] == "Lea"
        first_position = await next_message(rider_ws, "driver.location")
        assert (first_position["latitude"], first_position["longitude"]) == offset(
            *HELSINKI, north_m=250, east_m=0
        )
        assert "driver_id" not in first_position

        # Ten fixes in quick succession: the rider gets the latest, at most ~1/s.
        for i in range(10):
            await api.move(driver, *offset(*HELSINKI, north_m=240 - 20 * i, east_m=0))
        latest = offset(*HELSINKI, north_m=240 - 20 * 9, east_m=0)
        seen = []
        async with asyncio.timeout(10):
            while True:
                pos = await next_message(rider_ws, "driver.location")
                seen.append((pos["latitude"], pos["longitude"]))
                if seen[-1] == latest:
                    break
        assert len(seen) <= 3, seen

        for verb, status in (("arrive", "driver_arrived"), ("start", "in_progress")):
            assert (await api.act(driver, ride["ride_id"], verb)).status_code == 200
            await _status(rider_ws, status)
        assert (await api.act(driver, ride["ride_id"], "complete")).status_code == 200
        done = await _status(rider_ws, "completed")
        assert done["ride"]["fare"] is not None
        assert await _close_code(rider_ws) == 1000
        await _status(admin_ws, "completed")
        await admin_ws.close()


async def test_reconnecting_client_gets_a_snapshot(make_live_api) -> None:  # type: ignore[no-untyped-def]
    async with make_live_api() as api:
        rider, driver = await api.rider(), await api.driver()
        await api.go_online(driver, *offset(*HELSINKI, north_m=100, east_m=0))
        ride = await api.request_ride(rider, HELSINKI, DROPOFF)
        await api.wait_for_offer(driver, ride["ride_id"])
        assert (await api.act(driver, ride["ride_id"], "accept")).status_code == 200
        # Nobody was listening when it was accepted; a new connection still learns it.
        ws = await open_socket(api, f"/api/v1/rides/{ride['ride_id']}/events", rider)
        snapshot = await next_message(ws, "ride.status")
        assert snapshot["ride"]["status"] == "driver_en_route"
        position = await next_message(ws, "driver.location")
        assert position["latitude"] == offset(*HELSINKI, north_m=100, east_m=0)[0]
        await ws.close()


async def test_ride_events_refuse_strangers_and_missing_auth(make_live_api) -> None:  # type: ignore[no-untyped-def]
    async with make_live_api() as api:
        rider, stranger, driver = await api.rider(), await api.rider(), await api.driver()
        ride = await api.request_ride(rider, HELSINKI, DROPOFF)
        path = f"/api/v1/rides/{ride['ride_id']}/events"
        assert await _close_code(await open_socket(api, path, stranger)) == 4404
        assert await _close_code(await open_socket(api, path, driver)) == 4404
        assert (
            await _close_code(await open_socket(api, "/api/v1/rides/ride_nope/events", rider))
            == 4404
        )
        no_auth = await open_socket(api, path, None)
        await no_auth.send(json.dumps({"type": "hello"}))
        assert await _close_code(no_auth) == 4401
        bad = await open_socket(api, path, None)
        await bad.send(json.dumps({"type": "auth", "access_token": "forged"}))
        assert await _close_code(bad) == 4401
        garbage = await open_socket(api, path, None)
        await garbage.send("not json")
        assert await _close_code(garbage) == 4401


async def test_driver_stream_pushes_offers_and_takes_locations(make_live_api) -> None:  # type: ignore[no-untyped-def]
    async with make_live_api() as api:
        rider, driver, other, admin = (
            await api.rider(),
            await api.driver(),
            await api.driver(),
            await api.admin(),
        )
        resp = await api.http.put(
            f"/api/v1/drivers/{driver.id}/availability",
            json={"status": "available"},
            headers=driver.headers,
        )
        assert resp.status_code == 200
        stream = await open_socket(api, f"/api/v1/drivers/{driver.id}/stream", driver)
        spot = offset(*HELSINKI, north_m=120, east_m=30)
        await stream.send(
            json.dumps({"type": "location", "latitude": spot[0], "longitude": spot[1]})
        )
        await stream.send(json.dumps({"type": "location", "latitude": 95, "longitude": 24}))
        error = await next_message(stream, "error")
        assert error["status"] == 422 and error["errors"][0]["loc"] == ["latitude"]
        await stream.send(json.dumps({"type": "teleport"}))
        assert (await next_message(stream, "error"))["detail"] == "unknown message type"

        seen = await api.http.get(
            "/api/v1/drivers/nearby",
            params={"lat": HELSINKI[0], "lon": HELSINKI[1]},
            headers=admin.headers,
        )
        assert [(d["latitude"], d["longitude"]) for d in seen.json()["drivers"]] == [spot]

        ride = await api.request_ride(rider, HELSINKI, DROPOFF)
        offer = await next_message(stream, "offer")
        assert offer["ride_id"] == ride["ride_id"]
        assert offer["pickup"] == {"latitude": HELSINKI[0], "longitude": HELSINKI[1]}
        await stream.close()

        # Reconnecting shows the still-open offer as a snapshot.
        again = await open_socket(api, f"/api/v1/drivers/{driver.id}/stream", driver)
        assert (await next_message(again, "offer"))["ride_id"] == ride["ride_id"]
        await again.close()

        # Another driver may neither read this stream nor move this driver through it.
        intruder = await open_socket(api, f"/api/v1/drivers/{driver.id}/stream", other)
        assert await _close_code(intruder) == 4403
        as_rider = await open_socket(api, f"/api/v1/drivers/{driver.id}/stream", rider)
        assert await _close_code(as_rider) == 4403
