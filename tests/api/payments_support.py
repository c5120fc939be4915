"""Helpers of the payments API tests: driving a ride to its end, waiting for its payment,
and reading what the sandbox processor and the ledger recorded."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ridehail.db.outbox import OutboxEvent
from ridehail.kernel.geo import offset
from ridehail.payments.models import LedgerEntry, LedgerTransaction
from ridehail.payments.sandbox import SandboxProvider
from tests.api.client import HELSINKI, Api, User

PICKUP = HELSINKI
DROPOFF = offset(*HELSINKI, north_m=3000, east_m=2000)


def pay_settings(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Fast retries and a quick sandbox whose record lives in the test's directory."""
    return {
        "payments_sandbox_path": tmp_path / "sandbox.db",
        "payments_sandbox_latency_min_ms": 1.0,
        "payments_sandbox_latency_max_ms": 5.0,
        "payments_retry_base_s": 0.05,
        "payments_retry_cap_s": 0.2,
        "payments_poll_s": 0.05,
        "payments_lease_s": 5.0,
        "payments_max_attempts": 4,
        **overrides,
    }


def sandbox(api: Api) -> SandboxProvider:
    provider = api.app.state.runtime.extras["payments.provider"]
    assert isinstance(provider, SandboxProvider)
    return provider


async def add_method(api: Api, rider: User, **body: Any) -> dict[str, Any]:
    resp = await api.http.post(
        "/api/v1/riders/me/payment-methods", json=body, headers=rider.headers
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def complete_ride(api: Api, rider: User, driver: User, **request: Any) -> dict[str, Any]:
    """A ride of ``rider`` driven by ``driver`` from request to completion."""
    await api.go_online(driver, *offset(*PICKUP, north_m=200, east_m=0))
    ride = await api.request_ride(rider, PICKUP, DROPOFF, **request)
    ride_id = ride["ride_id"]
    await api.wait_for_offer(driver, ride_id)
    for verb in ("accept", "arrive", "start", "complete"):
        resp = await api.act(driver, ride_id, verb)
        assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def wait_for_payment(
    api: Api, user: User, ride_id: str, *statuses: str, timeout: float = 10.0
) -> dict[str, Any]:
    """The ride's payment once its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    payment = None
    while time.monotonic() < deadline:
        payment = (await api.ride(user, ride_id))["payment"]
        if payment is not None and payment["status"] in statuses:
            return dict(payment)
        await asyncio.sleep(0.05)
    raise AssertionError(f"payment of {ride_id} is {payment}, not {statuses}")


async def events(api: Api, topic: str) -> list[dict[str, Any]]:
    async with api.app.state.runtime.db.read_only() as session:
        rows = await session.execute(
            select(OutboxEvent.payload).where(OutboxEvent.topic == topic).order_by(OutboxEvent.seq)
        )
        return [dict(p) for p in rows.scalars()]


async def ledger(api: Api) -> dict[str, list[tuple[str, Decimal, str, str]]]:
    """Every ledger transaction's entries by reference: (account, amount, currency, line)."""
    async with api.app.state.runtime.db.read_only() as session:
        rows = await session.execute(
            select(LedgerTransaction.reference, LedgerEntry)
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .order_by(LedgerEntry.id)
        )
        found: dict[str, list[tuple[str, Decimal, str, str]]] = defaultdict(list)
        for reference, e in rows:
            found[reference].append((e.account, e.amount, e.currency, e.line))
        return found


async def assert_ledger_balanced(api: Api) -> None:
    """Every transaction, and so the whole table, sums to zero per currency."""
    overall: dict[str, Decimal] = defaultdict(Decimal)
    for reference, entries in (await ledger(api)).items():
        per_currency: dict[str, Decimal] = defaultdict(Decimal)
        for _, amount, currency, _ in entries:
            per_currency[currency] += amount
            overall[currency] += amount
        assert all(v == 0 for v in per_currency.values()), (reference, entries)
        assert len(entries) >= 2
    assert all(v == 0 for v in overall.values()), overall
