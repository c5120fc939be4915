"""Asynchronous messaging between domains: the event bus port and its adapters.

``InProcessEventBus`` is the embedded default for a single process; ``RedisStreamsEventBus``
carries the same contract across processes with durable, consumer-group delivery.
"""

from ridehail.messaging.memory import InProcessEventBus
from ridehail.messaging.ports import EventBus, Handler, Message
from ridehail.messaging.pubsub import InProcessPubSub, PubSub, RedisPubSub, Subscription
from ridehail.messaging.redis_streams import RedisStreamsEventBus

__all__ = [
    "EventBus",
    "Handler",
    "InProcessEventBus",
    "InProcessPubSub",
    "Message",
    "PubSub",
    "RedisPubSub",
    "RedisStreamsEventBus",
    "Subscription",
]
