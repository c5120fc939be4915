"""Every query of the payments domain (the ledger's are in ledger.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.db import is_postgresql, upsert_into
from ridehail.payments.domain import PaymentStatus, RefundStatus
from ridehail.payments.models import Payment, PaymentMethod, Refund

# --- payment methods -----------------------------------------------------------------------


async def active_methods(session: AsyncSession, rider_id: str) -> list[PaymentMethod]:
    """The rider's methods, the default first, then newest first."""
    result = await session.execute(
        select(PaymentMethod)
        .where(PaymentMethod.rider_id == rider_id, PaymentMethod.removed_at.is_(None))
        .order_by(PaymentMethod.is_default.desc(), PaymentMethod.id.desc())
    )
    return list(result.scalars())


async def get_method(session: AsyncSession, method_id: str) -> PaymentMethod | None:
    return await session.get(PaymentMethod, method_id, populate_existing=True)


async def clear_default(session: AsyncSession, rider_id: str) -> None:
    await session.execute(
        update(PaymentMethod)
        .where(PaymentMethod.rider_id == rider_id, PaymentMethod.is_default.is_(True))
        .values(is_default=False)
        .execution_options(synchronize_session=False)
    )


async def set_default(session: AsyncSession, method_id: str) -> None:
    await session.execute(
        update(PaymentMethod)
        .where(PaymentMethod.id == method_id)
        .values(is_default=True)
        .execution_options(synchronize_session=False)
    )


async def remove_method(session: AsyncSession, method_id: str, at: datetime) -> None:
    await session.execute(
        update(PaymentMethod)
        .where(PaymentMethod.id == method_id)
        .values(removed_at=at, is_default=False)
        .execution_options(synchronize_session=False)
    )


# --- payments ------------------------------------------------------------------------------


async def insert_payment(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert unless the ride already has a payment; whether this call inserted it."""
    result = await session.execute(
        upsert_into(session, Payment).values(values).on_conflict_do_nothing()
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def get_payment(session: AsyncSession, payment_id: str) -> Payment | None:
    return await session.get(Payment, payment_id, populate_existing=True)


async def lock_payment(session: AsyncSession, payment_id: str) -> Payment | None:
    result = await session.execute(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def payments_of_rides(session: AsyncSession, ride_ids: Collection[str]) -> list[Payment]:
    if not ride_ids:
        return []
    result = await session.execute(select(Payment).where(Payment.ride_id.in_(list(ride_ids))))
    return list(result.scalars())


async def list_payments(
    session: AsyncSession,
    *,
    status: PaymentStatus | None,
    rider_id: str | None,
    ride_id: str | None,
    before_id: str | None,
    limit: int,
) -> list[Payment]:
    stmt = select(Payment)
    if status is not None:
        stmt = stmt.where(Payment.status == status.value)
    if rider_id is not None:
        stmt = stmt.where(Payment.rider_id == rider_id)
    if ride_id is not None:
        stmt = stmt.where(Payment.ride_id == ride_id)
    if before_id is not None:
        stmt = stmt.where(Payment.id < before_id)
    result = await session.execute(stmt.order_by(Payment.id.desc()).limit(limit))
    return list(result.scalars())


async def claim_due_payments(
    session: AsyncSession, *, now: datetime, limit: int, lease_until: datetime
) -> list[Payment]:
    """Take up to ``limit`` payments that are due (pending and past their backoff, or
    processing under a lease that expired: their worker died) and mark them processing
    under a new lease, one more attempt each. SKIP LOCKED lets several workers claim at
    once without waiting for, or taking, each other's rows."""
    stmt = (
        select(Payment)
        .where(
            or_(
                (Payment.status == PaymentStatus.PENDING.value) & (Payment.next_attempt_at <= now),
                (Payment.status == PaymentStatus.PROCESSING.value)
                & (Payment.lease_expires_at <= now),
            )
        )
        .order_by(Payment.next_attempt_at)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    if is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    payments = list((await session.execute(stmt)).scalars())
    for payment in payments:
        payment.status = PaymentStatus.PROCESSING.value
        payment.attempts += 1
        payment.lease_expires_at = lease_until
        payment.updated_at = now
    await session.flush()
    return payments


async def fenced_payment_update(
    session: AsyncSession, *, payment_id: str, attempts: int, values: dict[str, Any]
) -> bool:
    """Apply ``values`` only if the payment is still processing under the claim that made
    attempt ``attempts``: a worker whose lease expired (and whose payment someone else
    claimed since) records nothing."""
    result = await session.execute(
        update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.status == PaymentStatus.PROCESSING.value,
            Payment.attempts == attempts,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def add_to_refunded(session: AsyncSession, payment_id: str, amount: Decimal) -> None:
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(refunded_amount=Payment.refunded_amount + amount)
        .execution_options(synchronize_session=False)
    )


# --- refunds -------------------------------------------------------------------------------


async def refunds_of(
    session: AsyncSession, payment_ids: Collection[str]
) -> dict[str, list[Refund]]:
    found: dict[str, list[Refund]] = defaultdict(list)
    if not payment_ids:
        return found
    result = await session.execute(
        select(Refund).where(Refund.payment_id.in_(list(payment_ids))).order_by(Refund.id)
    )
    for refund in result.scalars():
        found[refund.payment_id].append(refund)
    return found


async def reserved_for_refunds(session: AsyncSession, payment_id: str) -> Decimal:
    """What refunds of the payment took or may still take (all but the failed ones)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment_id, Refund.status != RefundStatus.FAILED.value
        )
    )
    return Decimal(total or 0)


async def get_refund(session: AsyncSession, refund_id: str) -> Refund | None:
    return await session.get(Refund, refund_id, populate_existing=True)


async def claim_due_refunds(
    session: AsyncSession, *, now: datetime, limit: int, lease_until: datetime
) -> list[Refund]:
    stmt = (
        select(Refund)
        .where(
            or_(
                (Refund.status == RefundStatus.PENDING.value) & (Refund.next_attempt_at <= now),
                (Refund.status == RefundStatus.PROCESSING.value) & (Refund.lease_expires_at <= now),
            )
        )
        .order_by(Refund.next_attempt_at)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    if is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    refunds = list((await session.execute(stmt)).scalars())
    for refund in refunds:
        refund.status = RefundStatus.PROCESSING.value
        refund.attempts += 1
        refund.lease_expires_at = lease_until
        refund.updated_at = now
    await session.flush()
    return refunds


async def fenced_refund_update(
    session: AsyncSession, *, refund_id: str, attempts: int, values: dict[str, Any]
) -> bool:
    result = await session.execute(
        update(Refund)
        .where(
            Refund.id == refund_id,
            Refund.status == RefundStatus.PROCESSING.value,
            Refund.attempts == attempts,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
