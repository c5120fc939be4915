"""Payments: rider payment methods, charges after the ride, refunds and the ledger."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.payments.config import (
    PROVIDER_KEY,
    build_provider,
    policy_from_settings,
    provider_of,
)
from ridehail.payments.handlers import subscribe as subscribe_payments
from ridehail.payments.methods import choose_payment_method
from ridehail.payments.provider import PaymentProvider
from ridehail.payments.sandbox import SandboxProvider
from ridehail.payments.schemas import PaymentOut
from ridehail.payments.service import PaymentsPolicy, made_work_due, payments_of_rides
from ridehail.payments.worker import PaymentsWorker


async def payment_views(session: AsyncSession, ride_ids: Collection[str]) -> dict[str, PaymentOut]:
    """The payment of each of ``ride_ids`` that has one (a ride gets it once it completed,
    or was cancelled with a fee, and the payments consumer saw that), by ride id."""
    payments, refunds = await payments_of_rides(session, ride_ids)
    return {p.ride_id: PaymentOut.of(p, refunds.get(p.id, [])) for p in payments}


__all__ = [
    "PROVIDER_KEY",
    "PaymentOut",
    "PaymentProvider",
    "PaymentsPolicy",
    "PaymentsWorker",
    "SandboxProvider",
    "build_provider",
    "choose_payment_method",
    "made_work_due",
    "payment_views",
    "policy_from_settings",
    "provider_of",
    "subscribe_payments",
]
