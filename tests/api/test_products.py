"""Fare policy per product: a configured product prices estimates, rides and fees with its
own prices; an unknown product is refused and changes nothing. Both profiles."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from ridehail.kernel.geo import offset
from ridehail.settings import Settings
from tests.api.client import HELSINKI, Api
from tests.api.conftest import AppFactory

PICKUP = HELSINKI
DROPOFF = offset(*HELSINKI, north_m=3000, east_m=2000)
COMFORT = {
    "base": "5.00",
    "per_km": "2.00",
    "minimum": "10.00",
    "booking_fee": "1.50",
    "cancellation_fee": "7.50",
}


def _query(product: str | None = None) -> dict[str, Any]:
    query: dict[str, Any] = {
        "start_latitude": PICKUP[0],
        "start_longitude": PICKUP[1],
        "end_latitude": DROPOFF[0],
        "end_longitude": DROPOFF[1],
    }
    if product is not None:
        query["product"] = product
    return query


async def test_a_product_prices_estimates_rides_and_fees_with_its_own_prices(
    make_api: AppFactory,
) -> None:
    async with make_api(
        fare_products={"comfort": COMFORT}, fare_cancellation_grace_s=0.0, surge_enabled=False
    ) as api:
        rider = await api.rider()
        standard = (
            await api.http.get("/api/v1/pricing/estimate", params=_query(), headers=rider.headers)
        ).json()
        comfort = (
            await api.http.get(
                "/api/v1/pricing/estimate", params=_query("comfort"), headers=rider.headers
            )
        ).json()
        assert standard["product"] == "standard" and comfort["product"] == "comfort"
        assert standard["breakdown"]["base"] == "2.50" and comfort["breakdown"]["base"] == "5.00"
        assert comfort["breakdown"]["booking_fee"] == "1.50"
        # Same route, same distance; comfort's distance line at 2.00/km instead of 1.20/km.
        assert comfort["distance_m"] == standard["distance_m"]
        km = Decimal(standard["distance_m"]) / 1000
        assert Decimal(comfort["breakdown"]["distance"]) == (km * Decimal("2.00")).quantize(
            Decimal("0.01")
        )
        assert Decimal(comfort["amount"]) > Decimal(standard["amount"])

        # A comfort ride carries its product and estimate; its fare uses comfort's prices.
        driver = await api.driver()
        await api.go_online(driver, *offset(*PICKUP, north_m=200, east_m=0))
        ride = await api.request_ride(rider, PICKUP, DROPOFF, product="comfort")
        assert ride["product"] == "comfort"
        assert ride["fare_estimate"] == comfort
        await api.wait_for_offer(driver, ride["ride_id"])
        for verb in ("accept", "arrive", "start", "complete"):
            resp = await api.act(driver, ride["ride_id"], verb)
            assert resp.status_code == 200, resp.text
        fare = resp.json()["fare"]
        assert fare["product"] == "comfort"
        assert fare["breakdown"]["base"] == "5.00" and fare["breakdown"]["booking_fee"] == "1.50"
        assert Decimal(fare["amount"]) >= Decimal("10.00")  # comfort's minimum

        # Its cancellation fee is comfort's too.
        other = await api.rider()
        await api.go_online(driver, *offset(*PICKUP, north_m=200, east_m=0))
        second = await api.request_ride(other, PICKUP, DROPOFF, product="comfort")
        await api.wait_for_offer(driver, second["ride_id"])
        assert (await api.act(driver, second["ride_id"], "accept")).status_code == 200
        cancelled = await api.act(other, second["ride_id"], "cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["fare"]["breakdown"] == {"cancellation_fee": "7.50"}


async def test_an_unknown_product_is_refused_and_changes_nothing(api: Api) -> None:
    rider = await api.rider()
    estimate = await api.http.get(
        "/api/v1/pricing/estimate", params=_query("limousine"), headers=rider.headers
    )
    assert estimate.status_code == 422
    assert "limousine" in estimate.json()["detail"] and "standard" in estimate.json()["detail"]
    body = {**_query(), "product": "limousine"}
    resp = await api.http.post("/api/v1/rides", json=body, headers=rider.headers)
    assert resp.status_code == 422, resp.text
    for bad in ("", "x" * 33, 7, None):
        resp = await api.http.post(
            "/api/v1/rides", json={**_query(), "product": bad}, headers=rider.headers
        )
        assert resp.status_code == 422, (bad, resp.text)
    listed = await api.http.get("/api/v1/rides", headers=rider.headers)
    assert listed.json()["rides"] == []


@pytest.mark.parametrize(
    ("products", "message"),
    [
        ({"Comfort": {"base": "1"}}, "lowercase"),
        ({"standard": {"base": "1"}}, "not 'standard'"),
        ({"comfort": {"bse": "1"}}, "unknown prices"),
        ({"comfort": {"base": "cheap"}}, "not a decimal"),
        ({"comfort": {"base": "-1"}}, ">= 0"),
        ({"comfort": {"base": "NaN"}}, ">= 0"),
    ],
)
def test_bad_product_settings_are_refused_at_start(products: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(fare_products=products)
