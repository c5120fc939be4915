"""Payments endpoints refuse bad input (422, nothing changes) and callers who may not touch
the resource (401 without a token, 403 for the wrong role, 404 for someone else's), on both
profiles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.client import Api, User
from tests.api.conftest import AppFactory
from tests.api.payments_support import add_method, complete_ride, pay_settings, wait_for_payment

METHODS = "/api/v1/riders/me/payment-methods"


@pytest.fixture
async def papi(make_api: AppFactory, tmp_path: Path) -> AsyncIterator[Api]:
    async with make_api(**pay_settings(tmp_path)) as api:
        yield api


async def _methods(api: Api, rider: User) -> list[dict[str, Any]]:
    resp = await api.http.get(METHODS, headers=rider.headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["payment_methods"])


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"type": "card"},  # no token
        {"type": "bitcoin", "token": "tok_visa"},
        {"type": "card", "token": 42},
        {"type": "card", "token": "4242424242424242"},  # a card number is not a token
        {"type": "card", "token": "tok_visa", "card_number": "4242424242424242"},
        {"type": "card", "token": "tok_visa", "number": "4242424242424242", "cvc": "123"},
        {"type": "card", "token": "tok_visa", "brand": "visa", "last4": "4242"},  # ours to say
        {"type": "card", "token": "tok_" + "x" * 200},
        {"type": "card", "token": "tok_visa", "make_default": "yes"},
        {"type": "cash", "token": "tok_visa"},
        {"type": "card", "token": "tok_unknownToTheProvider"},
    ],
)
async def test_adding_a_method_refuses_bad_bodies(papi: Api, body: dict[str, Any]) -> None:
    rider = await papi.rider()
    resp = await papi.http.post(METHODS, json=body, headers=rider.headers)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert await _methods(papi, rider) == []


async def test_methods_belong_to_their_rider(papi: Api) -> None:
    api = papi
    rider, other, driver, admin = (
        await api.rider(),
        await api.rider(),
        await api.driver(),
        await api.admin(),
    )
    assert (await api.http.post(METHODS, json={"type": "cash"})).status_code == 401
    assert (await api.http.get(METHODS)).status_code == 401
    for user in (driver, admin):
        resp = await api.http.post(METHODS, json={"type": "cash"}, headers=user.headers)
        assert resp.status_code == 403
        assert (await api.http.get(METHODS, headers=user.headers)).status_code == 403

    visa = await add_method(api, rider, type="card", token="tok_visa")
    master = await add_method(api, rider, type="card", token="tok_mastercard")
    cash = await add_method(api, rider, type="cash")
    again = await api.http.post(METHODS, json={"type": "cash"}, headers=rider.headers)
    assert again.status_code == 409
    assert [m["payment_method_id"] for m in await _methods(api, rider)] == [
        visa["payment_method_id"],  # the default first, then newest first
        cash["payment_method_id"],
        master["payment_method_id"],
    ]
    mid = master["payment_method_id"]
    for verb, path in (("DELETE", f"{METHODS}/{mid}"), ("POST", f"{METHODS}/{mid}:make-default")):
        assert (await api.http.request(verb, path, headers=other.headers)).status_code == 404
        assert (await api.http.request(verb, path)).status_code == 401
        assert (await api.http.request(verb, path, headers=driver.headers)).status_code == 403
    assert await _methods(api, other) == []

    made = await api.http.post(f"{METHODS}/{mid}:make-default", headers=rider.headers)
    assert made.status_code == 200 and made.json()["is_default"] is True
    listed = await _methods(api, rider)
    assert [m["is_default"] for m in listed] == [True, False, False]
    # Removing the default makes the newest remaining method the default.
    removed = await api.http.delete(f"{METHODS}/{mid}", headers=rider.headers)
    assert removed.status_code == 204
    listed = await _methods(api, rider)
    assert [(m["payment_method_id"], m["is_default"]) for m in listed] == [
        (cash["payment_method_id"], True),
        (visa["payment_method_id"], False),
    ]
    gone = await api.http.delete(f"{METHODS}/{mid}", headers=rider.headers)
    assert gone.status_code == 404


async def test_a_ride_request_takes_only_the_riders_own_active_method(papi: Api) -> None:
    api = papi
    rider, other = await api.rider(), await api.rider()
    theirs = await add_method(api, other, type="card", token="tok_visa")
    mine = await add_method(api, rider, type="card", token="tok_visa")
    await api.http.delete(f"{METHODS}/{mine['payment_method_id']}", headers=rider.headers)
    start, end = (60.1699, 24.9384), (60.19, 24.96)
    base = {
        "start_latitude": start[0],
        "start_longitude": start[1],
        "end_latitude": end[0],
        "end_longitude": end[1],
    }
    for method_id in (theirs["payment_method_id"], mine["payment_method_id"], "pm_nope"):
        resp = await api.http.post(
            "/api/v1/rides", json={**base, "payment_method_id": method_id}, headers=rider.headers
        )
        assert resp.status_code == 422, resp.text
        assert "payment_method_id" in resp.json()["detail"]
    for bad in (42, "x" * 41, ["pm_1"]):
        resp = await api.http.post(
            "/api/v1/rides", json={**base, "payment_method_id": bad}, headers=rider.headers
        )
        assert resp.status_code == 422, resp.text
    listed = await api.http.get("/api/v1/rides", headers=rider.headers)
    assert listed.json()["rides"] == []


async def test_payment_endpoints_authorization_and_bad_input(papi: Api) -> None:
    api = papi
    rider, other, driver, admin = (
        await api.rider(),
        await api.rider(),
        await api.driver(),
        await api.admin(),
    )
    await add_method(api, rider, type="card", token="tok_visa")
    done = await complete_ride(api, rider, driver)
    payment = await wait_for_payment(api, rider, done["ride_id"], "captured")
    pid = payment["payment_id"]

    one = f"/api/v1/payments/{pid}"
    assert (await api.http.get(one)).status_code == 401
    assert (await api.http.get(one, headers=other.headers)).status_code == 404
    assert (await api.http.get(one, headers=driver.headers)).status_code == 404
    assert (
        await api.http.get("/api/v1/payments/pay_nope", headers=admin.headers)
    ).status_code == 404
    assert (await api.http.get("/api/v1/payments", headers=driver.headers)).status_code == 403
    mine = await api.http.get("/api/v1/payments", headers=rider.headers)
    assert [p["payment_id"] for p in mine.json()["payments"]] == [pid]
    assert (await api.http.get("/api/v1/payments", headers=other.headers)).json()["payments"] == []
    for query in ("status=bogus", "page_size=0", "page_size=101", "page_token=%%%"):
        resp = await api.http.get(f"/api/v1/payments?{query}", headers=admin.headers)
        assert resp.status_code == 422, (query, resp.text)

    for verb in ("retry", "refund"):
        url = f"/api/v1/payments/{pid}:{verb}"
        assert (await api.http.post(url)).status_code == 401
        for user in (rider, driver):
            assert (await api.http.post(url, headers=user.headers)).status_code == 403
        missing = await api.http.post(f"/api/v1/payments/pay_nope:{verb}", headers=admin.headers)
        assert missing.status_code == 404
    retry = f"/api/v1/payments/{pid}:retry"
    assert (await api.http.post(retry, headers=admin.headers)).status_code == 409  # captured
    for body in ({"payment_method_id": 7}, {"unknown": 1}):
        resp = await api.http.post(retry, json=body, headers=admin.headers)
        assert resp.status_code == 422, resp.text

    refund = f"/api/v1/payments/{pid}:refund"
    bad_refunds: tuple[dict[str, object], ...] = (
        {"amount": 1.5},  # a number, not a decimal string
        {"amount": "abc"},
        {"amount": "0"},
        {"amount": "0.00"},
        {"amount": "-1.00"},
        {"amount": "1.001"},
        {"amount": "NaN"},
        {"amount": "Infinity"},
        {"amount": "1e3"},
        {"reason": "x" * 501},
        {"amount": "1.00", "to_account": "mine"},
    )
    for bad in bad_refunds:
        resp = await api.http.post(refund, json=bad, headers=admin.headers)
        assert resp.status_code == 422, (bad, resp.text)
    after = (await api.http.get(one, headers=admin.headers)).json()
    assert after["refunds"] == [] and after["refunded_amount"]["amount"] == "0.00"


async def test_earnings_and_payouts_validate_their_window_and_caller(papi: Api) -> None:
    api = papi
    rider, driver, admin = await api.rider(), await api.driver(), await api.admin()
    earnings, payouts = "/api/v1/drivers/me/earnings", "/api/v1/payouts/daily"
    assert (await api.http.get(earnings)).status_code == 401
    assert (await api.http.get(payouts)).status_code == 401
    for user in (rider, admin):
        assert (await api.http.get(earnings, headers=user.headers)).status_code == 403
    for user in (rider, driver):
        assert (await api.http.get(payouts, headers=user.headers)).status_code == 403
    for query in (
        "from=yesterday",
        "to=2026-13-01",
        "from=2026-02-01&to=2026-01-01",
        "from=2026-01-01&to=2026-01-01T00:00:00Z",
        "from=2020-01-01&to=2026-01-01",
        "from=" + "1" * 41,
    ):
        for url, user in ((earnings, driver), (payouts, admin)):
            resp = await api.http.get(f"{url}?{query}", headers=user.headers)
            assert resp.status_code == 422, (url, query, resp.text)

    done = await complete_ride(api, rider, driver)
    await wait_for_payment(api, rider, done["ride_id"], "captured")
    today = done["completed_at"][:10]
    body = (
        await api.http.get(f"{earnings}?from={today}&to={today}", headers=driver.headers)
    ).json()
    assert len(body["lines"]) == 1  # `to` as a date includes that day
    body = (await api.http.get(f"{earnings}?to={today}T00:00:00Z", headers=driver.headers)).json()
    assert body["lines"] == []  # a date-time `to` is exclusive
    body = (await api.http.get(f"{payouts}?from={today}&to={today}", headers=admin.headers)).json()
    assert [d["date"] for d in body["days"]] == [today]
    assert body["days"][0]["drivers"][0]["driver_id"] == driver.id
