"""Payment use cases. They never commit and never call the provider: a charge runs in phases
(claim in one transaction, call the provider outside any, record the answer in another; see
processing.py), and each phase here is one of those transactions' work."""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.contracts import (
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    RideCancelled,
    RideCompleted,
)
from ridehail.db import add_event, is_postgresql
from ridehail.kernel.errors import Conflict, InvalidRequest, NotFound
from ridehail.kernel.ids import new_id
from ridehail.kernel.money import round_money
from ridehail.payments import ledger, repository
from ridehail.payments.domain import (
    UNCERTAIN,
    ZERO,
    MethodType,
    Outcome,
    PaymentKind,
    PaymentStatus,
    RefundStatus,
    Split,
    capture_postings,
    refund_postings,
    retry_delay_s,
    split,
)
from ridehail.payments.models import Payment, PaymentMethod, Refund

#: PostgreSQL NOTIFY channel: a commit that made a charge or refund due wakes the workers.
PAYMENTS_CHANNEL = "ridehail_payments"
#: Set in a session whose transaction made work due (for the in-process after-commit nudge).
WORK_DUE = "ridehail.payments.due"

_rng = random.Random()  # noqa: S311 - retry jitter, not crypto


@dataclass(frozen=True, slots=True)
class PaymentsPolicy:
    commission_rate: Decimal
    lease_s: float
    provider_timeout_s: float
    retry_base_s: float
    retry_cap_s: float
    max_attempts: int
    concurrency: int


@dataclass(frozen=True, slots=True)
class ChargeClaim:
    """What a worker needs for one provider call, as claimed (``attempts`` fences it)."""

    payment_id: str
    ride_id: str
    attempts: int
    key: str
    token: str
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class RefundClaim:
    refund_id: str
    payment_id: str
    attempts: int
    key: str
    charge_id: str
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class CallOutcome:
    outcome: Outcome
    provider_id: str | None = None
    code: str | None = None
    message: str | None = None


async def work_became_due(session: AsyncSession) -> None:
    """Wake the payment workers once this transaction commits: in this process through the
    after-commit hook, in others through a NOTIFY (delivered only on commit)."""
    if session.info.get(WORK_DUE):
        return
    session.info[WORK_DUE] = True
    if is_postgresql(session):
        await session.execute(text(f"NOTIFY {PAYMENTS_CHANNEL}"))


def made_work_due(session: AsyncSession) -> bool:
    return bool(session.info.get(WORK_DUE))


# --- opening payments (reactions to rides' events) -----------------------------------------


async def open_ride_payment(
    session: AsyncSession, event: RideCompleted, *, policy: PaymentsPolicy, now: datetime
) -> Payment | None:
    """The rider owes the fare of a completed ride. None if the ride has a payment already."""
    booking_fee = Decimal(str(event.fare.get("breakdown", {}).get("booking_fee", "0")))
    return await _open(
        session,
        ride_id=event.ride_id,
        rider_id=event.rider_id,
        driver_id=event.driver_id,
        kind=PaymentKind.RIDE,
        amount=Decimal(event.amount),
        currency=event.currency,
        booking_fee=booking_fee,
        payment_method_id=event.payment_method_id,
        policy=policy,
        now=now,
    )


async def open_fee_payment(
    session: AsyncSession, event: RideCancelled, *, policy: PaymentsPolicy, now: datetime
) -> Payment | None:
    """A cancellation or no-show fee is due (a no-op for a cancellation without a fee)."""
    amount = Decimal(event.fee_amount)
    if amount <= 0:
        return None
    kind = PaymentKind.NO_SHOW if event.fee_kind == "no_show" else PaymentKind.CANCELLATION
    return await _open(
        session,
        ride_id=event.ride_id,
        rider_id=event.rider_id,
        driver_id=event.driver_id,
        kind=kind,
        amount=amount,
        currency=event.currency,
        booking_fee=ZERO,
        payment_method_id=event.payment_method_id,
        policy=policy,
        now=now,
    )


async def _open(
    session: AsyncSession,
    *,
    ride_id: str,
    rider_id: str,
    driver_id: str | None,
    kind: PaymentKind,
    amount: Decimal,
    currency: str,
    booking_fee: Decimal,
    payment_method_id: str | None,
    policy: PaymentsPolicy,
    now: datetime,
) -> Payment | None:
    method = await repository.get_method(session, payment_method_id) if payment_method_id else None
    card = method is not None and method.type == MethodType.CARD.value
    parts = split(
        amount, booking_fee=booking_fee, rate=policy.commission_rate, has_driver=bool(driver_id)
    )
    payment_id = new_id("pay")
    values: dict[str, Any] = {
        "id": payment_id,
        "ride_id": ride_id,
        "rider_id": rider_id,
        "driver_id": driver_id,
        "kind": kind.value,
        "method": MethodType.CARD.value if card else MethodType.CASH.value,
        "payment_method_id": method.id if method else None,
        "provider_token": method.provider_token if card and method else None,
        "brand": method.brand if card and method else None,
        "last4": method.last4 if card and method else None,
        "amount": round_money(amount),
        "currency": currency,
        "booking_fee": parts.booking_fee,
        "commission": parts.commission,
        "driver_earning": parts.driver_earning,
        "status": PaymentStatus.PENDING.value,
        "attempts": 0,
        "generation": 1,
        "attempts_at_retry": 0,
        "next_attempt_at": now,
        "refunded_amount": ZERO,
        "created_at": now,
        "updated_at": now,
    }
    if payment_method_id is not None and method is None:
        values.update(
            status=PaymentStatus.FAILED.value,
            next_attempt_at=None,
            failure_code="payment_method_missing",
            failure_reason="the ride's payment method no longer exists",
            failed_at=now,
        )
    if not await repository.insert_payment(session, values):
        return None
    payment = await repository.get_payment(session, payment_id)
    assert payment is not None
    if payment.status == PaymentStatus.FAILED.value:
        _failed_event(session, payment)
    elif payment.method == MethodType.CASH.value:
        await _capture_cash(session, payment, now=now)
    else:
        await work_became_due(session)
    return payment


async def _capture_cash(session: AsyncSession, payment: Payment, *, now: datetime) -> None:
    """The driver collected the money: captured at once, no provider call."""
    if payment.driver_id is None:
        payment.status = PaymentStatus.FAILED.value
        payment.failure_code = "no_driver_for_cash"
        payment.failure_reason = "a cash payment needs a driver who collected it"
        payment.failed_at = now
        payment.next_attempt_at = None
        await session.flush()
        _failed_event(session, payment)
        return
    payment.status = PaymentStatus.CAPTURED.value
    payment.captured_at = now
    payment.next_attempt_at = None
    await session.flush()
    await _post_capture(session, payment, now=now)


async def _post_capture(session: AsyncSession, payment: Payment, *, now: datetime) -> None:
    method = MethodType(payment.method)
    parts = Split(
        booking_fee=payment.booking_fee,
        commission=payment.commission,
        driver_earning=payment.driver_earning,
    )
    await ledger.post(
        session,
        reference=f"capture:{payment.id}",
        kind=payment.kind,
        postings=capture_postings(
            method=method,
            amount=payment.amount,
            currency=payment.currency,
            parts=parts,
            driver_id=payment.driver_id,
        ),
        at=now,
        payment_id=payment.id,
        ride_id=payment.ride_id,
        driver_id=payment.driver_id,
        method=payment.method,
    )
    add_event(
        session,
        PaymentCaptured(
            payment_id=payment.id,
            ride_id=payment.ride_id,
            rider_id=payment.rider_id,
            driver_id=payment.driver_id,
            amount=f"{payment.amount:f}",
            currency=payment.currency,
            method=payment.method,
            brand=payment.brand,
            last4=payment.last4,
        ),
    )


def _failed_event(session: AsyncSession, payment: Payment) -> None:
    add_event(
        session,
        PaymentFailed(
            payment_id=payment.id,
            ride_id=payment.ride_id,
            rider_id=payment.rider_id,
            amount=f"{payment.amount:f}",
            currency=payment.currency,
            reason=payment.failure_code or "failed",
            attempts=payment.attempts,
        ),
    )


# --- charging: phase (a) claim and phase (c) record ----------------------------------------


async def claim_due_charges(
    session: AsyncSession, *, now: datetime, limit: int, policy: PaymentsPolicy
) -> list[ChargeClaim]:
    lease_until = now + timedelta(seconds=policy.lease_s)
    claimed = await repository.claim_due_payments(
        session, now=now, limit=limit, lease_until=lease_until
    )
    return [
        ChargeClaim(
            payment_id=p.id,
            ride_id=p.ride_id,
            attempts=p.attempts,
            key=p.idempotency_key,
            token=p.provider_token or "",
            amount=p.amount,
            currency=p.currency,
        )
        for p in claimed
    ]


async def record_charge(
    session: AsyncSession,
    claim: ChargeClaim,
    result: CallOutcome,
    *,
    now: datetime,
    policy: PaymentsPolicy,
) -> bool:
    """Record what the provider said for ``claim``; False if the claim was overtaken (its
    lease expired and another worker has the payment now), in which case nothing changes."""
    payment = await repository.get_payment(session, claim.payment_id)
    if payment is None:
        return False
    common: dict[str, Any] = {"updated_at": now, "lease_expires_at": None}
    common["last_outcome"] = result.outcome.value
    if result.outcome is Outcome.SUCCEEDED:
        values = {
            **common,
            "status": PaymentStatus.CAPTURED.value,
            "captured_at": now,
            "provider_charge_id": result.provider_id,
            "next_attempt_at": None,
            "failure_code": None,
            "failure_reason": None,
        }
    elif result.outcome is Outcome.DECLINED or (
        claim.attempts - payment.attempts_at_retry >= policy.max_attempts
    ):
        code = result.code or "retries_exhausted"
        if result.outcome is not Outcome.DECLINED:
            code = "retries_exhausted"
        values = {
            **common,
            "status": PaymentStatus.FAILED.value,
            "failed_at": now,
            "next_attempt_at": None,
            "failure_code": code,
            "failure_reason": (result.message or _REASONS.get(code, code))[:200],
        }
    else:
        delay = retry_delay_s(
            claim.attempts - payment.attempts_at_retry,
            base_s=policy.retry_base_s,
            cap_s=policy.retry_cap_s,
            rng=_rng,
        )
        values = {
            **common,
            "status": PaymentStatus.PENDING.value,
            "next_attempt_at": now + timedelta(seconds=delay),
            "failure_code": result.code,
            "failure_reason": (result.message or "")[:200] or None,
        }
    won = await repository.fenced_payment_update(
        session, payment_id=claim.payment_id, attempts=claim.attempts, values=values
    )
    if not won:
        return False
    payment = await repository.get_payment(session, claim.payment_id)
    assert payment is not None
    if payment.status == PaymentStatus.CAPTURED.value:
        await _post_capture(session, payment, now=now)
    elif payment.status == PaymentStatus.FAILED.value:
        _failed_event(session, payment)
    return True


_REASONS = {
    "retries_exhausted": "the payment provider did not answer after every retry",
    "insufficient_funds": "the card has insufficient funds",
    "expired_card": "the card has expired",
    "invalid_token": "the card is not known to the payment provider",
    "idempotency_key_reused": "the charge conflicted with an earlier one (an internal error)",
}


# --- admin: retry --------------------------------------------------------------------------


async def retry_payment(
    session: AsyncSession, *, payment_id: str, payment_method_id: str | None, now: datetime
) -> Payment:
    """Charge a failed payment again. After a definite failure (a decline) the next
    attempt is a new generation (a new idempotency key), with the method asked for, else
    the rider's current default card, else the same card. After an unknown outcome
    (retries exhausted on timeouts) the same key and card are used again, so a charge
    that did happen is found instead of made twice."""
    payment = await repository.lock_payment(session, payment_id)
    if payment is None:
        raise NotFound("payment not found")
    if payment.status != PaymentStatus.FAILED.value:
        raise Conflict(f"only a failed payment can be retried; this one is {payment.status}")
    uncertain = payment.last_outcome is not None and Outcome(payment.last_outcome) in UNCERTAIN
    method: PaymentMethod | None = None
    if payment_method_id is not None:
        method = await repository.get_method(session, payment_method_id)
        if (
            method is None
            or method.rider_id != payment.rider_id
            or method.removed_at is not None
            or method.type != MethodType.CARD.value
        ):
            raise InvalidRequest("payment_method_id is not an active card of the payment's rider")
        if uncertain and method.provider_token != payment.provider_token:
            raise Conflict(
                "the last attempt's outcome is unknown: retry with the same card first, "
                "so that a charge that went through is not made twice"
            )
    elif not uncertain:
        for candidate in await repository.active_methods(session, payment.rider_id):
            if candidate.is_default and candidate.type == MethodType.CARD.value:
                method = candidate
    if method is None and payment.provider_token is None:
        raise InvalidRequest("the rider has no card to charge; ask them to add one")
    if method is not None:
        payment.method = MethodType.CARD.value
        payment.payment_method_id = method.id
        payment.provider_token = method.provider_token
        payment.brand = method.brand
        payment.last4 = method.last4
    if not uncertain:
        payment.generation += 1
    payment.status = PaymentStatus.PENDING.value
    payment.attempts_at_retry = payment.attempts
    payment.next_attempt_at = now
    payment.failed_at = None
    payment.updated_at = now
    await session.flush()
    await work_became_due(session)
    return payment


# --- admin: refunds ------------------------------------------------------------------------


async def start_refund(
    session: AsyncSession,
    *,
    payment_id: str,
    amount: Decimal | None,
    reason: str | None,
    requested_by: str,
    now: datetime,
    policy: PaymentsPolicy,
) -> RefundClaim:
    """Phase (a) of a refund: the refund row (its id is the provider's idempotency key),
    claimed by the caller under a lease. Never more than what is left of the payment,
    counting refunds still under way."""
    payment = await repository.lock_payment(session, payment_id)
    if payment is None:
        raise NotFound("payment not found")
    if payment.status != PaymentStatus.CAPTURED.value:
        raise Conflict(f"only a captured payment can be refunded; this one is {payment.status}")
    if payment.method != MethodType.CARD.value or payment.provider_charge_id is None:
        raise Conflict("a cash payment is refunded in cash, outside the system")
    left = payment.amount - await repository.reserved_for_refunds(session, payment.id)
    if amount is None:
        if left <= 0:
            raise Conflict("the payment has been refunded in full already")
        amount = left
    elif amount > left:
        raise InvalidRequest(
            f"amount {amount} is more than what is left to refund ({left} {payment.currency})"
        )
    refund = Refund(
        id=new_id("rfd"),
        payment_id=payment.id,
        amount=amount,
        currency=payment.currency,
        reason=reason,
        requested_by=requested_by,
        status=RefundStatus.PROCESSING.value,
        attempts=1,
        lease_expires_at=now + timedelta(seconds=policy.lease_s),
        created_at=now,
        updated_at=now,
    )
    session.add(refund)
    await session.flush()
    return RefundClaim(
        refund_id=refund.id,
        payment_id=payment.id,
        attempts=1,
        key=refund.idempotency_key,
        charge_id=payment.provider_charge_id,
        amount=amount,
        currency=payment.currency,
    )


async def claim_due_refunds(
    session: AsyncSession, *, now: datetime, limit: int, policy: PaymentsPolicy
) -> list[RefundClaim]:
    lease_until = now + timedelta(seconds=policy.lease_s)
    refunds = await repository.claim_due_refunds(
        session, now=now, limit=limit, lease_until=lease_until
    )
    claims = []
    for refund in refunds:
        payment = await repository.get_payment(session, refund.payment_id)
        assert payment is not None
        assert payment.provider_charge_id is not None
        claims.append(
            RefundClaim(
                refund_id=refund.id,
                payment_id=refund.payment_id,
                attempts=refund.attempts,
                key=refund.idempotency_key,
                charge_id=payment.provider_charge_id,
                amount=refund.amount,
                currency=refund.currency,
            )
        )
    return claims


async def record_refund(
    session: AsyncSession,
    claim: RefundClaim,
    result: CallOutcome,
    *,
    now: datetime,
    policy: PaymentsPolicy,
) -> bool:
    """Phase (c) of a refund. An unknown outcome is retried (same key) until the provider
    gives a definite answer: giving up could leave a refund made but never recorded."""
    common: dict[str, Any] = {"updated_at": now, "lease_expires_at": None}
    if result.outcome is Outcome.SUCCEEDED:
        values = {
            **common,
            "status": RefundStatus.SUCCEEDED.value,
            "provider_refund_id": result.provider_id,
            "completed_at": now,
            "next_attempt_at": None,
            "failure_reason": None,
        }
    elif result.outcome is Outcome.DECLINED:
        values = {
            **common,
            "status": RefundStatus.FAILED.value,
            "completed_at": now,
            "next_attempt_at": None,
            "failure_reason": (result.message or result.code or "refused by the provider")[:200],
        }
    else:
        delay = retry_delay_s(
            claim.attempts, base_s=policy.retry_base_s, cap_s=policy.retry_cap_s, rng=_rng
        )
        values = {
            **common,
            "status": RefundStatus.PENDING.value,
            "next_attempt_at": now + timedelta(seconds=delay),
            "failure_reason": (result.message or result.code or "")[:200] or None,
        }
    won = await repository.fenced_refund_update(
        session, refund_id=claim.refund_id, attempts=claim.attempts, values=values
    )
    if not won:
        return False
    if result.outcome is Outcome.SUCCEEDED:
        payment = await repository.get_payment(session, claim.payment_id)
        refund = await repository.get_refund(session, claim.refund_id)
        assert payment is not None
        assert refund is not None
        await repository.add_to_refunded(session, payment.id, claim.amount)
        await ledger.post(
            session,
            reference=f"refund:{claim.refund_id}",
            kind="refund",
            postings=refund_postings(amount=claim.amount, currency=claim.currency),
            at=now,
            payment_id=payment.id,
            ride_id=payment.ride_id,
        )
        add_event(
            session,
            PaymentRefunded(
                refund_id=claim.refund_id,
                payment_id=payment.id,
                ride_id=payment.ride_id,
                rider_id=payment.rider_id,
                amount=f"{claim.amount:f}",
                currency=claim.currency,
                reason=refund.reason,
            ),
        )
    elif result.outcome is not Outcome.DECLINED:
        await work_became_due(session)
    return True


# --- reading -------------------------------------------------------------------------------


async def get_payment(session: AsyncSession, payment_id: str) -> Payment:
    payment = await repository.get_payment(session, payment_id)
    if payment is None:
        raise NotFound("payment not found")
    return payment


async def get_refund(session: AsyncSession, refund_id: str) -> Refund:
    refund = await repository.get_refund(session, refund_id)
    if refund is None:
        raise NotFound("refund not found")
    return refund


async def payments_of_rides(
    session: AsyncSession, ride_ids: Collection[str]
) -> tuple[list[Payment], dict[str, list[Refund]]]:
    payments = await repository.payments_of_rides(session, ride_ids)
    refunds = await repository.refunds_of(session, [p.id for p in payments])
    return payments, refunds


async def refunds_of(
    session: AsyncSession, payment_ids: Collection[str]
) -> dict[str, list[Refund]]:
    return await repository.refunds_of(session, payment_ids)


async def list_payments(
    session: AsyncSession,
    *,
    status: PaymentStatus | None,
    rider_id: str | None,
    ride_id: str | None,
    before_id: str | None,
    limit: int,
) -> list[Payment]:
    return await repository.list_payments(
        session,
        status=status,
        rider_id=rider_id,
        ride_id=ride_id,
        before_id=before_id,
        limit=limit,
    )
