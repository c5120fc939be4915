"""The outbox relay: publishes committed outbox rows to the event bus, oldest first, then
marks them published. It may publish a row twice (a crash between publish and mark), never
zero times; consumers deduplicate by event id."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from functools import partial

import structlog
from sqlalchemy import delete, select, update

from ridehail.background import BackgroundLoop
from ridehail.db import Database, OutboxEvent, idempotency
from ridehail.db.engine import OUTBOX_CHANNEL
from ridehail.db.processed import ProcessedEvent
from ridehail.kernel.clock import utcnow
from ridehail.messaging.ports import EventBus, Message

log = structlog.get_logger("ridehail.relay")

BATCH = 200
#: Published events are kept this long (for inspection and late replays), then deleted.
OUTBOX_RETENTION = timedelta(days=1)
#: Consumers remember processed ids this long; far longer than any redelivery window.
PROCESSED_RETENTION = timedelta(days=7)
PRUNE_EVERY_S = 600.0


class OutboxRelay(BackgroundLoop):
    name = "outbox-relay"

    def __init__(self, *, db: Database, bus: EventBus, poll_s: float) -> None:
        # Woken by the NOTIFY of any process's commit that wrote events, so an event waits
        # milliseconds, not a poll interval, for its relay; polling stays the fallback.
        super().__init__(
            interval_s=poll_s, listen=None if db.is_sqlite else partial(db.listen, OUTBOX_CHANNEL)
        )
        self._db = db
        self._bus = bus
        self._last_prune = 0.0

    async def step(self) -> None:
        while await self.relay_once() == BATCH and not self.stopping:
            pass
        if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
            await self.prune(now=utcnow())
            self._last_prune = time.monotonic()

    async def relay_once(self) -> int:
        """Publish one batch of unpublished events; returns how many. Rows are locked with
        SKIP LOCKED on PostgreSQL so several relays never publish the same batch at once."""
        async with self._db.transaction() as session:
            stmt = (
                select(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None))
                .order_by(OutboxEvent.seq)
                .limit(BATCH)
            )
            if not self._db.is_sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            rows = list((await session.execute(stmt)).scalars())
            if not rows:
                return 0
            await self._bus.publish_many(
                [Message(id=r.event_id, topic=r.topic, payload=r.payload) for r in rows]
            )
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.seq.in_([r.seq for r in rows]))
                .values(published_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        return len(rows)

    async def prune(self, *, now: datetime) -> int:
        """Delete published events, processed-event records and stored idempotent responses
        past their retention."""
        async with self._db.transaction() as session:
            outbox = await session.execute(
                delete(OutboxEvent).where(
                    OutboxEvent.published_at.is_not(None),
                    OutboxEvent.published_at < now - OUTBOX_RETENTION,
                )
            )
            processed = await session.execute(
                delete(ProcessedEvent).where(
                    ProcessedEvent.processed_at < now - PROCESSED_RETENTION
                )
            )
            keys = await idempotency.prune(session, now=now)
        return int(outbox.rowcount) + int(processed.rowcount) + keys  # type: ignore[attr-defined]
