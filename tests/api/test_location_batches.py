"""Buffered points uploaded in one request: all or nothing, newest wins the live position,
and during a trip the whole batch counts towards the distance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ridehail.kernel.geo import haversine_m, offset
from tests.api.client import HELSINKI, Api, User


def _points(count: int, *, start: datetime, north_step_m: float = 10) -> list[dict[str, object]]:
    """``count`` points one second apart, ``north_step_m`` apart (10 m/s = 36 km/h)."""
    return [
        {
            "latitude": offset(*HELSINKI, north_m=north_step_m * i, east_m=0)[0],
            "longitude": HELSINKI[1],
            "recorded_at": (start + timedelta(seconds=i)).isoformat(),
            "accuracy_m": 5.0,
        }
        for i in range(count)
    ]


async def _upload(  # type: ignore[no-untyped-def]
    api: Api, driver: User, points: list[dict[str, object]], *, as_user: User | None = None
):
    who = as_user or driver
    return await api.http.post(
        f"/api/v1/drivers/{driver.id}/locations", json={"locations": points}, headers=who.headers
    )


async def _admin_sees(api: Api, admin: User) -> list[tuple[float, float]]:
    resp = await api.http.get(
        "/api/v1/drivers/nearby",
        params={"lat": HELSINKI[0], "lon": HELSINKI[1], "radius_m": 5000},
        headers=admin.headers,
    )
    return [(d["latitude"], d["longitude"]) for d in resp.json()["drivers"]]


async def test_batch_newest_point_becomes_the_live_position(api: Api) -> None:
    driver, admin = await api.driver(), await api.admin()
    await api.http.put(
        f"/api/v1/drivers/{driver.id}/availability",
        json={"status": "available"},
        headers=driver.headers,
    )
    points = _points(5, start=datetime.now(UTC) - timedelta(seconds=10))
    shuffled = [points[3], points[0], points[4], points[1], points[2]]
    resp = await _upload(api, driver, shuffled)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 5, "flagged": 0}
    newest = (points[4]["latitude"], points[4]["longitude"])
    assert await _admin_sees(api, admin) == [newest]
    # An older batch arriving late does not move the driver back.
    stale = _points(2, start=datetime.now(UTC) - timedelta(seconds=60), north_step_m=-300)
    assert (await _upload(api, driver, stale)).status_code == 200
    assert await _admin_sees(api, admin) == [newest]


async def test_bad_batches_change_nothing(api: Api) -> None:
    driver, other, admin = await api.driver(), await api.driver(), await api.admin()
    await api.http.put(
        f"/api/v1/drivers/{driver.id}/availability",
        json={"status": "available"},
        headers=driver.headers,
    )
    now = datetime.now(UTC)
    good = _points(3, start=now - timedelta(seconds=5))
    cases = {
        "one invalid point": [*good[:2], {**good[2], "latitude": 91}],
        "missing recorded_at": [{k: v for k, v in good[0].items() if k != "recorded_at"}],
        "future point": [
            *good[:2],
            {**good[2], "recorded_at": (now + timedelta(hours=1)).isoformat()},
        ],
        "too many": _points(501, start=now - timedelta(seconds=600), north_step_m=1),
        "empty": [],
    }
    for name, points in cases.items():
        resp = await _upload(api, driver, points)
        assert resp.status_code == 422, (name, resp.text)
    assert (await _upload(api, driver, good, as_user=other)).status_code == 403
    unknown = await api.http.post(
        f"/api/v1/drivers/{driver.id}/locations",
        json={"locations": good, "extra": 1},
        headers=driver.headers,
    )
    assert unknown.status_code == 422
    assert await _admin_sees(api, admin) == []


async def test_points_buffered_during_a_trip_count_towards_the_fare(api: Api) -> None:
    rider, driver = await api.rider(), await api.driver()
    await api.go_online(driver, *HELSINKI)
    ride = await api.request_ride(rider, HELSINKI, offset(*HELSINKI, north_m=2000, east_m=0))
    await api.wait_for_offer(driver, ride["ride_id"])
    for verb in ("accept", "arrive", "start"):
        assert (await api.act(driver, ride["ride_id"], verb)).status_code == 200
    # Through a tunnel: 20 points, 20 m apart, uploaded together afterwards.
    points = _points(21, start=datetime.now(UTC) + timedelta(seconds=1), north_step_m=20)
    assert (await _upload(api, driver, points[1:])).status_code == 200
    done = await api.act(driver, ride["ride_id"], "complete")
    assert done.status_code == 200, done.text
    expected = haversine_m(*HELSINKI, points[-1]["latitude"], points[-1]["longitude"])  # type: ignore[arg-type]
    assert abs(done.json()["distance_m"] - expected) < 5


async def test_implausible_and_imprecise_points_are_flagged(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(location_max_speed_kmh=250) as api:
        await _flagging(api)


async def _flagging(api: Api) -> None:
    driver, admin = await api.driver(), await api.admin()
    await api.http.put(
        f"/api/v1/drivers/{driver.id}/availability",
        json={"status": "available"},
        headers=driver.headers,
    )
    start = datetime.now(UTC) - timedelta(seconds=20)
    points = _points(3, start=start)
    jump = {**_points(1, start=start + timedelta(seconds=3), north_step_m=0)[0]}
    jump["latitude"] = offset(*HELSINKI, north_m=4000, east_m=0)[0]  # 4 km in a second
    blurry = {**_points(1, start=start + timedelta(seconds=4))[0], "accuracy_m": 800.0}
    resp = await _upload(api, driver, [*points, jump, blurry])
    assert resp.json() == {"accepted": 5, "flagged": 2}
    assert await _admin_sees(api, admin) == [(points[2]["latitude"], points[2]["longitude"])]
