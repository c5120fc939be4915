"""Phase (b): the provider call between two transactions, and the whole claim -> call ->
record sequence for one claim. Nothing is held open while the provider thinks: a worker
that dies here leaves a claim whose lease expires, and whoever claims it next calls again
with the same idempotency key, so the provider acts once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import structlog

from ridehail.db import Database
from ridehail.kernel.clock import utcnow
from ridehail.payments import service
from ridehail.payments.domain import Outcome
from ridehail.payments.provider import (
    IdempotencyKeyReused,
    PaymentProvider,
    ProviderTimeout,
    ProviderUnavailable,
)
from ridehail.payments.service import CallOutcome, ChargeClaim, PaymentsPolicy, RefundClaim

log = structlog.get_logger("ridehail.payments")

T = TypeVar("T")


async def _ask(call: Awaitable[T], *, timeout_s: float, what: str, **ids: str) -> T | CallOutcome:
    """The provider's answer to ``call``, or the outcome a failure to get one means: a
    timeout or an unexpected error is *unknown* (it may have happened: retry with the same
    key), the provider being unavailable is an *error* (it did not happen), a reused key
    with other parameters is a refusal (a bug on our side, never retried)."""
    try:
        return await asyncio.wait_for(call, timeout=timeout_s)
    except (ProviderTimeout, TimeoutError):
        return CallOutcome(Outcome.UNKNOWN, code="timeout", message="the provider timed out")
    except ProviderUnavailable as exc:
        return CallOutcome(Outcome.ERROR, code="provider_unavailable", message=str(exc))
    except IdempotencyKeyReused as exc:
        log.error("idempotency_key_reused", call=what, error=str(exc), **ids)
        return CallOutcome(Outcome.DECLINED, code="idempotency_key_reused")
    except Exception as exc:  # a bug or a broken connection: unknown, retried with the key
        log.exception(f"{what}_call_failed", **ids)
        return CallOutcome(Outcome.UNKNOWN, code="provider_error", message=str(exc))


async def call_charge(
    provider: PaymentProvider, claim: ChargeClaim, *, timeout_s: float
) -> CallOutcome:
    result = await _ask(
        provider.charge(
            key=claim.key,
            token=claim.token,
            amount=claim.amount,
            currency=claim.currency,
            reference=claim.payment_id,
            ride_id=claim.ride_id,
        ),
        timeout_s=timeout_s,
        what="charge",
        payment_id=claim.payment_id,
    )
    if isinstance(result, CallOutcome):
        return result
    if result.succeeded:
        return CallOutcome(Outcome.SUCCEEDED, provider_id=result.charge_id)
    return CallOutcome(
        Outcome.DECLINED,
        provider_id=result.charge_id,
        code=result.decline_code or "declined",
        message=result.message,
    )


async def call_refund(
    provider: PaymentProvider, claim: RefundClaim, *, timeout_s: float
) -> CallOutcome:
    result = await _ask(
        provider.refund(
            key=claim.key, charge_id=claim.charge_id, amount=claim.amount, currency=claim.currency
        ),
        timeout_s=timeout_s,
        what="refund",
        refund_id=claim.refund_id,
    )
    if isinstance(result, CallOutcome):
        return result
    if result.succeeded:
        return CallOutcome(Outcome.SUCCEEDED, provider_id=result.refund_id)
    return CallOutcome(
        Outcome.DECLINED, provider_id=result.refund_id, code=result.failure_code, message=None
    )


async def charge(
    db: Database, provider: PaymentProvider, claim: ChargeClaim, policy: PaymentsPolicy
) -> Outcome:
    """Phases (b) and (c) for one claimed payment."""
    result = await call_charge(provider, claim, timeout_s=policy.provider_timeout_s)
    async with db.transaction() as session:
        recorded = await service.record_charge(session, claim, result, now=utcnow(), policy=policy)
    log.info(
        "charge_attempt",
        payment_id=claim.payment_id,
        attempt=claim.attempts,
        outcome=result.outcome.value,
        code=result.code,
        recorded=recorded,
    )
    return result.outcome


async def refund(
    db: Database, provider: PaymentProvider, claim: RefundClaim, policy: PaymentsPolicy
) -> Outcome:
    """Phases (b) and (c) for one claimed refund."""
    result = await call_refund(provider, claim, timeout_s=policy.provider_timeout_s)
    async with db.transaction() as session:
        recorded = await service.record_refund(session, claim, result, now=utcnow(), policy=policy)
    log.info(
        "refund_attempt",
        refund_id=claim.refund_id,
        attempt=claim.attempts,
        outcome=result.outcome.value,
        recorded=recorded,
    )
    return result.outcome
