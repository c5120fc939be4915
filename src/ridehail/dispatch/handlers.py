"""Dispatch's reactions to other domains' events. Each handler runs in its own transaction
and records the event id, so a redelivered event changes nothing; the before-commit hook
reacts to ride requests inside the transaction that makes them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail import rides
from ridehail.contracts import DriverWentOffline, RideRequested, RideStatusChanged
from ridehail.db import Database, is_postgresql, staged_events
from ridehail.db.processed import first_time
from ridehail.dispatch import repository, service
from ridehail.dispatch.policy import DispatchPolicy
from ridehail.kernel.clock import utcnow
from ridehail.messaging import EventBus, Message

CONSUMER = "dispatch"
#: PostgreSQL NOTIFY channel: a commit that opened searches wakes the dispatchers.
DISPATCH_CHANNEL = "ridehail_dispatch"
#: Set in a session whose transaction opened searches (for the after-commit nudge).
OPENED_SEARCHES = "ridehail.dispatch.opened"

TOPICS = (RideRequested.topic, RideStatusChanged.topic, DriverWentOffline.topic)
_DRIVER_BUSY = frozenset({s.value for s in rides.DRIVER_ACTIVE})


def make_handler(
    *, db: Database, policy: DispatchPolicy, nudge: Callable[[], None]
) -> Callable[[Message], Awaitable[None]]:
    async def handle(message: Message) -> None:
        now = utcnow()
        if message.topic == RideRequested.topic:
            # The request's own transaction opened the search (a before-commit hook every
            # process registers); a search missing anyway is adopted by the orphan sweep.
            # The event only wakes the dispatcher, at no cost to the database.
            nudge()
            return
        async with db.transaction() as session:
            if not await first_time(session, consumer=CONSUMER, event_id=message.id):
                return
            payload = dict(message.payload)
            if message.topic == RideStatusChanged.topic:
                changed = RideStatusChanged.from_payload(payload)
                if (
                    changed.driver_id is not None
                    and changed.previous_status in _DRIVER_BUSY
                    and changed.status not in _DRIVER_BUSY
                ):
                    # The driver's trip (or the pickup they gave back) is over: idle from now.
                    await repository.record_trip_end(session, driver_id=changed.driver_id, at=now)
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


def open_searches_with_requests(
    policy: DispatchPolicy,
) -> Callable[[AsyncSession], Awaitable[None]]:
    """A before-commit hook: a transaction that requests rides opens their searches too,
    so a ride and its search exist together or not at all, and no event has to travel
    before matching starts. The ``rides.requested`` event still goes to the dispatchers'
    consumer group, whose handler only wakes a dispatcher."""

    async def hook(session: AsyncSession) -> None:
        requested = [e for e in staged_events(session) if isinstance(e, RideRequested)]
        if not requested or session.info.get(OPENED_SEARCHES):
            return
        await service.open_new_searches(session, requested, now=utcnow(), policy=policy)
        session.info[OPENED_SEARCHES] = True
        if is_postgresql(session):
            await session.execute(text(f"NOTIFY {DISPATCH_CHANNEL}"))

    return hook


def opened_searches(session: AsyncSession) -> bool:
    return bool(session.info.get(OPENED_SEARCHES))
