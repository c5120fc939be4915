"""In-app notifications pushed live over a real server's WebSockets: the new notifications
stream, a ride's events socket and a driver's stream; each user gets only their own."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ridehail.contracts import PaymentFailed, RideCompleted
from ridehail.kernel.geo import offset
from tests.api.client import HELSINKI, User, next_message, open_socket
from tests.api.notify_support import emit, settings

STREAM = "/api/v1/notifications/stream"


def payment_failed(rider: User, ride_id: str) -> PaymentFailed:
    return PaymentFailed(
        payment_id="pay_x",
        ride_id=ride_id,
        rider_id=rider.id,
        amount="9.90",
        currency="USD",
        reason="insufficient_funds",
        attempts=1,
    )


async def _drain(ws: ClientConnection) -> None:
    async with asyncio.timeout(10):
        while True:
            await ws.recv()


async def test_the_notification_stream_pushes_the_callers_own(  # type: ignore[no-untyped-def]
    make_live_api, tmp_path: Path
) -> None:
    async with make_live_api(**settings(tmp_path)) as api:
        alice, bob = await api.rider(), await api.rider()
        await emit(api, payment_failed(alice, "ride_before"))
        # Told before the socket opened: in the snapshot, once it was sent.
        async with asyncio.timeout(10):
            while not (await api.http.get("/api/v1/notifications", headers=alice.headers)).json()[
                "notifications"
            ]:
                await asyncio.sleep(0.05)
        alice_ws, bob_ws = (
            await open_socket(api, STREAM, alice),
            await open_socket(api, STREAM, bob),
        )
        snapshot = await next_message(alice_ws, "notifications.snapshot")
        assert [n["data"]["ride_id"] for n in snapshot["notifications"]] == ["ride_before"]
        assert (await next_message(bob_ws, "notifications.snapshot"))["notifications"] == []

        await emit(api, payment_failed(alice, "ride_a"))
        await emit(api, payment_failed(bob, "ride_b"))
        # A notification in the snapshot may still be pushed once it is sent (the snapshot
        # lists what exists, the push follows the send): clients drop ids they already have.
        seen = {n["notification_id"] for n in snapshot["notifications"]}
        pushed = await next_message(alice_ws, "notification")
        while pushed["notification_id"] in seen:
            pushed = await next_message(alice_ws, "notification")
        assert pushed["kind"] == "payment_failed" and pushed["data"]["ride_id"] == "ride_a"
        assert pushed["notification_id"].startswith("ntf_")
        # Bob's first push is his own: Alice's, sent before it, never reached him.
        assert (await next_message(bob_ws, "notification"))["data"]["ride_id"] == "ride_b"
        await alice_ws.close()
        await bob_ws.close()


async def test_the_notification_stream_needs_auth(make_live_api) -> None:  # type: ignore[no-untyped-def]
    async with make_live_api() as api:
        for first in ({"type": "hello"}, {"type": "auth", "access_token": "forged"}):
            ws = await open_socket(api, STREAM, None)
            await ws.send(json.dumps(first))
            with pytest.raises(ConnectionClosed):
                await _drain(ws)
            assert ws.close_code == 4401


async def test_ride_socket_and_driver_stream_carry_notifications(  # type: ignore[no-untyped-def]
    make_live_api, tmp_path: Path
) -> None:
    async with make_live_api(**settings(tmp_path), dispatch_enabled=False) as api:
        rider, driver, other = await api.rider(), await api.driver(), await api.rider()
        dropoff = offset(*HELSINKI, north_m=2000, east_m=0)
        ride = await api.request_ride(rider, HELSINKI, dropoff)
        ride_ws = await open_socket(api, f"/api/v1/rides/{ride['ride_id']}/events", rider)
        await next_message(ride_ws, "ride.status")  # subscribed
        stream = await open_socket(api, f"/api/v1/drivers/{driver.id}/stream", driver)
        await stream.send(json.dumps({"type": "teleport"}))
        await next_message(stream, "error")  # subscribed: frames are read only after that

        await emit(api, payment_failed(other, "ride_other"))  # nobody here is told
        await emit(api, payment_failed(rider, ride["ride_id"]))
        note = await next_message(ride_ws, "notification")
        assert note["kind"] == "payment_failed" and note["data"]["ride_id"] == ride["ride_id"]

        await emit(
            api,
            RideCompleted(
                ride_id="ride_done",
                rider_id=other.id,
                driver_id=driver.id,
                amount="9.90",
                currency="USD",
                fare={"amount": "9.90", "currency": "USD"},
            ),
        )
        pushed = await next_message(stream, "notification")
        assert pushed["kind"] == "trip_completed" and pushed["data"]["ride_id"] == "ride_done"
        await ride_ws.close()
        await stream.close()
