"""WebSockets of API.md: a ride's live events, and a driver's stream (offers in, positions
out). Authentication is the first message, never the URL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError

from ridehail import dispatch, locations, notifications, rides
from ridehail.kernel.auth import Principal, Role
from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import DomainError
from ridehail.messaging import Subscription
from ridehail.realtime import sockets
from ridehail.realtime.handlers import ride_channel
from ridehail.runtime import Runtime

router = APIRouter(prefix="/api/v1")

#: Riders get the driver's position at most this often (the app animates in between).
POSITION_INTERVAL_S = 1.0
#: A ride-events socket follows its driver for this long at a time, renewed at a third.
FOLLOW_S = 30.0
#: Notifications a new notifications stream starts with.
SNAPSHOT_SIZE = 20


def _runtime(websocket: WebSocket) -> Runtime:
    runtime: Runtime = websocket.app.state.runtime
    return runtime


async def _ride_for(runtime: Runtime, principal: Principal, ride_id: str) -> rides.Ride | None:
    async with runtime.db.read_only() as session:
        try:
            ride = await rides.get_ride(session, ride_id)
        except DomainError:
            return None
    return ride if rides.can_view(principal, ride) else None


class RideWatch:
    """What one ride-events socket has sent, so it follows the right driver and sends each
    status once and positions at most once a second."""

    def __init__(self, websocket: WebSocket, runtime: Runtime, sub: Subscription) -> None:
        self.websocket = websocket
        self.runtime = runtime
        self.sub = sub
        self.driver_id: str | None = None
        self.last_status: tuple[str, str] | None = None
        self.last_position_at = 0.0
        self.last_recorded: str = ""
        self.pending: dict[str, Any] | None = None
        self.follow_renew_at = 0.0

    async def show_ride(self, ride: rides.Ride) -> None:
        key = (ride.status, ride.updated_at.isoformat())
        if key != self.last_status:
            self.last_status = key
            body = rides.RideOut.of(ride).model_dump(mode="json")
            await sockets.send(self.websocket, {"type": "ride.status", "ride": body})
        await self.follow(ride)

    async def follow(self, ride: rides.Ride) -> None:
        """Watch the ride's driver's position while a driver is on the way or driving."""
        active = rides.RideStatus(ride.status) in rides.DRIVER_ACTIVE
        wanted = ride.driver_id if active else None
        if wanted == self.driver_id:
            return
        if self.driver_id is not None:
            await self.sub.remove(locations.position_channel(self.driver_id))
        self.driver_id, self.pending, self.last_recorded = wanted, None, ""
        if wanted is not None:
            await self.sub.add(locations.position_channel(wanted))
            await self.keep_following()
            here = await self.runtime.locations.current(wanted)
            if here is not None:
                await self.position(locations.position_message(here))

    async def keep_following(self) -> None:
        """Tell the location store the driver is watched (it announces only watched
        drivers' positions), renewed well before the follow lapses."""
        if self.driver_id is None:
            return
        self.follow_renew_at = time.monotonic() + FOLLOW_S / 3
        await self.runtime.locations.follow(self.driver_id, for_s=FOLLOW_S)

    async def position(self, message: dict[str, Any]) -> None:
        if message.get("driver_id") != self.driver_id:
            return
        recorded = str(message.get("recorded_at", ""))
        if recorded <= self.last_recorded:
            return  # an older fix than one already shown
        self.pending = message
        await self.flush(force=False)

    async def flush(self, *, force: bool) -> None:
        if self.pending is None:
            return
        now = time.monotonic()
        if not force and now - self.last_position_at < POSITION_INTERVAL_S:
            return
        message = {k: v for k, v in self.pending.items() if k != "driver_id"}
        self.last_recorded = str(message["recorded_at"])
        self.pending, self.last_position_at = None, now
        await sockets.send(self.websocket, message)

    def wait_s(self) -> float | None:
        """How long the socket may wait for a message before it has something to do: send
        a held-back position, or renew the follow."""
        now = time.monotonic()
        waits = []
        if self.pending is not None:
            waits.append(self.last_position_at + POSITION_INTERVAL_S - now)
        if self.driver_id is not None:
            waits.append(self.follow_renew_at - now)
        return max(0.0, min(waits)) if waits else None


@router.websocket("/rides/{ride_id}/events")
async def ride_events(websocket: WebSocket, ride_id: str) -> None:
    """Status changes of the ride and its driver's position, for its rider, its driver and
    admins. The first message after authentication is a snapshot."""
    runtime = _runtime(websocket)
    await websocket.accept()
    principal = await sockets.authenticate(websocket, runtime)
    if principal is None:
        return
    sub = runtime.pubsub.subscription()
    try:
        # Subscribe before the snapshot so no change falls between the two.
        await sub.add(ride_channel(ride_id))
        mine = notifications.user_channel(principal.subject_id)
        await sub.add(mine)
        ride = await _ride_for(runtime, principal, ride_id)
        if ride is None:
            await sockets.close(websocket, sockets.CLOSE_NOT_FOUND, "ride not found")
            return
        watch = RideWatch(websocket, runtime, sub)
        await watch.show_ride(ride)

        status = rides.RideStatus(ride.status)

        async def outbound() -> None:
            nonlocal status
            while status not in rides.TERMINAL:
                try:
                    channel, message = await asyncio.wait_for(sub.get(), timeout=watch.wait_s())
                except TimeoutError:
                    now = time.monotonic()
                    # Timers fire a hair early or late: "due" allows for that.
                    if now >= watch.last_position_at + POSITION_INTERVAL_S - 0.01:
                        await watch.flush(force=True)
                    if now >= watch.follow_renew_at - 0.01:
                        await watch.keep_following()
                    continue
                if channel == mine:
                    await sockets.send(websocket, message)  # the caller's notification
                elif channel == ride_channel(ride_id):
                    fresh = await _ride_for(runtime, principal, ride_id)
                    if fresh is None:
                        return
                    status = rides.RideStatus(fresh.status)
                    await watch.show_ride(fresh)
                else:
                    await watch.position(message)

        async def ignore(_message: dict[str, Any]) -> None:
            return None

        if status not in rides.TERMINAL:
            await sockets.run_until_closed(websocket, outbound=outbound, on_message=ignore)
        await sockets.close(websocket, 1000, "ride ended")
    finally:
        await sub.close()


@router.websocket("/drivers/{driver_id}/stream")
async def driver_stream(websocket: WebSocket, driver_id: str) -> None:
    """A driver's own stream: offers pushed as they are made (open ones first, as a
    snapshot); the driver may send ``{"type": "location", ...}`` frames instead of PUTs."""
    runtime = _runtime(websocket)
    await websocket.accept()
    principal = await sockets.authenticate(websocket, runtime)
    if principal is None:
        return
    if principal.role is not Role.DRIVER or principal.subject_id != driver_id:
        await sockets.close(websocket, sockets.CLOSE_FORBIDDEN, "only this driver")
        return
    sub = runtime.pubsub.subscription()
    try:
        await sub.add(dispatch.offer_channel(driver_id))
        # The driver's notifications ({"type": "notification", ...}) come this way too.
        await sub.add(notifications.user_channel(driver_id))
        async with runtime.db.read_only() as session:
            offers = await dispatch.open_offers(session, driver_id=driver_id, now=utcnow())
        for offer in offers:
            body = dispatch.OfferOut.of(offer).model_dump(mode="json")
            await sockets.send(websocket, {"type": "offer", **body})

        async def outbound() -> None:
            while True:
                _channel, message = await sub.get()
                await sockets.send(websocket, message)

        async def inbound(message: dict[str, Any]) -> None:
            await _driver_frame(websocket, runtime, driver_id, message)

        await sockets.run_until_closed(websocket, outbound=outbound, on_message=inbound)
    finally:
        await sub.close()


@router.websocket("/notifications/stream")
async def notification_stream(websocket: WebSocket) -> None:
    """Any signed-in user's notifications as they are sent: first a snapshot
    ``{"type": "notifications.snapshot", "notifications": [...]}`` (the latest, newest
    first), then ``{"type": "notification", ...}`` each."""
    runtime = _runtime(websocket)
    await websocket.accept()
    principal = await sockets.authenticate(websocket, runtime)
    if principal is None:
        return
    sub = runtime.pubsub.subscription()
    try:
        await sub.add(notifications.user_channel(principal.subject_id))
        async with runtime.db.read_only() as session:
            latest = await notifications.list_notifications(
                session, user_id=principal.subject_id, before_id=None, limit=SNAPSHOT_SIZE
            )
        bodies = [notifications.NotificationOut.of(n).model_dump(mode="json") for n in latest]
        await sockets.send(websocket, {"type": "notifications.snapshot", "notifications": bodies})

        async def outbound() -> None:
            while True:
                _channel, message = await sub.get()
                await sockets.send(websocket, message)

        async def ignore(_message: dict[str, Any]) -> None:
            return None

        await sockets.run_until_closed(websocket, outbound=outbound, on_message=ignore)
    finally:
        await sub.close()


async def _driver_frame(
    websocket: WebSocket, runtime: Runtime, driver_id: str, message: dict[str, Any]
) -> None:
    if message.get("type") != "location":
        await sockets.send(
            websocket, {"type": "error", "status": 422, "detail": "unknown message type"}
        )
        return
    fields = {k: v for k, v in message.items() if k != "type"}
    try:
        body = locations.LocationIn.model_validate(fields)
        now = utcnow()
        await locations.ingest(
            runtime.locations,
            body.to_fix(driver_id, now=now),
            feed=runtime.pubsub,
            now=now,
            max_accuracy_m=runtime.settings.location_max_accuracy_m,
        )
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        await sockets.send(
            websocket,
            {"type": "error", "status": 422, "detail": "invalid location", "errors": errors},
        )
    except DomainError as exc:
        await sockets.send(websocket, {"type": "error", "status": 422, "detail": exc.detail})
