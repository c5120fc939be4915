"""Every event delivered twice and out of order ends in the same state as every event
delivered once, in order.

The same scenario (a card ride, a cash ride, a declined card, a rider cancelling with a fee,
a partial refund) runs twice on fresh stores: once over the profile's own event bus, and once
over that bus wrapped so that each published message is delivered twice, each copy after its
own random delay (0-300 ms), so copies and topics overtake each other. The consumers'
end states (payments, the ledger, notifications, the sandbox processor's record, and the
rides themselves) are compared after ids are replaced by the scenario's own names.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ridehail import bootstrap
from ridehail.db.outbox import OutboxEvent
from ridehail.messaging import EventBus, Message
from ridehail.messaging.ports import Handler
from ridehail.notifications.models import Notification
from ridehail.payments.models import LedgerEntry, LedgerTransaction, Payment
from tests.api.client import Api, User
from tests.api.conftest import AppFactory
from tests.api.payments_support import (
    DROPOFF,
    PICKUP,
    add_method,
    assert_ledger_balanced,
    complete_ride,
    pay_settings,
    sandbox,
    wait_for_payment,
)

pytestmark = pytest.mark.usefixtures("profile")


class ChaoticBus:
    """The profile's bus, misbehaving the way at-least-once transports may: every message
    is published twice, each copy after its own random delay, so duplicates arrive and
    later messages overtake earlier ones (also within a topic)."""

    def __init__(self, inner: EventBus, *, seed: int, max_delay_s: float = 0.3) -> None:
        self._inner = inner
        self._rng = random.Random(seed)
        self._max_delay_s = max_delay_s
        self._pending: set[asyncio.Task[None]] = set()
        self.copies = 0

    async def publish(self, message: Message) -> None:
        await self.publish_many([message])

    async def publish_many(self, messages: Sequence[Message]) -> None:
        for message in messages:
            for _ in range(2):
                delay = self._rng.uniform(0, self._max_delay_s)
                task = asyncio.create_task(self._later(message, delay))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

    async def _later(self, message: Message, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._inner.publish(message)
        self.copies += 1

    def subscribe(self, *, group: str, topics: Sequence[str], handler: Handler) -> None:
        self._inner.subscribe(group=group, topics=topics, handler=handler)

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await self._inner.stop()

    async def ping(self) -> None:
        await self._inner.ping()

    @property
    def idle(self) -> bool:
        return not self._pending


async def _until(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _scenario(api: Api) -> dict[str, str]:
    """Run the scenario; return the names of its ids (users and rides)."""
    names: dict[str, str] = {}
    riders = [await api.rider(f"r{i}") for i in range(4)]
    drivers = [await api.driver(f"d{i}", plate=f"CHA-{i}") for i in range(4)]
    for i, user in enumerate(riders):
        names[user.id] = f"rider{i}"
    for i, user in enumerate(drivers):
        names[user.id] = f"driver{i}"
    await add_method(api, riders[0], type="card", token="tok_visa")
    await add_method(api, riders[2], type="card", token="tok_chargeDeclinedInsufficientFunds")
    await add_method(api, riders[3], type="card", token="tok_visa")
    admin = await api.admin()

    # One pair at a time, each driver going offline after their ride, so every ride is
    # offered to its own driver.
    card_ride = await complete_ride(api, riders[0], drivers[0])
    names[card_ride["ride_id"]] = "ride_card"
    await _go_offline(api, drivers[0])
    cash_ride = await complete_ride(api, riders[1], drivers[1])
    names[cash_ride["ride_id"]] = "ride_cash"
    await _go_offline(api, drivers[1])
    declined_ride = await complete_ride(api, riders[2], drivers[2])
    names[declined_ride["ride_id"]] = "ride_declined"
    await _go_offline(api, drivers[2])
    cancelled = await _cancel_after_accept(api, riders[3], drivers[3])
    names[cancelled] = "ride_cancelled"
    await _go_offline(api, drivers[3])

    paid = await wait_for_payment(api, riders[0], card_ride["ride_id"], "captured")
    await wait_for_payment(api, riders[1], cash_ride["ride_id"], "captured")
    await wait_for_payment(api, riders[2], declined_ride["ride_id"], "failed")
    await wait_for_payment(api, riders[3], cancelled, "captured")
    refund = await api.http.post(
        f"/api/v1/payments/{paid['payment_id']}:refund",
        json={"amount": "1.50", "reason": "detour"},
        headers=admin.headers,
    )
    assert refund.status_code in (200, 201), refund.text
    return names


async def _go_offline(api: Api, driver: User) -> None:
    resp = await api.http.put(
        f"/api/v1/drivers/{driver.id}/availability",
        json={"status": "offline"},
        headers=driver.headers,
    )
    assert resp.status_code == 200, resp.text


async def _cancel_after_accept(api: Api, rider: User, driver: User) -> str:
    await api.go_online(driver, *PICKUP)
    ride = await api.request_ride(rider, PICKUP, DROPOFF)
    await api.wait_for_offer(driver, ride["ride_id"])
    assert (await api.act(driver, ride["ride_id"], "accept")).status_code == 200
    resp = await api.act(rider, ride["ride_id"], "cancel", reason="changed my mind")
    assert resp.status_code == 200, resp.text
    assert resp.json()["fare"]["breakdown"] == {"cancellation_fee": "5.00"}
    return str(ride["ride_id"])


async def _settled(api: Api, bus: ChaoticBus | None) -> bool:
    """Nothing left to do: the outbox published, the bus's delayed copies delivered, no
    payment or notification pending."""
    if bus is not None and not bus.idle:
        return False
    async with api.app.state.runtime.db.read_only() as session:
        unpublished = await session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )
        busy_payments = await session.scalar(
            select(func.count())
            .select_from(Payment)
            .where(Payment.status.not_in(("captured", "failed", "refunded", "partially_refunded")))
        )
        pending = await session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.status.not_in(("sent", "failed", "skipped")))
        )
    return bool(unpublished == 0 and busy_payments == 0 and pending == 0)


def _renamer(names: dict[str, str]) -> Any:
    pattern = re.compile("|".join(re.escape(k) for k in sorted(names, key=len, reverse=True)))

    def rename(value: Any) -> str:
        return pattern.sub(lambda m: names[m.group(0)], str(value))

    return rename


async def _end_state(api: Api, names: dict[str, str]) -> dict[str, Any]:
    async with api.app.state.runtime.db.read_only() as session:
        ours = [k for k, v in names.items() if v.startswith("ride_")]
        people = [k for k, v in names.items() if not v.startswith("ride_")]
        payments = list(
            (await session.execute(select(Payment).where(Payment.ride_id.in_(ours)))).scalars()
        )
        for p in payments:
            names.setdefault(p.id, f"payment_of_{names[p.ride_id]}")
        rename = _renamer(names)
        entries = (
            await session.execute(
                select(LedgerTransaction.kind, LedgerTransaction.ride_id, LedgerEntry)
                .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
                .where(LedgerTransaction.ride_id.in_(ours))
            )
        ).all()
        notifications = list(
            (
                await session.execute(select(Notification).where(Notification.user_id.in_(people)))
            ).scalars()
        )
    charges = Counter(
        (rename(c["ride_id"]), c["status"], c["amount"]) for c in sandbox(api).charges()
    )
    return {
        "payments": sorted(
            (
                rename(p.ride_id),
                p.status,
                str(p.amount),
                p.method,
                p.kind,
                str(p.refunded_amount),
                str(p.driver_earning),
                str(p.commission),
            )
            for p in payments
        ),
        "ledger": sorted(
            (kind, rename(ride_id), rename(e.account), str(e.amount), e.line)
            for kind, ride_id, e in entries
        ),
        "notifications": sorted(
            (rename(n.user_id), n.kind, n.channel, n.status, rename(n.data.get("ride_id", "")))
            for n in notifications
        ),
        "sandbox_charges": sorted(charges.items()),
    }


async def _run(make_api: AppFactory, tmp_path: Path, chaos: bool) -> dict[str, Any]:
    bus_holder: list[ChaoticBus] = []
    original = bootstrap._adapters

    def chaotic_adapters(settings: Any) -> Any:
        store, bus, pubsub, client = original(settings)
        wrapped = ChaoticBus(bus, seed=7)
        bus_holder.append(wrapped)
        return store, wrapped, pubsub, client

    # No surge: the second run would see the first run's requests as demand.
    settings = pay_settings(tmp_path, fare_cancellation_grace_s=0.0, surge_enabled=False)
    with pytest.MonkeyPatch.context() as patch:
        if chaos:
            patch.setattr(bootstrap, "_adapters", chaotic_adapters)
        async with make_api(**settings) as api:
            names = await _scenario(api)
            bus = bus_holder[0] if bus_holder else None
            await _until(lambda: _settled(api, bus), "everything to settle")
            await asyncio.sleep(0.5)  # late duplicates: they must change nothing
            await _until(lambda: _settled(api, bus), "everything to settle again")
            await assert_ledger_balanced(api)
            state = await _end_state(api, names)
            if chaos:
                assert bus is not None and bus.copies > 0
                state["copies_delivered"] = bus.copies
            return state


async def test_events_delivered_twice_and_out_of_order_end_as_once_in_order(
    make_api: AppFactory, tmp_path: Path
) -> None:
    calm = await _run(make_api, tmp_path / "calm", chaos=False)
    chaotic = await _run(make_api, tmp_path / "chaos", chaos=True)
    copies = chaotic.pop("copies_delivered")
    # Each outbox event went out twice.
    assert copies >= 2 * 20
    assert chaotic == calm
    # And the end state is the one the scenario means.
    assert [(p[0], p[1], p[5]) for p in calm["payments"]] == [
        ("ride_cancelled", "captured", "0.00"),
        ("ride_card", "captured", "1.50"),
        ("ride_cash", "captured", "0.00"),
        ("ride_declined", "failed", "0.00"),
    ]
    assert [c for c in calm["sandbox_charges"] if c[0][1] == "succeeded"] == [
        (c[0], 1) for c in calm["sandbox_charges"] if c[0][1] == "succeeded"
    ]
