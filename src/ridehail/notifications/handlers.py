"""The notifications consumer: every integration event, once, into notification and
webhook delivery rows. The event id is recorded with ``first_time`` in the same transaction
as the rows (whose unique keys are a second guard), so a redelivered event queues nothing;
each notification stands alone, so events arriving out of order are fine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ridehail.contracts import ALL_EVENTS
from ridehail.db import Database
from ridehail.db.processed import first_time
from ridehail.messaging import EventBus, Message
from ridehail.notifications import service

CONSUMER = "notifications"
#: Every topic: webhooks may subscribe to any of them.
TOPICS = tuple(e.topic for e in ALL_EVENTS)


def make_handler(
    *, db: Database, nudge: Callable[[], None]
) -> Callable[[Message], Awaitable[None]]:
    async def handle(message: Message) -> None:
        async with db.transaction() as session:
            if not await first_time(session, consumer=CONSUMER, event_id=message.id):
                return
            queued = await service.queue_for_event(
                session, event_id=message.id, topic=message.topic, payload=message.payload
            )
        if queued.notifications or queued.deliveries:
            nudge()

    return handle


def subscribe(bus: EventBus, *, db: Database, nudge: Callable[[], None]) -> None:
    bus.subscribe(group=CONSUMER, topics=TOPICS, handler=make_handler(db=db, nudge=nudge))
