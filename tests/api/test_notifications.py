"""Notifications on both profiles: contract events in, the right users told on the channels
they allow, exactly once; the in-app list and preferences endpoints with their bad input.

Events are fed in directly (outbox or bus), never through the pricing or payments code."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ridehail.contracts import (
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    RideCancelled,
    RideCompleted,
    RideStatusChanged,
)
from ridehail.messaging import Message
from ridehail.notifications.handlers import make_handler
from ridehail.notifications.models import Notification
from tests.api.client import Api, User
from tests.api.conftest import Backend
from tests.api.notify_support import (
    app_factory,
    emit,
    inbox,
    messages,
    publish,
    settings,
    wait_for,
    wait_for_kinds,
    wait_for_messages,
)

FARE = {"amount": "14.20", "currency": "USD", "breakdown": []}


@pytest.fixture
def make_api(backend: Backend) -> Callable[..., AbstractAsyncContextManager[Api]]:
    """This module's apps run without the payments role (see notify_support.ROLES)."""
    return app_factory(backend)


def completed(rider: User, driver: User, ride_id: str = "ride_1") -> RideCompleted:
    return RideCompleted(
        ride_id=ride_id,
        rider_id=rider.id,
        driver_id=driver.id,
        amount="14.20",
        currency="USD",
        fare=FARE,
    )


def failed(rider: User, ride_id: str = "ride_1") -> PaymentFailed:
    return PaymentFailed(
        payment_id="pay_1",
        ride_id=ride_id,
        rider_id=rider.id,
        amount="14.20",
        currency="USD",
        reason="card_declined",
        attempts=3,
    )


async def rider_with_phone(api: Api, phone: str = "+358401234567") -> User:
    email = f"phone-{uuid.uuid4().hex[:8]}@example.com"
    resp = await api.http.post(
        "/api/v1/riders",
        json={"name": "Pia Phone", "email": email, "password": "s3cret-pass", "phone": phone},
    )
    assert resp.status_code == 201, resp.text
    return User(resp.json()["rider_id"], await api.token(email, "s3cret-pass"), email)


async def test_ride_and_payment_events_reach_the_right_people(make_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "messages.jsonl"
    async with make_api(**settings(tmp_path)) as api:
        rider, stranger = await api.rider(), await api.rider()
        driver = await api.driver("Lea", plate="XYZ-987")
        events = [
            RideStatusChanged(
                ride_id="ride_1",
                rider_id=rider.id,
                driver_id=driver.id,
                previous_status="searching",
                status="driver_en_route",
            ),
            RideStatusChanged(
                ride_id="ride_1",
                rider_id=rider.id,
                driver_id=driver.id,
                previous_status="driver_en_route",
                status="driver_arrived",
            ),
            RideStatusChanged(  # tells nobody anything
                ride_id="ride_1",
                rider_id=rider.id,
                driver_id=driver.id,
                previous_status="driver_arrived",
                status="in_progress",
            ),
            completed(rider, driver),
            PaymentCaptured(
                payment_id="pay_1",
                ride_id="ride_1",
                rider_id=rider.id,
                driver_id=driver.id,
                amount="14.20",
                currency="USD",
                method="card",
                brand="visa",
                last4="4242",
            ),
            PaymentRefunded(
                refund_id="ref_1",
                payment_id="pay_1",
                ride_id="ride_1",
                rider_id=rider.id,
                amount="4.20",
                currency="USD",
            ),
        ]
        for event in events:
            await emit(api, event)

        rider_kinds = await wait_for_kinds(api, rider, 5)
        # Newest first; each event independent of the others' order of arrival.
        assert sorted(rider_kinds) == sorted(
            [
                "driver_assigned",
                "driver_arrived",
                "trip_completed",
                "payment_captured",
                "payment_refunded",
            ]
        )
        page = (await inbox(api, rider))["notifications"]
        ids = [n["notification_id"] for n in page]
        assert ids == sorted(ids, reverse=True)
        by_kind = {n["kind"]: n for n in page}
        assigned = by_kind["driver_assigned"]
        assert "Lea" in assigned["body"] and "XYZ-987" in assigned["body"]
        assert assigned["data"]["ride_id"] == "ride_1"
        receipt = by_kind["trip_completed"]
        assert receipt["data"]["amount"] == {"amount": "14.20", "currency": "USD"}
        assert receipt["data"]["fare"] == FARE
        assert "visa ending in 4242" in by_kind["payment_captured"]["body"]

        assert [n["kind"] for n in (await inbox(api, driver))["notifications"]] == [
            "trip_completed"
        ]
        assert (await inbox(api, stranger))["notifications"] == []

        # Email (on by default) only for what a person keeps; SMS is off by default.
        lines = await wait_for_messages(log, 3)
        assert {line["channel"] for line in lines} == {"email"}
        assert {line["to"] for line in lines} == {rider.email}
        assert sorted(line["subject"] for line in lines) == [
            "Payment receipt",
            "Refund issued",
            "Trip completed",
        ]
        assert not any(line["replayed"] for line in lines)


async def test_cancellations_tell_the_other_party_and_the_fee(make_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with make_api(**settings(tmp_path)) as api:
        rider, driver = await api.rider(), await api.driver()
        # The rider cancelled late: the driver is told, the rider gets the fee.
        await emit(
            api,
            RideCancelled(
                ride_id="ride_late",
                rider_id=rider.id,
                driver_id=driver.id,
                cancelled_by="rider",
                fee_kind="cancellation",
                fee_amount="5.00",
            ),
        )
        # The rider cancelled in time: only the driver is told.
        await emit(
            api,
            RideCancelled(
                ride_id="ride_free", rider_id=rider.id, driver_id=driver.id, cancelled_by="rider"
            ),
        )
        # The driver cancelled (no-show): the rider is told, with the fee.
        await emit(
            api,
            RideCancelled(
                ride_id="ride_noshow",
                rider_id=rider.id,
                driver_id=driver.id,
                cancelled_by="driver",
                reason="rider_no_show",
                fee_kind="no_show",
                fee_amount="5.00",
            ),
        )
        await wait_for_kinds(api, rider, 2)
        await wait_for_kinds(api, driver, 2)
        rider_notes = (await inbox(api, rider))["notifications"]
        driver_notes = (await inbox(api, driver))["notifications"]
        assert sorted(n["data"]["ride_id"] for n in rider_notes) == ["ride_late", "ride_noshow"]
        assert all(n["data"]["fee"]["amount"] == "5.00" for n in rider_notes)
        assert any("no-show fee of 5.00 USD" in n["body"] for n in rider_notes)
        assert sorted(n["data"]["ride_id"] for n in driver_notes) == ["ride_free", "ride_late"]


async def test_preferences_choose_the_channels(make_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "messages.jsonl"
    async with make_api(**settings(tmp_path)) as api:
        texter = await rider_with_phone(api)
        quiet = await api.rider()
        no_phone = await api.rider()
        defaults = await api.http.get("/api/v1/me/notification-preferences", headers=texter.headers)
        assert defaults.status_code == 200
        assert defaults.json() == {"in_app": True, "email": True, "sms": False}
        for user, prefs in (
            (texter, {"in_app": False, "email": False, "sms": True}),
            (quiet, {"in_app": False, "email": False, "sms": False}),
            (no_phone, {"in_app": True, "email": False, "sms": True}),
        ):
            resp = await api.http.put(
                "/api/v1/me/notification-preferences", json=prefs, headers=user.headers
            )
            assert resp.status_code == 200 and resp.json() == prefs
            again = await api.http.get("/api/v1/me/notification-preferences", headers=user.headers)
            assert again.json() == prefs

        for user in (texter, quiet, no_phone):
            await emit(api, failed(user, ride_id=f"ride_{user.id}"))
        # The last one (in-app only: no phone for SMS) shows all three were handled.
        assert await wait_for_kinds(api, no_phone, 1) == ["payment_failed"]
        lines = await wait_for_messages(log, 1)
        assert [(line["channel"], line["to"]) for line in lines] == [("sms", "+358401234567")]
        assert "14.20 USD" in lines[0]["body"]
        assert (await inbox(api, texter))["notifications"] == []
        assert (await inbox(api, quiet))["notifications"] == []


async def test_a_redelivered_event_notifies_once(make_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "messages.jsonl"
    async with make_api(**settings(tmp_path)) as api:
        rider, driver, marker = await api.rider(), await api.driver(), await api.rider()
        runtime = api.app.state.runtime
        event = completed(rider, driver)
        # Published twice (a relay that died before marking), and in the outbox as well.
        await publish(api, event)
        await publish(api, event)
        await emit(api, event)
        # The handler itself, called twice more with the same message.
        handle = make_handler(db=runtime.db, nudge=lambda: None)
        message = Message(id=event.event_id, topic=event.topic, payload=event.to_payload())
        await handle(message)
        await handle(message)
        # A later event on the same topic: once it is told, every copy before it was handled.
        await emit(api, completed(marker, driver, ride_id="ride_marker"))
        await wait_for_kinds(api, marker, 1)

        assert [n["kind"] for n in (await inbox(api, rider))["notifications"]] == ["trip_completed"]
        assert len((await inbox(api, driver))["notifications"]) == 2  # one per ride
        async with runtime.db.read_only() as session:
            rows = await session.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.event_id == event.event_id)
            )
        assert rows == 3  # rider in-app + rider email + driver in-app

        async def all_sent() -> bool:
            async with runtime.db.read_only() as session:
                pending = await session.scalar(
                    select(func.count())
                    .select_from(Notification)
                    .where(Notification.status != "sent")
                )
            return bool(pending == 0)

        await wait_for(all_sent, what="every notification sent")
        lines = messages(log)
        assert [line["to"] for line in lines].count(rider.email) == 1
        assert len({line["idempotency_key"] for line in lines}) == len(lines) == 2


async def test_the_inbox_pages_and_marks_read(make_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with make_api(**settings(tmp_path)) as api:
        rider, other = await api.rider(), await api.rider()
        for i in range(3):
            await emit(api, failed(rider, ride_id=f"ride_{i}"))
        await emit(api, failed(other, ride_id="ride_other"))
        await wait_for_kinds(api, rider, 3)
        first = await inbox(api, rider, page_size=2)
        assert len(first["notifications"]) == 2 and first["next_page_token"]
        second = await inbox(api, rider, page_size=2, page_token=first["next_page_token"])
        assert len(second["notifications"]) == 1 and second["next_page_token"] is None
        seen = [n["data"]["ride_id"] for n in first["notifications"] + second["notifications"]]
        assert sorted(seen) == ["ride_0", "ride_1", "ride_2"]

        note = first["notifications"][0]
        assert note["read_at"] is None
        path = f"/api/v1/notifications/{note['notification_id']}:read"
        resp = await api.http.post(path, headers=rider.headers)
        assert resp.status_code == 200 and resp.json()["read_at"] is not None
        again = await api.http.post(path, headers=rider.headers)
        assert again.json()["read_at"] == resp.json()["read_at"]
        assert (await api.http.post(path, headers=other.headers)).status_code == 404
        assert (await api.http.post(path)).status_code == 401
        missing = await api.http.post("/api/v1/notifications/ntf_nope:read", headers=rider.headers)
        assert missing.status_code == 404


async def test_notification_endpoints_refuse_bad_input(api: Api) -> None:
    rider = await api.rider()
    assert (await api.http.get("/api/v1/notifications")).status_code == 401
    bad_auth = {"Authorization": "Bearer forged"}
    assert (await api.http.get("/api/v1/notifications", headers=bad_auth)).status_code == 401
    for params in (
        {"page_size": 0},
        {"page_size": 101},
        {"page_size": "ten"},
        {"page_token": "%%%"},
        {"page_token": "cmlkZV8x"},  # a ride id, not a notification id
        {"page_token": "x" * 201},
    ):
        resp = await api.http.get("/api/v1/notifications", params=params, headers=rider.headers)
        assert resp.status_code == 422, (params, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")

    path = "/api/v1/me/notification-preferences"
    assert (await api.http.get(path)).status_code == 401
    assert (
        await api.http.put(path, json={"in_app": True, "email": True, "sms": True})
    ).status_code == 401
    good = {"in_app": True, "email": False, "sms": False}
    for body in (
        {"in_app": True, "email": False},  # missing
        {**good, "push": True},  # unknown
        {**good, "email": "yes"},  # wrong type
        {**good, "sms": 1},  # no coercion
        {**good, "in_app": None},
        [good],
    ):
        resp = await api.http.put(path, json=body, headers=rider.headers)
        assert resp.status_code == 422, (body, resp.text)
    resp = await api.http.put(path, content=b"{not json", headers=rider.headers)
    assert resp.status_code == 422
    # Nothing was stored by the refused requests.
    assert (await api.http.get(path, headers=rider.headers)).json() == {
        "in_app": True,
        "email": True,
        "sms": False,
    }


class FlakyEmail:
    """An email provider that refuses the first ``failures`` calls, then passes them on."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner, self.failures, self.calls = inner, failures, 0

    async def send_email(self, *, to: str, subject: str, body: str, idempotency_key: str) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("provider unavailable")
        await self.inner.send_email(
            to=to, subject=subject, body=body, idempotency_key=idempotency_key
        )


async def _email_row(api: Api, user: User) -> Notification | None:
    async with api.app.state.runtime.db.read_only() as session:
        row: Notification | None = await session.scalar(
            select(Notification).where(
                Notification.user_id == user.id, Notification.channel == "email"
            )
        )
    return row


async def test_a_failing_email_provider_is_retried_then_given_up(make_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "messages.jsonl"
    async with make_api(**settings(tmp_path, notifications_max_attempts=3)) as api:
        sender = api.app.state.container.notifications
        real = sender._email
        sender._email = FlakyEmail(real, failures=2)
        rider = await api.rider()
        await emit(api, failed(rider))

        async def sent() -> Notification | None:
            row = await _email_row(api, rider)
            return row if row is not None and row.status == "sent" else None

        row = await wait_for(sent, what="the email sent")
        assert row.attempts == 3 and row.last_error is None
        assert [line["to"] for line in messages(log)] == [rider.email]

        sender._email = FlakyEmail(real, failures=10)
        unlucky = await api.rider()
        await emit(api, failed(unlucky))

        async def given_up() -> Notification | None:
            row = await _email_row(api, unlucky)
            return row if row is not None and row.status == "failed" else None

        row = await wait_for(given_up, what="the email given up")
        assert row.attempts == 3 and "provider unavailable" in (row.last_error or "")
        assert sender._email.calls == 3
        assert [line["to"] for line in messages(log)] == [rider.email]
