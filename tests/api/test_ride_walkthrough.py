"""The ride of the README, through the ASGI app, on both profiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from ridehail.kernel.geo import haversine_m, offset
from tests.api.client import HELSINKI, Api

PICKUP = HELSINKI
DROPOFF = offset(*HELSINKI, north_m=3000, east_m=2000)


async def test_full_ride_from_request_to_fare(api: Api) -> None:
    rider = await api.rider()
    near = await api.driver("Near Nadia", plate="NEAR-1")
    far = await api.driver("Far Farid", plate="FAR-1")
    await api.go_online(near, *offset(*PICKUP, north_m=300, east_m=0))
    await api.go_online(far, *offset(*PICKUP, north_m=2500, east_m=0))

    ride = await api.request_ride(rider, PICKUP, DROPOFF)
    assert ride["status"] == "searching"
    assert ride["driver"] is None
    estimate = ride["fare_estimate"]
    assert Decimal(estimate["amount"]) > 0 and estimate["currency"] == "USD"

    offer = await api.wait_for_offer(near, ride["ride_id"])
    assert offer["pickup"] == {"latitude": PICKUP[0], "longitude": PICKUP[1]}
    assert 250 < offer["distance_to_pickup_m"] < 350
    assert await api.offers(far) == []

    accepted = await api.act(near, ride["ride_id"], "accept")
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["status"] == "driver_en_route"
    assert body["driver"] == {"driver_id": near.id, "name": "Near Nadia"}
    assert body["vehicle"]["plate"] == "NEAR-1"
    seen_by_rider = await api.ride(rider, ride["ride_id"])
    assert seen_by_rider["status"] == "driver_en_route"
    assert seen_by_rider["driver"]["driver_id"] == near.id

    assert (await api.act(near, ride["ride_id"], "arrive")).json()["status"] == "driver_arrived"
    assert (await api.act(near, ride["ride_id"], "start")).json()["status"] == "in_progress"

    # A fix from before the trip, delivered late, is not part of it.
    late = (datetime.now(UTC) - timedelta(seconds=100)).isoformat()
    await api.move(near, *offset(*PICKUP, north_m=-5000, east_m=0), recorded_at=late)
    # The trip: from where the driver stood at :start (300 m north of the pickup), 10 fixes
    # 400 m apart up to 4 km north.
    t0 = datetime.now(UTC)
    points = [offset(*PICKUP, north_m=400 * i, east_m=0) for i in range(1, 11)]
    for i, (lat, lon) in enumerate(points):
        stamp = (t0 + timedelta(seconds=1 + i)).isoformat()
        await api.move(near, lat, lon, recorded_at=stamp, accuracy_m=5.0)
    points.insert(0, offset(*PICKUP, north_m=300, east_m=0))

    done = await api.act(near, ride["ride_id"], "complete")
    assert done.status_code == 200, done.text
    completed = done.json()
    assert completed["status"] == "completed"
    fare = completed["fare"]
    driven = haversine_m(*points[0], *points[-1])
    assert abs(completed["distance_m"] - driven) < 5
    assert abs(fare["distance_m"] - driven) < 5
    parts = fare["breakdown"]
    assert sum(Decimal(v) for v in parts.values()) == Decimal(fare["amount"])
    assert Decimal(parts["distance"]) == (Decimal("1.20") * fare["distance_m"] / 1000).quantize(
        Decimal("0.01")
    )

    final = await api.ride(rider, ride["ride_id"])
    assert final["status"] == "completed" and final["fare"] == fare

    history = await api.http.get("/api/v1/rides", headers=rider.headers)
    assert [r["ride_id"] for r in history.json()["rides"]] == [ride["ride_id"]]
    driver_history = await api.http.get("/api/v1/rides", headers=near.headers)
    assert [r["ride_id"] for r in driver_history.json()["rides"]] == [ride["ride_id"]]


async def test_offer_expires_and_moves_to_next_nearest(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_offer_ttl_s=0.5) as api:
        rider = await api.rider()
        first = await api.driver("First")
        second = await api.driver("Second")
        await api.go_online(first, *offset(*PICKUP, north_m=200, east_m=0))
        await api.go_online(second, *offset(*PICKUP, north_m=900, east_m=0))
        ride = await api.request_ride(rider, PICKUP, DROPOFF)
        await api.wait_for_offer(first, ride["ride_id"])
        # First ignores it; after expiry the second nearest gets it.
        await api.wait_for_offer(second, ride["ride_id"], timeout=10)
        late = await api.act(first, ride["ride_id"], "accept")
        assert late.status_code == 409
        ok = await api.act(second, ride["ride_id"], "accept")
        assert ok.status_code == 200


async def test_decline_passes_ride_to_next_driver(api: Api) -> None:
    rider = await api.rider()
    first = await api.driver("First")
    second = await api.driver("Second")
    await api.go_online(first, *offset(*PICKUP, north_m=200, east_m=0))
    await api.go_online(second, *offset(*PICKUP, north_m=900, east_m=0))
    ride = await api.request_ride(rider, PICKUP, DROPOFF)
    await api.wait_for_offer(first, ride["ride_id"])
    declined = await api.act(first, ride["ride_id"], "decline")
    assert declined.status_code == 200
    await api.wait_for_offer(second, ride["ride_id"])
    assert await api.offers(first) == []
    again = await api.act(first, ride["ride_id"], "decline")
    assert again.status_code == 409


async def test_no_driver_within_search_time(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_search_timeout_s=0.5) as api:
        rider = await api.rider()
        ride = await api.request_ride(rider, PICKUP, DROPOFF)
        final = await api.wait_for_status(rider, ride["ride_id"], "no_drivers_available")
        assert final["driver"] is None


async def test_stale_or_offline_or_far_drivers_get_no_offer(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_search_timeout_s=1.0, location_stale_after_s=30) as api:
        rider = await api.rider()
        stale = await api.driver("Stale")
        offline = await api.driver("Offline")
        far = await api.driver("Far")
        old = (datetime.now(UTC) - timedelta(seconds=120)).isoformat()
        await api.go_online(stale, *offset(*PICKUP, north_m=100, east_m=0), recorded_at=old)
        await api.move(offline, *offset(*PICKUP, north_m=100, east_m=0))  # never went available
        await api.go_online(far, *offset(*PICKUP, north_m=40_000, east_m=0))
        ride = await api.request_ride(rider, PICKUP, DROPOFF)
        await api.wait_for_status(rider, ride["ride_id"], "no_drivers_available")
        for driver in (stale, offline, far):
            assert await api.offers(driver) == []


async def test_rider_cancel_withdraws_offer(api: Api) -> None:
    rider = await api.rider()
    driver = await api.driver()
    await api.go_online(driver, *offset(*PICKUP, north_m=200, east_m=0))
    ride = await api.request_ride(rider, PICKUP, DROPOFF)
    await api.wait_for_offer(driver, ride["ride_id"])
    cancelled = await api.act(rider, ride["ride_id"], "cancel", reason="changed my mind")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancel_reason"] == "changed my mind"
    late = await api.act(driver, ride["ride_id"], "accept")
    assert late.status_code == 409
    again = await api.act(rider, ride["ride_id"], "cancel")
    assert again.status_code == 409


async def test_driver_cancel_before_pickup_searches_again_without_them(api: Api) -> None:
    rider = await api.rider()
    first = await api.driver("First")
    second = await api.driver("Second")
    await api.go_online(first, *offset(*PICKUP, north_m=200, east_m=0))
    await api.go_online(second, *offset(*PICKUP, north_m=900, east_m=0))
    ride = await api.request_ride(rider, PICKUP, DROPOFF)
    await api.wait_for_offer(first, ride["ride_id"])
    assert (await api.act(first, ride["ride_id"], "accept")).status_code == 200
    back = await api.act(first, ride["ride_id"], "cancel", reason="flat tyre")
    assert back.status_code == 200
    assert back.json()["status"] == "searching"
    assert back.json()["driver"] is None
    await api.wait_for_offer(second, ride["ride_id"])
    assert await api.offers(first) == []
    assert (await api.act(second, ride["ride_id"], "accept")).status_code == 200


async def test_driver_cancel_after_pickup_ends_ride(api: Api) -> None:
    rider = await api.rider()
    driver = await api.driver()
    await api.go_online(driver, *offset(*PICKUP, north_m=200, east_m=0))
    ride = await api.request_ride(rider, PICKUP, DROPOFF)
    await api.wait_for_offer(driver, ride["ride_id"])
    for verb in ("accept", "arrive", "start"):
        assert (await api.act(driver, ride["ride_id"], verb)).status_code == 200
    ended = await api.act(driver, ride["ride_id"], "cancel")
    assert ended.status_code == 200
    assert ended.json()["status"] == "cancelled"
    assert ended.json()["cancelled_by"] == "driver"


async def test_illegal_transitions_are_409_and_change_nothing(api: Api) -> None:
    rider = await api.rider()
    driver = await api.driver()
    await api.go_online(driver, *offset(*PICKUP, north_m=200, east_m=0))
    ride = await api.request_ride(rider, PICKUP, DROPOFF)
    await api.wait_for_offer(driver, ride["ride_id"])
    assert (await api.act(driver, ride["ride_id"], "accept")).status_code == 200
    before = await api.ride(rider, ride["ride_id"])
    for verb in ("start", "complete", "accept"):
        resp = await api.act(driver, ride["ride_id"], verb)
        assert resp.status_code == 409, (verb, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert await api.ride(rider, ride["ride_id"]) == before


async def test_rider_cannot_request_a_second_ride_while_one_is_active(api: Api) -> None:
    rider = await api.rider()
    await api.request_ride(rider, PICKUP, DROPOFF)
    resp = await api.http.post(
        "/api/v1/rides",
        json={
            "start_latitude": 60.0,
            "start_longitude": 24.0,
            "end_latitude": 60.1,
            "end_longitude": 24.1,
        },
        headers=rider.headers,
    )
    assert resp.status_code == 409


async def test_history_is_paginated_newest_first(api: Api) -> None:
    rider = await api.rider()
    ids = []
    for _ in range(5):
        ride = await api.request_ride(rider, PICKUP, DROPOFF)
        ids.append(ride["ride_id"])
        assert (await api.act(rider, ride["ride_id"], "cancel")).status_code == 200
    seen: list[str] = []
    token = None
    while True:
        params = {"page_size": 2, **({"page_token": token} if token else {})}
        page = (await api.http.get("/api/v1/rides", params=params, headers=rider.headers)).json()
        seen += [r["ride_id"] for r in page["rides"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert seen == list(reversed(ids))
    filtered = await api.http.get(
        "/api/v1/rides", params={"status": "completed"}, headers=rider.headers
    )
    assert filtered.json()["rides"] == []
