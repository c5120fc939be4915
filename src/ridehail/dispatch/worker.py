"""The dispatcher loop: advances due searches and expires offers.

It wakes on a nudge (a new ride, a decline) for low latency and on a timer for everything
else (offer expiry, retries, give-ups), so a missed nudge only costs one tick. Every step is
its own short transaction; several dispatchers (in several processes) share the work.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from prometheus_client import Counter

from ridehail.db import Database
from ridehail.dispatch import repository, service
from ridehail.dispatch.schemas import OfferOut
from ridehail.dispatch.service import DispatchPolicy
from ridehail.kernel.clock import utcnow
from ridehail.locations import DriverLocationStore
from ridehail.messaging import PubSub

log = structlog.get_logger("ridehail.dispatch")

STEPS = Counter("ridehail_dispatch_steps_total", "Dispatch search steps by outcome", ["outcome"])
EXPIRED = Counter("ridehail_dispatch_offers_expired_total", "Offers that expired unanswered")

#: Searches advanced per wake-up before yielding to the timer again.
MAX_STEPS_PER_TICK = 200


def offer_channel(driver_id: str) -> str:
    return f"driver:{driver_id}:offers"


#: How long stop() waits for the step in progress before cancelling it.
STOP_GRACE_S = 10.0


class Dispatcher:
    def __init__(
        self,
        *,
        db: Database,
        store: DriverLocationStore,
        policy: DispatchPolicy,
        tick_s: float,
        pubsub: PubSub | None = None,
    ) -> None:
        self._pubsub = pubsub
        self._db = db
        self._store = store
        self._policy = policy
        self._tick_s = tick_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def nudge(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self) -> None:
        """Finish the step in progress, then stop; cancel only a step that overruns (a
        query cancelled mid-flight could leave its connection inside a transaction)."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=STOP_GRACE_S)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch_tick_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._tick_s)
            self._wake.clear()

    async def tick(self) -> int:
        """Expire overdue offers, then advance every due search. Returns the steps taken."""
        async with self._db.transaction() as session:
            expired = await service.expire_offers(session, now=utcnow())
        if expired:
            EXPIRED.inc(expired)
        steps = 0
        while steps < MAX_STEPS_PER_TICK and not self._stopping:
            async with self._db.transaction() as session:
                now = utcnow()
                search = await repository.claim_due_search(session, now)
                if search is None:
                    break
                outcome, offer = await service.advance(
                    session, search, store=self._store, now=now, policy=self._policy
                )
            STEPS.labels(outcome).inc()
            if offer is not None and self._pubsub is not None:
                # After the commit: the offer exists for whoever reacts to the push.
                message = {"type": "offer", **OfferOut.of(offer).model_dump(mode="json")}
                await self._pubsub.publish(offer_channel(offer.driver_id), message)
            steps += 1
        return steps
