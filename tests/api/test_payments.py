"""Payments after the ride, through the API on both profiles: card and cash captures,
declines and an admin's retry, timeouts and flaky providers retried under one idempotency
key (the sandbox's own record shows one charge), refunds, fees, earnings and payouts, and a
ledger that balances after every one of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import update

from ridehail.kernel.clock import utcnow
from ridehail.kernel.geo import offset
from ridehail.kernel.money import round_money
from ridehail.rides.models import Ride
from tests.api.client import Api
from tests.api.conftest import AppFactory
from tests.api.payments_support import (
    DROPOFF,
    PICKUP,
    add_method,
    assert_ledger_balanced,
    complete_ride,
    events,
    ledger,
    pay_settings,
    sandbox,
    wait_for_payment,
)

RATE = Decimal("0.20")


@pytest.fixture
async def papi(make_api: AppFactory, tmp_path: Path) -> AsyncIterator[Api]:
    async with make_api(**pay_settings(tmp_path)) as api:
        yield api


async def test_card_ride_is_captured_once_with_a_balanced_ledger(papi: Api) -> None:
    api = papi
    rider, driver, admin = await api.rider(), await api.driver(), await api.admin()
    card = await add_method(api, rider, type="card", token="tok_visa")
    assert card["brand"] == "visa" and card["last4"] == "4242" and card["is_default"]
    assert card["exp_month"] and card["exp_year"]

    done = await complete_ride(api, rider, driver)
    ride_id = done["ride_id"]
    assert done["payment_method_id"] == card["payment_method_id"]  # the default, unasked
    payment = await wait_for_payment(api, rider, ride_id, "captured")
    assert payment["method"] == "card" and payment["kind"] == "ride"
    assert (payment["brand"], payment["last4"]) == ("visa", "4242")
    assert payment["amount"] == {"amount": done["fare"]["amount"], "currency": "USD"}
    assert payment["refunded_amount"]["amount"] == "0.00"
    assert payment["attempts"] == 1

    # The processor's own record: one approved charge for this ride, for the fare.
    charges = [c for c in sandbox(api).charges() if c["ride_id"] == ride_id]
    assert [(c["status"], c["amount"]) for c in charges] == [("succeeded", done["fare"]["amount"])]
    assert charges[0]["idempotency_key"] == f"{payment['payment_id']}:1"

    # Ledger: the processor owes us the fare; driver, commission and booking fee split it.
    fare = Decimal(done["fare"]["amount"])
    booking = Decimal(done["fare"]["breakdown"]["booking_fee"])
    commission = round_money((fare - booking) * RATE)
    entries = (await ledger(api))[f"capture:{payment['payment_id']}"]
    by_line = {line: amount for _, amount, _, line in entries}
    assert by_line == {
        "charge": fare,
        "earning": -(fare - booking - commission),
        "commission": -commission,
        "booking_fee": -booking,
    }
    await assert_ledger_balanced(api)
    captured = [e for e in await events(api, "payments.captured") if e["ride_id"] == ride_id]
    assert len(captured) == 1 and captured[0]["method"] == "card"

    # The same view in the ride list, the receipt and the payments API.
    listed = (await api.http.get("/api/v1/rides", headers=rider.headers)).json()["rides"]
    assert listed[0]["payment"]["payment_id"] == payment["payment_id"]
    receipt = await api.http.get(f"/api/v1/rides/{ride_id}/receipt", headers=rider.headers)
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["payment"]["status"] == "captured"
    for user in (rider, admin):
        got = await api.http.get(f"/api/v1/payments/{payment['payment_id']}", headers=user.headers)
        assert got.status_code == 200 and got.json()["status"] == "captured"

    earnings = await api.http.get("/api/v1/drivers/me/earnings", headers=driver.headers)
    assert earnings.status_code == 200, earnings.text
    body = earnings.json()
    assert [line["ride_id"] for line in body["lines"]] == [ride_id]
    assert body["totals"]["gross"]["amount"] == f"{fare - booking:.2f}"
    assert body["totals"]["commission"]["amount"] == f"{commission:.2f}"
    assert body["totals"]["net"]["amount"] == f"{fare - booking - commission:.2f}"
    assert body["totals"]["payable"] == body["totals"]["net"]


async def test_cash_is_captured_at_once_and_the_driver_owes_the_platform_share(
    papi: Api,
) -> None:
    api = papi
    rider, driver, admin = await api.rider(), await api.driver(), await api.admin()
    done = await complete_ride(api, rider, driver)  # no method at all: cash
    payment = await wait_for_payment(api, rider, done["ride_id"], "captured")
    assert payment["method"] == "cash" and payment["brand"] is None
    assert payment["attempts"] == 0  # no provider call
    assert sandbox(api).path.exists() is False or not sandbox(api).charges()

    fare = Decimal(done["fare"]["amount"])
    booking = Decimal(done["fare"]["breakdown"]["booking_fee"])
    commission = round_money((fare - booking) * RATE)
    body = (await api.http.get("/api/v1/drivers/me/earnings", headers=driver.headers)).json()
    assert body["totals"]["cash_collected"]["amount"] == f"{fare:.2f}"
    owed = -(commission + booking)
    assert body["totals"]["payable"]["amount"] == f"{owed:.2f}"

    payouts = await api.http.get("/api/v1/payouts/daily", headers=admin.headers)
    assert payouts.status_code == 200, payouts.text
    days = payouts.json()["days"]
    assert len(days) == 1
    assert days[0]["drivers"] == [
        {
            "driver_id": driver.id,
            "net_payable": {"amount": f"{owed:.2f}", "currency": "USD"},
            "transactions": 1,
        }
    ]
    await assert_ledger_balanced(api)


async def test_a_chosen_cash_method_beats_the_default_card(papi: Api) -> None:
    api = papi
    rider, driver = await api.rider(), await api.driver()
    await add_method(api, rider, type="card", token="tok_visa")
    cash = await add_method(api, rider, type="cash")
    assert cash["is_default"] is False
    done = await complete_ride(api, rider, driver, payment_method_id=cash["payment_method_id"])
    assert done["payment_method_id"] == cash["payment_method_id"]
    payment = await wait_for_payment(api, rider, done["ride_id"], "captured")
    assert payment["method"] == "cash"
    assert not [c for c in sandbox(api).charges() if c["ride_id"] == done["ride_id"]]


async def test_decline_fails_then_admin_retry_charges_the_new_default_card(papi: Api) -> None:
    api = papi
    rider, driver, admin = await api.rider(), await api.driver(), await api.admin()
    await add_method(api, rider, type="card", token="tok_chargeDeclinedInsufficientFunds")
    done = await complete_ride(api, rider, driver)
    ride_id = done["ride_id"]
    failed = await wait_for_payment(api, rider, ride_id, "failed")
    assert failed["failure_code"] == "insufficient_funds"
    assert failed["attempts"] == 1  # a decline is not retried
    told = [e for e in await events(api, "payments.failed") if e["ride_id"] == ride_id]
    assert len(told) == 1 and told[0]["reason"] == "insufficient_funds"

    await add_method(api, rider, type="card", token="tok_mastercard", make_default=True)
    retried = await api.http.post(
        f"/api/v1/payments/{failed['payment_id']}:retry", headers=admin.headers
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending"
    assert retried.json()["brand"] == "mastercard"
    captured = await wait_for_payment(api, rider, ride_id, "captured")
    assert captured["last4"] == "4444"

    charges = [c for c in sandbox(api).charges() if c["ride_id"] == ride_id]
    pid = failed["payment_id"]
    assert [(c["idempotency_key"], c["status"]) for c in charges] == [
        (f"{pid}:1", "declined"),
        (f"{pid}:2", "succeeded"),
    ]
    again = await api.http.post(f"/api/v1/payments/{pid}:retry", headers=admin.headers)
    assert again.status_code == 409
    assert len([e for e in await events(api, "payments.captured") if e["ride_id"] == ride_id]) == 1
    await assert_ledger_balanced(api)


async def test_expired_card_fails_and_is_listed_for_admins(papi: Api) -> None:
    api = papi
    rider, driver, admin = await api.rider(), await api.driver(), await api.admin()
    await add_method(api, rider, type="card", token="tok_chargeDeclinedExpiredCard")
    done = await complete_ride(api, rider, driver)
    failed = await wait_for_payment(api, rider, done["ride_id"], "failed")
    assert failed["failure_code"] == "expired_card"
    listed = await api.http.get("/api/v1/payments?status=failed", headers=admin.headers)
    assert [p["payment_id"] for p in listed.json()["payments"]] == [failed["payment_id"]]
    none = await api.http.get("/api/v1/payments?status=captured", headers=admin.headers)
    assert none.json()["payments"] == []
    assert await ledger(api) == {}  # nothing moved


@pytest.mark.parametrize("token", ["tok_timeout", "tok_flaky"])
async def test_lost_answers_are_retried_with_the_same_key_and_charged_once(
    papi: Api, token: str
) -> None:
    api = papi
    rider, driver = await api.rider(), await api.driver()
    await add_method(api, rider, type="card", token=token)
    done = await complete_ride(api, rider, driver)
    payment = await wait_for_payment(api, rider, done["ride_id"], "captured")
    key = f"{payment['payment_id']}:1"
    calls = [r["outcome"] for r in sandbox(api).requests() if r["idempotency_key"] == key]
    if token == "tok_timeout":
        # The first call charged and its answer was lost; the retry got that charge back.
        assert calls == ["succeeded", "replayed_succeeded"]
        assert payment["attempts"] == 2
    else:
        assert calls == ["unavailable", "unavailable", "succeeded"]
        assert payment["attempts"] == 3
    charges = [c for c in sandbox(api).charges() if c["ride_id"] == done["ride_id"]]
    assert [c["status"] for c in charges] == ["succeeded"]
    await assert_ledger_balanced(api)


async def test_retries_run_out_then_an_admin_retry_reuses_the_key(
    make_api: AppFactory, tmp_path: Path
) -> None:
    settings = pay_settings(tmp_path, payments_max_attempts=2, payments_sandbox_flaky_failures=3)
    async with make_api(**settings) as api:
        rider, driver, admin = await api.rider(), await api.driver(), await api.admin()
        await add_method(api, rider, type="card", token="tok_flaky")
        done = await complete_ride(api, rider, driver)
        failed = await wait_for_payment(api, rider, done["ride_id"], "failed")
        assert failed["failure_code"] == "retries_exhausted" and failed["attempts"] == 2
        # Outcome possibly unknown: another card is refused, the same one goes again.
        other = await add_method(api, rider, type="card", token="tok_visa")
        refused = await api.http.post(
            f"/api/v1/payments/{failed['payment_id']}:retry",
            json={"payment_method_id": other["payment_method_id"]},
            headers=admin.headers,
        )
        assert refused.status_code == 409, refused.text
        ok = await api.http.post(
            f"/api/v1/payments/{failed['payment_id']}:retry", headers=admin.headers
        )
        assert ok.status_code == 200, ok.text
        captured = await wait_for_payment(api, rider, done["ride_id"], "captured")
        assert captured["attempts"] == 4 and captured["brand"] == "visa"
        keys = {c["idempotency_key"] for c in sandbox(api).charges()}
        assert keys == {f"{failed['payment_id']}:1"}


async def test_refunds_partial_then_the_rest_never_more(papi: Api) -> None:
    api = papi
    rider, driver, admin = await api.rider(), await api.driver(), await api.admin()
    await add_method(api, rider, type="card", token="tok_visa")
    done = await complete_ride(api, rider, driver)
    payment = await wait_for_payment(api, rider, done["ride_id"], "captured")
    pid, fare = payment["payment_id"], Decimal(done["fare"]["amount"])
    url = f"/api/v1/payments/{pid}:refund"

    part = await api.http.post(
        url, json={"amount": "1.50", "reason": "detour"}, headers=admin.headers
    )
    assert part.status_code == 200, part.text
    assert part.json()["status"] == "succeeded"
    assert part.json()["amount"] == {"amount": "1.50", "currency": "USD"}
    over = await api.http.post(url, json={"amount": f"{fare:.2f}"}, headers=admin.headers)
    assert over.status_code == 422, over.text
    rest = await api.http.post(url, headers=admin.headers)
    assert rest.status_code == 200, rest.text
    assert rest.json()["amount"]["amount"] == f"{fare - Decimal('1.50'):.2f}"
    done_already = await api.http.post(url, headers=admin.headers)
    assert done_already.status_code == 409

    after = (await api.http.get(f"/api/v1/payments/{pid}", headers=rider.headers)).json()
    assert after["refunded_amount"]["amount"] == f"{fare:.2f}"
    assert [r["status"] for r in after["refunds"]] == ["succeeded", "succeeded"]
    assert [r["reason"] for r in after["refunds"]] == ["detour", None]
    assert sum(Decimal(r["amount"]) for r in sandbox(api).refunds()) == fare
    assert len(await events(api, "payments.refunded")) == 2
    await assert_ledger_balanced(api)
    # Refunds are the platform's: the driver's earnings are untouched.
    body = (await api.http.get("/api/v1/drivers/me/earnings", headers=driver.headers)).json()
    assert len(body["lines"]) == 1


async def test_a_refund_whose_answer_was_lost_is_completed_by_the_worker(papi: Api) -> None:
    api = papi
    rider, driver, admin = await api.rider(), await api.driver(), await api.admin()
    await add_method(api, rider, type="card", token="tok_refundTimeout")
    done = await complete_ride(api, rider, driver)
    payment = await wait_for_payment(api, rider, done["ride_id"], "captured")
    resp = await api.http.post(
        f"/api/v1/payments/{payment['payment_id']}:refund",
        json={"amount": "2.00"},
        headers=admin.headers,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "pending"
    refund_id = resp.json()["refund_id"]
    for _ in range(200):
        got = await api.http.get(f"/api/v1/payments/{payment['payment_id']}", headers=admin.headers)
        if got.json()["refunds"][0]["status"] == "succeeded":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"refund still {got.json()['refunds']}")
    assert got.json()["refunded_amount"]["amount"] == "2.00"
    assert len(sandbox(api).refunds()) == 1
    outcomes = [
        r["outcome"]
        for r in sandbox(api).requests()
        if r["idempotency_key"] == f"refund:{refund_id}"
    ]
    assert outcomes == ["succeeded", "replayed_succeeded"]
    await assert_ledger_balanced(api)


async def test_cash_payments_are_not_refunded_through_the_provider(papi: Api) -> None:
    api = papi
    rider, driver, admin = await api.rider(), await api.driver(), await api.admin()
    done = await complete_ride(api, rider, driver)
    payment = await wait_for_payment(api, rider, done["ride_id"], "captured")
    resp = await api.http.post(
        f"/api/v1/payments/{payment['payment_id']}:refund", headers=admin.headers
    )
    assert resp.status_code == 409


async def test_a_cancellation_fee_is_charged_and_shared_with_the_driver(papi: Api) -> None:
    api = papi
    rider, driver = await api.rider(), await api.driver()
    await add_method(api, rider, type="card", token="tok_visa")
    await api.go_online(driver, *offset(*PICKUP, north_m=200, east_m=0))
    ride = await api.request_ride(rider, PICKUP, DROPOFF)
    await api.wait_for_offer(driver, ride["ride_id"])
    assert (await api.act(driver, ride["ride_id"], "accept")).status_code == 200
    async with api.app.state.runtime.db.transaction() as session:
        await session.execute(
            update(Ride)
            .where(Ride.id == ride["ride_id"])
            .values(accepted_at=utcnow() - timedelta(seconds=3600))
        )
    cancelled = await api.act(rider, ride["ride_id"], "cancel")
    assert cancelled.status_code == 200, cancelled.text
    fee = cancelled.json()["fare"]
    assert fee is not None and Decimal(fee["amount"]) > 0
    payment = await wait_for_payment(api, rider, ride["ride_id"], "captured")
    assert payment["kind"] == "cancellation"
    assert payment["amount"]["amount"] == fee["amount"]
    body = (await api.http.get("/api/v1/drivers/me/earnings", headers=driver.headers)).json()
    commission = round_money(Decimal(fee["amount"]) * RATE)
    assert body["lines"][0]["kind"] == "cancellation"
    assert body["totals"]["net"]["amount"] == f"{Decimal(fee['amount']) - commission:.2f}"
    await assert_ledger_balanced(api)


async def test_redelivered_and_duplicated_completions_open_one_payment(papi: Api) -> None:
    """The consumer applies an event once (its id recorded) and a ride has one payment (a
    unique key), so the same RideCompleted twice, or a copy under a new event id, or both
    at once, still charge once."""
    from ridehail.contracts import RideCompleted
    from ridehail.messaging import Message
    from ridehail.payments import policy_from_settings
    from ridehail.payments.handlers import make_handler

    api = papi
    rider, driver = await api.rider(), await api.driver()
    await add_method(api, rider, type="card", token="tok_visa")
    done = await complete_ride(api, rider, driver)
    await wait_for_payment(api, rider, done["ride_id"], "captured")
    original = (await events(api, "rides.completed"))[0]
    runtime = api.app.state.runtime
    handle = make_handler(db=runtime.db, policy=policy_from_settings(runtime.settings))
    copy = RideCompleted.from_payload({**original, "event_id": "evt_copy"})
    messages = [
        Message(id=original["event_id"], topic="rides.completed", payload=original),
        Message(id=copy.event_id, topic="rides.completed", payload=copy.to_payload()),
    ]
    await asyncio.gather(*(handle(m) for m in messages * 3))
    listed = await api.http.get("/api/v1/payments", headers=rider.headers)
    assert len(listed.json()["payments"]) == 1
    assert len([c for c in sandbox(api).charges() if c["ride_id"] == done["ride_id"]]) == 1
    assert len(await events(api, "payments.captured")) == 1
    await assert_ledger_balanced(api)
