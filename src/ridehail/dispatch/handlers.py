"""Dispatch's reactions to other domains' events. Each runs in its own transaction and
records the event id, so a redelivered event changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ridehail.contracts import DriverWentOffline, RideRequested, RideStatusChanged
from ridehail.db import Database
from ridehail.db.processed import first_time
from ridehail.dispatch import service
from ridehail.dispatch.service import DispatchPolicy
from ridehail.kernel.clock import utcnow
from ridehail.messaging import EventBus, Message

CONSUMER = "dispatch"
TOPICS = (RideRequested.topic, RideStatusChanged.topic, DriverWentOffline.topic)


def make_handler(
    *, db: Database, policy: DispatchPolicy, nudge: Callable[[], None]
) -> Callable[[Message], Awaitable[None]]:
    async def handle(message: Message) -> None:
        now = utcnow()
        async with db.transaction() as session:
            if not await first_time(session, consumer=CONSUMER, event_id=message.id):
                return
            payload = dict(message.payload)
            if message.topic == RideRequested.topic:
                event = RideRequested.from_payload(payload)
                await service.open_search(session, ride_id=event.ride_id, now=now, policy=policy)
            elif message.topic == RideStatusChanged.topic:
                changed = RideStatusChanged.from_payload(payload)
                if changed.status == "searching":
                    await service.open_search(
                        session, ride_id=changed.ride_id, now=now, policy=policy
                    )
                else:
                    await service.close_search(
                        session, ride_id=changed.ride_id, outcome=changed.status, now=now
                    )
            elif message.topic == DriverWentOffline.topic:
                offline = DriverWentOffline.from_payload(payload)
                await service.driver_went_offline(session, driver_id=offline.driver_id, now=now)
        nudge()

    return handle


def subscribe(
    bus: EventBus, *, db: Database, policy: DispatchPolicy, nudge: Callable[[], None]
) -> None:
    bus.subscribe(
        group=CONSUMER, topics=TOPICS, handler=make_handler(db=db, policy=policy, nudge=nudge)
    )
