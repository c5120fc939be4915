"""GET /api/v1/pricing/estimate: the itemized estimate a ride would get, and bad input."""

from __future__ import annotations

from decimal import Decimal

from ridehail.kernel.geo import offset
from tests.api.client import HELSINKI

DROPOFF = offset(*HELSINKI, north_m=4000, east_m=1500)
QUERY = {
    "start_latitude": HELSINKI[0],
    "start_longitude": HELSINKI[1],
    "end_latitude": DROPOFF[0],
    "end_longitude": DROPOFF[1],
}


async def test_the_estimate_is_what_a_ride_request_gets(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        rider = await api.rider()
        resp = await api.http.get("/api/v1/pricing/estimate", params=QUERY, headers=rider.headers)
        assert resp.status_code == 200, resp.text
        estimate = resp.json()
        lines = estimate["breakdown"]
        assert sum(Decimal(v) for v in lines.values()) == Decimal(estimate["amount"])
        assert set(lines) == {
            "base",
            "distance",
            "time",
            "surge",
            "waiting",
            "booking_fee",
            "minimum_adjustment",
        }
        assert estimate["surge_multiplier"] == "1.0" and lines["surge"] == "0.00"
        ride = await api.request_ride(rider, HELSINKI, DROPOFF)
        assert ride["fare_estimate"] == estimate


async def test_estimates_need_a_token_and_good_coordinates(make_api) -> None:  # type: ignore[no-untyped-def]
    async with make_api(dispatch_enabled=False) as api:
        driver = await api.driver()
        assert (await api.http.get("/api/v1/pricing/estimate", params=QUERY)).status_code == 401
        ok = await api.http.get("/api/v1/pricing/estimate", params=QUERY, headers=driver.headers)
        assert ok.status_code == 200
        for bad in (
            {"start_latitude": 91},
            {"end_longitude": -180.5},
            {"start_latitude": "nan"},
            {"end_latitude": "inf"},
            {"start_longitude": "1e309"},
            {"end_latitude": "north"},
        ):
            resp = await api.http.get(
                "/api/v1/pricing/estimate", params={**QUERY, **bad}, headers=driver.headers
            )
            assert resp.status_code == 422, bad
            assert resp.headers["content-type"].startswith("application/problem+json")
        missing = {k: v for k, v in QUERY.items() if k != "end_latitude"}
        resp = await api.http.get(
            "/api/v1/pricing/estimate", params=missing, headers=driver.headers
        )
        assert resp.status_code == 422
