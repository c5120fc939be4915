"""The payments worker: charges due payments and completes refunds left pending.

It wakes on a nudge (this process's commit that made a payment due), on a PostgreSQL NOTIFY
(another process's), and on a short timer (backoffs coming due, leases expiring). Each
payment goes through its own claim -> provider call -> record; several run at once, and
several workers (in several processes) share the work through SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
from functools import partial

import structlog
from prometheus_client import Counter

from ridehail.background import BackgroundLoop
from ridehail.db import Database
from ridehail.kernel.clock import utcnow
from ridehail.payments import processing, service
from ridehail.payments.provider import PaymentProvider
from ridehail.payments.service import PAYMENTS_CHANNEL, PaymentsPolicy

log = structlog.get_logger("ridehail.payments")

ATTEMPTS = Counter(
    "ridehail_payments_attempts_total", "Provider calls by kind and outcome", ["kind", "outcome"]
)

#: Claims per wake-up before yielding to the timer again.
MAX_CLAIMS_PER_STEP = 1_000


class PaymentsWorker(BackgroundLoop):
    name = "payments-worker"

    def __init__(
        self,
        *,
        db: Database,
        provider: PaymentProvider,
        policy: PaymentsPolicy,
        poll_s: float,
    ) -> None:
        super().__init__(
            interval_s=poll_s,
            listen=None if db.is_sqlite else partial(db.listen, PAYMENTS_CHANNEL),
        )
        self._db = db
        self._provider = provider
        self._policy = policy

    async def step(self) -> None:
        await self.run_due()

    async def run_due(self) -> int:
        """Charge every due payment and retry every due refund; returns the calls made."""
        done = 0
        while done < MAX_CLAIMS_PER_STEP and not self.stopping:
            async with self._db.transaction() as session:
                now = utcnow()
                charges = await service.claim_due_charges(
                    session, now=now, limit=self._policy.concurrency, policy=self._policy
                )
                room = self._policy.concurrency - len(charges)
                refunds = (
                    await service.claim_due_refunds(
                        session, now=now, limit=room, policy=self._policy
                    )
                    if room > 0
                    else []
                )
            if not charges and not refunds:
                break
            outcomes = await asyncio.gather(
                *(processing.charge(self._db, self._provider, c, self._policy) for c in charges),
                *(processing.refund(self._db, self._provider, r, self._policy) for r in refunds),
                return_exceptions=True,
            )
            for i, outcome in enumerate(outcomes):
                kind = "charge" if i < len(charges) else "refund"
                if isinstance(outcome, BaseException):
                    # Its claim stays processing until the lease expires, then it is retried.
                    log.error("payment_step_failed", kind=kind, error=repr(outcome))
                    ATTEMPTS.labels(kind, "crashed").inc()
                else:
                    ATTEMPTS.labels(kind, outcome.value).inc()
            done += len(outcomes)
        return done
