"""Fees in the ride lifecycle (waiting, cancellation, no-show), receipts, and the
RideCompleted / RideCancelled events in the outbox, on both profiles.

Time is controlled by moving a ride's timestamps back in the database (or by settings with
zero thresholds), never by sleeping."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from ridehail.db.outbox import OutboxEvent
from ridehail.kernel.clock import utcnow
from ridehail.kernel.geo import offset
from ridehail.rides.models import Ride
from tests.api.client import HELSINKI, Api, User

PICKUP = HELSINKI
DROPOFF = offset(*HELSINKI, north_m=3000, east_m=2000)


async def _assigned(api: Api, rider: User, driver: User) -> str:
    """A ride of ``rider`` accepted by ``driver`` (who goes online next to the pickup)."""
    await api.go_online(driver, *offset(*PICKUP, north_m=200, east_m=0))
    ride = await api.request_ride(rider, PICKUP, DROPOFF)
    await api.wait_for_offer(driver, ride["ride_id"])
    accepted = await api.act(driver, ride["ride_id"], "accept")
    assert accepted.status_code == 200, accepted.text
    return str(ride["ride_id"])


async def _backdate(api: Api, ride_id: str, **seconds_ago: float) -> None:
    """Move the ride's timestamps (accepted_at=300 -> accepted 300 s ago)."""
    now = utcnow()
    values = {name: now - timedelta(seconds=s) for name, s in seconds_ago.items()}
    async with api.app.state.runtime.db.transaction() as session:
        await session.execute(update(Ride).where(Ride.id == ride_id).values(**values))


async def _events(api: Api, ride_id: str, topic: str) -> list[dict[str, Any]]:
    async with api.app.state.runtime.db.read_only() as session:
        rows = await session.execute(
            select(OutboxEvent.payload)
            .where(OutboxEvent.aggregate_id == ride_id, OutboxEvent.topic == topic)
            .order_by(OutboxEvent.seq)
        )
        return [dict(p) for p in rows.scalars()]


async def _receipt(api: Api, user: User | None, ride_id: str) -> Any:
    headers = user.headers if user else {}
    return await api.http.get(f"/api/v1/rides/{ride_id}/receipt", headers=headers)


async def test_waiting_is_charged_and_the_receipt_itemizes_the_trip(api: Api) -> None:
    rider, driver = await api.rider(), await api.driver("Wendy Waiter", plate="WAIT-1")
    ride_id = await _assigned(api, rider, driver)
    assert (await api.act(driver, ride_id, "arrive")).status_code == 200
    assert (await _receipt(api, rider, ride_id)).status_code == 409  # nothing to pay yet
    await _backdate(api, ride_id, arrived_at=600)  # waited 10 minutes, 2 of them free
    assert (await api.act(driver, ride_id, "start")).status_code == 200
    for i in range(1, 6):
        await api.move(driver, *offset(*PICKUP, north_m=200 + 400 * i, east_m=0))
    done = await api.act(driver, ride_id, "complete")
    assert done.status_code == 200, done.text
    ride = done.json()
    fare, estimate = ride["fare"], ride["fare_estimate"]
    assert fare["waiting_s"] == 600
    assert fare["breakdown"]["waiting"] == "2.40"  # 8 min x 0.30
    assert fare["breakdown"]["surge"] == "0.00" and fare["surge_multiplier"] == "1.0"
    assert sum(Decimal(v) for v in fare["breakdown"].values()) == Decimal(fare["amount"])
    assert fare["estimate_amount"] == estimate["amount"]
    assert Decimal(fare["estimate_difference"]) == Decimal(fare["amount"]) - Decimal(
        estimate["amount"]
    )

    admin = await api.admin()
    for who in (rider, driver, admin):
        resp = await _receipt(api, who, ride_id)
        assert resp.status_code == 200, resp.text
        receipt = resp.json()
        assert receipt["ride_id"] == ride_id and receipt["status"] == "completed"
        assert receipt["fare"] == fare and receipt["estimate"] == estimate
        assert receipt["estimate_difference"] == fare["estimate_difference"]
        assert receipt["driver"] == {"driver_id": driver.id, "name": "Wendy Waiter"}
        assert receipt["vehicle"]["plate"] == "WAIT-1"
        # The payments domain fills this in once it knows the payment (asynchronously).
        assert receipt["payment"] is None or receipt["payment"]["ride_id"] == ride_id
        assert receipt["pickup"] == {"latitude": PICKUP[0], "longitude": PICKUP[1]}
        assert len(receipt["route"]) == 6  # where :start found the driver, then 5 fixes
        assert receipt["route"][-1]["latitude"] > receipt["route"][0]["latitude"]
        assert receipt["distance_m"] == ride["distance_m"]
        assert receipt["requested_at"] and receipt["completed_at"] and receipt["started_at"]
    other_rider, other_driver = await api.rider(), await api.driver()
    assert (await _receipt(api, other_rider, ride_id)).status_code == 404
    assert (await _receipt(api, other_driver, ride_id)).status_code == 404
    assert (await _receipt(api, None, ride_id)).status_code == 401
    assert (await _receipt(api, admin, "ride_nope")).status_code == 404

    [completed] = await _events(api, ride_id, "rides.completed")
    assert completed["amount"] == fare["amount"] and completed["currency"] == "USD"
    # The event carries the fare as stored (the API adds the optional fields as null).
    assert completed["fare"] == {k: v for k, v in fare.items() if v is not None}
    assert completed["rider_id"] == rider.id and completed["driver_id"] == driver.id
    assert completed["payment_method_id"] is None
    assert await _events(api, ride_id, "rides.cancelled") == []
    statuses = [e["status"] for e in await _events(api, ride_id, "rides.status_changed")]
    assert statuses[-1] == "completed"


async def test_rider_cancel_is_free_within_grace_and_costs_the_fee_after(api: Api) -> None:
    rider, driver = await api.rider(), await api.driver()
    # Searching: free, and no receipt.
    searching = await api.request_ride(rider, offset(*PICKUP, north_m=-9000, east_m=0), DROPOFF)
    assert (await api.act(rider, searching["ride_id"], "cancel")).status_code == 200
    [event] = await _events(api, searching["ride_id"], "rides.cancelled")
    assert event["fee_kind"] is None and event["fee_amount"] == "0.00"
    assert event["driver_id"] is None and event["cancelled_by"] == "rider"

    # Accepted a moment ago: within the 120 s grace, free.
    ride_id = await _assigned(api, rider, driver)
    cancelled = await api.act(rider, ride_id, "cancel", reason="changed my mind")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["fare"] is None
    [event] = await _events(api, ride_id, "rides.cancelled")
    assert (event["fee_kind"], event["fee_amount"]) == (None, "0.00")
    assert event["reason"] == "changed my mind" and event["driver_id"] == driver.id
    assert (await _receipt(api, rider, ride_id)).status_code == 409

    # Accepted 5 minutes ago, driver waiting: the cancellation fee.
    ride_id = await _assigned(api, rider, driver)
    assert (await api.act(driver, ride_id, "arrive")).status_code == 200
    await _backdate(api, ride_id, accepted_at=300)
    cancelled = await api.act(rider, ride_id, "cancel")
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["cancelled_by"] == "rider"
    assert body["fare"]["amount"] == "5.00" and body["fare"]["currency"] == "USD"
    assert body["fare"]["breakdown"] == {"cancellation_fee": "5.00"}
    assert body["fare"]["fee_kind"] == "cancellation"
    [event] = await _events(api, ride_id, "rides.cancelled")
    assert (event["fee_kind"], event["fee_amount"], event["currency"]) == (
        "cancellation",
        "5.00",
        "USD",
    )
    assert event["cancelled_by"] == "rider" and event["payment_method_id"] is None
    receipt = await _receipt(api, rider, ride_id)
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["fare"] == body["fare"]
    assert receipt.json()["estimate_difference"] is None and receipt.json()["route"] == []


async def test_zero_grace_from_settings_charges_at_once(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(fare_cancellation_grace_s=0, fare_cancellation_fee="3.25") as api:
        rider, driver = await api.rider(), await api.driver()
        ride_id = await _assigned(api, rider, driver)
        body = (await api.act(rider, ride_id, "cancel")).json()
        assert body["fare"]["breakdown"] == {"cancellation_fee": "3.25"}


async def test_no_show_only_after_the_wait_limit_and_it_ends_the_ride(api: Api) -> None:
    rider, driver = await api.rider(), await api.driver()
    ride_id = await _assigned(api, rider, driver)
    # On the way: no rider can have failed to show yet.
    early = await api.act(driver, ride_id, "cancel", reason="rider_no_show")
    assert early.status_code == 409 and "pickup" in early.json()["detail"]
    assert (await api.act(driver, ride_id, "arrive")).status_code == 200
    too_soon = await api.act(driver, ride_id, "cancel", reason="rider_no_show")
    assert too_soon.status_code == 409
    assert "300 s" in too_soon.json()["detail"]
    assert (await api.ride(rider, ride_id))["status"] == "driver_arrived"  # unchanged
    await _backdate(api, ride_id, arrived_at=301)
    ended = await api.act(driver, ride_id, "cancel", reason="rider_no_show")
    assert ended.status_code == 200, ended.text
    body = ended.json()
    assert body["status"] == "cancelled" and body["cancelled_by"] == "driver"
    assert body["cancel_reason"] == "rider_no_show"
    assert body["driver"]["driver_id"] == driver.id  # not handed back to the search
    assert body["fare"]["breakdown"] == {"no_show_fee": "5.00"}
    [event] = await _events(api, ride_id, "rides.cancelled")
    assert (event["fee_kind"], event["fee_amount"], event["cancelled_by"]) == (
        "no_show",
        "5.00",
        "driver",
    )
    for who in (rider, driver):
        assert (await _receipt(api, who, ride_id)).json()["fare"]["amount"] == "5.00"


async def test_a_driver_giving_a_ride_back_writes_no_ride_cancelled(api: Api) -> None:
    rider, driver = await api.rider(), await api.driver()
    ride_id = await _assigned(api, rider, driver)
    await _backdate(api, ride_id, accepted_at=600)
    back = await api.act(driver, ride_id, "cancel", reason="flat tyre")
    assert back.status_code == 200 and back.json()["status"] == "searching"
    assert back.json()["fare"] is None
    assert await _events(api, ride_id, "rides.cancelled") == []


async def test_receipt_bad_input(api: Api) -> None:
    rider = await api.rider()
    ride = await api.request_ride(rider, PICKUP, DROPOFF)
    resp = await _receipt(api, rider, ride["ride_id"])
    assert resp.status_code == 409
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert (await _receipt(api, rider, "x" * 300)).status_code == 404
    bad = await api.http.get(
        f"/api/v1/rides/{ride['ride_id']}/receipt",
        headers={"Authorization": "Bearer nonsense"},
    )
    assert bad.status_code == 401
    for body in ({"reason": 5}, {"reason": "x" * 501}, {"reason": "a", "fee": "0"}):
        resp = await api.act(rider, ride["ride_id"], "cancel", **body)
        assert resp.status_code == 422, body
    assert (await api.ride(rider, ride["ride_id"]))["status"] == "searching"
