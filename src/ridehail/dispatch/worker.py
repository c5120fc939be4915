"""The dispatcher loop: advances due searches and expires offers.

It wakes on a nudge (a new ride, a decline) for low latency and on a timer for everything
else (offer expiry, retries, give-ups), so a missed nudge only costs one tick. Every step is
its own short transaction; several dispatchers (in several processes) share the work.
"""

from __future__ import annotations

import structlog
from prometheus_client import Counter

from ridehail.background import BackgroundLoop
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


class Dispatcher(BackgroundLoop):
    name = "dispatcher"

    def __init__(
        self,
        *,
        db: Database,
        store: DriverLocationStore,
        policy: DispatchPolicy,
        tick_s: float,
        pubsub: PubSub | None = None,
    ) -> None:
        super().__init__(interval_s=tick_s)
        self._db = db
        self._store = store
        self._policy = policy
        self._pubsub = pubsub

    async def step(self) -> None:
        await self.tick()

    async def tick(self) -> int:
        """Expire overdue offers, then advance every due search. Returns the steps taken."""
        async with self._db.transaction() as session:
            expired = await service.expire_offers(session, now=utcnow())
        if expired:
            EXPIRED.inc(expired)
        steps = 0
        while steps < MAX_STEPS_PER_TICK and not self.stopping:
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
