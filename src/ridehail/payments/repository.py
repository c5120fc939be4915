"""Every query of the payments domain (the ledger's are in ledger.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

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


#: Payments and refunds are worked the same way: claimed under a lease, fenced by attempts.
Claimable = TypeVar("Claimable", Payment, Refund)

# The two lifecycles share these two states (and the words for them).
_PENDING = PaymentStatus.PENDING.value
_PROCESSING = PaymentStatus.PROCESSING.value
assert RefundStatus.PENDING.value == _PENDING
assert RefundStatus.PROCESSING.value == _PROCESSING


async def _claim_due(
    session: AsyncSession,
    model: type[Claimable],
    *,
    now: datetime,
    limit: int,
    lease_until: datetime,
) -> list[Claimable]:
    """Take up to ``limit`` rows that are due (pending and past their backoff, or
    processing under a lease that expired: their worker died) and mark them processing
    under a new lease, one more attempt each. SKIP LOCKED lets several workers claim at
    once without waiting for, or taking, each other's rows."""
    stmt = (
        select(model)
        .where(
            or_(
                (model.status == _PENDING) & (model.next_attempt_at <= now),
                (model.status == _PROCESSING) & (model.lease_expires_at <= now),
            )
        )
        .order_by(model.next_attempt_at)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    if is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list((await session.execute(stmt)).scalars())
    for row in rows:
        row.status = _PROCESSING
        row.attempts += 1
        row.lease_expires_at = lease_until
        row.updated_at = now
    await session.flush()
    return rows


async def _fenced_update(
    session: AsyncSession,
    model: type[Claimable],
    *,
    row_id: str,
    attempts: int,
    values: dict[str, Any],
) -> bool:
    """Apply ``values`` only if the row is still processing under the claim that made
    attempt ``attempts``: a worker whose lease expired (and whose row someone else claimed
    since) records nothing."""
    result = await session.execute(
        update(model)
        .where(model.id == row_id, model.status == _PROCESSING, model.attempts == attempts)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def claim_due_payments(
    session: AsyncSession, *, now: datetime, limit: int, lease_until: datetime
) -> list[Payment]:
    return await _claim_due(session, Payment, now=now, limit=limit, lease_until=lease_until)


async def fenced_payment_update(
    session: AsyncSession, *, payment_id: str, attempts: int, values: dict[str, Any]
) -> bool:
    return await _fenced_update(
        session, Payment, row_id=payment_id, attempts=attempts, values=values
    )


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
    return await _claim_due(session, Refund, now=now, limit=limit, lease_until=lease_until)


async def fenced_refund_update(
    session: AsyncSession, *, refund_id: str, attempts: int, values: dict[str, Any]
) -> bool:
    return await _fenced_update(session, Refund, row_id=refund_id, attempts=attempts, values=values)
