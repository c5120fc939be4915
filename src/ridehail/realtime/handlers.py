"""The bridge from the durable event bus to the real-time fan-out.

One process of the consumer group receives each ride event and publishes a small "the ride
changed" note on the ride's channel; every WebSocket watching that ride, on any process,
then reloads the ride from the database (the authority) and sends it. The note carries no
state of its own, so a duplicate or late note only causes a harmless reload.
"""

from __future__ import annotations

from ridehail.contracts import RideRequested, RideStatusChanged
from ridehail.messaging import EventBus, Message, PubSub

GROUP = "realtime"


def ride_channel(ride_id: str) -> str:
    return f"ride:{ride_id}"


def subscribe_realtime(bus: EventBus, *, pubsub: PubSub) -> None:
    async def handle(message: Message) -> None:
        ride_id = str(message.payload["ride_id"])
        note = {"type": "ride.changed", "ride_id": ride_id, "event_id": message.id}
        if "status" in message.payload:
            note["status"] = str(message.payload["status"])
        await pubsub.publish(ride_channel(ride_id), note)

    bus.subscribe(
        group=GROUP, topics=(RideRequested.topic, RideStatusChanged.topic), handler=handle
    )
