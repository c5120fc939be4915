"""The dispatcher loop: advances due searches and expires offers.

Sequential and broadcast: it wakes on a nudge (a new ride, a decline) for low latency and on
a timer for everything else (offer expiry, retries, give-ups), so a missed nudge only costs
one tick; each search is advanced in its own short transaction. Batch: it runs one round
per window, taking every due search at once, and ignores nudges (the window is the point).
Several dispatchers (in several processes) share the work through SKIP LOCKED.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from functools import partial

import structlog
from prometheus_client import Counter, Histogram

from ridehail.background import BackgroundLoop
from ridehail.db import Database
from ridehail.dispatch import repository, rounds, service
from ridehail.dispatch.eta import EtaProvider
from ridehail.dispatch.handlers import DISPATCH_CHANNEL
from ridehail.dispatch.models import Offer
from ridehail.dispatch.policy import DispatchPolicy, Strategy
from ridehail.dispatch.schemas import OfferOut
from ridehail.kernel.clock import utcnow
from ridehail.locations import DriverLocationStore
from ridehail.messaging import PubSub

log = structlog.get_logger("ridehail.dispatch")

STEPS = Counter(
    "ridehail_dispatch_steps_total", "Dispatch search steps by outcome", ["outcome", "strategy"]
)
OFFERS = Counter("ridehail_dispatch_offers_total", "Offers made", ["strategy"])
ROUND_SECONDS = Histogram(
    "ridehail_dispatch_round_seconds",
    "Time of one dispatch round (claim, candidates, ranking, offers, commit)",
    ["strategy"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
ORPHANS = Counter(
    "ridehail_dispatch_orphans_adopted_total",
    "Rides found searching without an active search (a lost event) and adopted",
)
EXPIRED = Counter("ridehail_dispatch_offers_expired_total", "Offers that expired unanswered")

#: Searches advanced per wake-up before yielding to the timer again.
MAX_STEPS_PER_TICK = 1_000
#: The dispatch log's retention is applied this often, in slices of this many rows.
PRUNE_EVERY_S = 600.0
PRUNE_SLICE = 1_000
PRUNE_SLICES_PER_TICK = 10


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
        eta: EtaProvider,
        tick_s: float,
        pubsub: PubSub | None = None,
    ) -> None:
        batch = policy.strategy is Strategy.BATCH
        super().__init__(
            interval_s=policy.batch_window_s if batch else tick_s,
            # Searches opened by any process's commit (an API process, say) wake us at once.
            listen=None if db.is_sqlite else partial(db.listen, DISPATCH_CHANNEL),
        )
        self._db = db
        self._store = store
        self._policy = policy
        self._eta = eta
        self._pubsub = pubsub
        self._per_round = policy.batch_max_rides if batch else policy.round_size
        self._strategy = policy.strategy.value
        self._next_orphan_check = 0.0
        self._next_prune = 0.0

    def nudge(self) -> None:
        if self._policy.strategy is not Strategy.BATCH:
            super().nudge()

    async def step(self) -> None:
        await self.tick()

    async def tick(self) -> int:
        """Expire overdue offers, adopt orphaned rides now and then, then advance every due
        search. Returns the searches advanced."""
        if time.monotonic() >= self._next_orphan_check:
            self._next_orphan_check = time.monotonic() + self._policy.orphan_after_s / 3
            async with self._db.transaction() as session:
                adopted = await service.adopt_orphans(session, now=utcnow(), policy=self._policy)
            ORPHANS.inc(len(adopted))
        if time.monotonic() >= self._next_prune:
            # A long backlog (retention just lowered) is worked off a few slices per tick,
            # so that matching never waits long behind it.
            busy = await self.prune_log(now=utcnow()) >= PRUNE_SLICES_PER_TICK * PRUNE_SLICE
            self._next_prune = time.monotonic() + (0.0 if busy else PRUNE_EVERY_S)
        async with self._db.transaction() as session:
            expired = await service.expire_offers(session, now=utcnow())
        if expired:
            EXPIRED.inc(expired)
        steps = 0
        batch = self._policy.strategy is Strategy.BATCH
        while steps < MAX_STEPS_PER_TICK and not self.stopping:
            began = time.perf_counter()
            async with self._db.transaction() as session:
                now = utcnow()
                searches = await repository.claim_due_searches(session, now, self._per_round)
                if not searches:
                    break
                done = await rounds.run_round(
                    session,
                    searches,
                    store=self._store,
                    eta=self._eta,
                    now=now,
                    policy=self._policy,
                )
            ROUND_SECONDS.labels(self._strategy).observe(time.perf_counter() - began)
            for outcome in done.outcomes.values():
                STEPS.labels(outcome, self._strategy).inc()
            if done.offers:
                OFFERS.labels(self._strategy).inc(len(done.offers))
                await self._push(done.offers)
            steps += len(searches)
            if batch:
                break  # one round per window
        return steps

    async def prune_log(self, *, now: datetime) -> int:
        """Delete dispatch log rows past their retention, a slice per transaction and at
        most PRUNE_SLICES_PER_TICK slices; returns how many. Every dispatcher may run it: a
        row is deleted once, by whoever is first."""
        before = now - timedelta(seconds=self._policy.log_retention_s)
        deleted = 0
        for _ in range(PRUNE_SLICES_PER_TICK):
            async with self._db.transaction() as session:
                count = await repository.prune_candidates(session, before=before, limit=PRUNE_SLICE)
            deleted += count
            if count < PRUNE_SLICE or self.stopping:
                break
        if deleted:
            log.info("dispatch_log_pruned", rows=deleted)
        return deleted

    async def _push(self, offers: list[Offer]) -> None:
        """After the commit: the offers exist for whoever reacts to the push."""
        if self._pubsub is None:
            return
        for offer in offers:
            message = {"type": "offer", **OfferOut.of(offer).model_dump(mode="json")}
            await self._pubsub.publish(offer_channel(offer.driver_id), message)
