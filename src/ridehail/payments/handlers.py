"""Payments' reactions to rides' events: a completed ride (or a cancellation with a fee)
opens the ride's one payment. Each event is handled in its own transaction that also records
its id, and a ride has at most one payment (a unique key), so a redelivered or duplicated
event changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ridehail.contracts import RideCancelled, RideCompleted
from ridehail.db import Database
from ridehail.db.processed import first_time
from ridehail.kernel.clock import utcnow
from ridehail.messaging import EventBus, Message
from ridehail.payments import service
from ridehail.payments.service import PaymentsPolicy

CONSUMER = "payments"
TOPICS = (RideCompleted.topic, RideCancelled.topic)


def make_handler(*, db: Database, policy: PaymentsPolicy) -> Callable[[Message], Awaitable[None]]:
    async def handle(message: Message) -> None:
        async with db.transaction() as session:
            if not await first_time(session, consumer=CONSUMER, event_id=message.id):
                return
            now = utcnow()
            if message.topic == RideCompleted.topic:
                completed = RideCompleted.from_payload(dict(message.payload))
                await service.open_ride_payment(session, completed, policy=policy, now=now)
            elif message.topic == RideCancelled.topic:
                cancelled = RideCancelled.from_payload(dict(message.payload))
                await service.open_fee_payment(session, cancelled, policy=policy, now=now)

    return handle


def subscribe(bus: EventBus, *, db: Database, policy: PaymentsPolicy) -> None:
    bus.subscribe(group=CONSUMER, topics=TOPICS, handler=make_handler(db=db, policy=policy))
