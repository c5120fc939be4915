"""The embedded event bus: asyncio queues inside one process.

This is the default transport for single-process deployments (and the test suite), not a test
double: it honours the same contract as the Redis adapter - consumer groups, per-topic order,
retries with backoff, dead-lettering, bounded stop. What it cannot give is durability and
cross-process competition: messages live in memory and are gone if the process dies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ridehail.messaging.ports import (
    ConsumerTasks,
    EventBus,
    Handler,
    Message,
    Outcome,
    RetryPolicy,
    check_subscription,
    deliver,
    encode_payload,
)


@dataclass(slots=True)
class _Subscription:
    """One (group, topic) pair: its own queue and its own consumer loop keep topics ordered."""

    group: str
    topic: str
    handler: Handler
    queue: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    redeliver: Message | None = None
    """A message whose retries were interrupted by stop(): handled first on the next start()."""


class InProcessEventBus:
    """Consumer groups over per-(group, topic) asyncio queues.

    Queues are unbounded on purpose: ``publish`` is called from request handlers and outbox
    relays that must not stall behind a slow consumer. The price is that a consumer which
    falls behind for good grows memory without limit; deployments that can have that problem
    should use the Redis adapter, whose streams are trimmed at ``maxlen``.

    A message published to a topic no group has subscribed to is dropped (there is no log to
    replay it from); messages published after ``subscribe`` but before ``start`` wait in the
    queues and are delivered once the bus starts.
    """

    def __init__(
        self,
        *,
        max_attempts: int = 10,
        retry_base_s: float = 0.05,
        retry_cap_s: float = 5.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self._policy = RetryPolicy(
            max_attempts=max_attempts, base_s=retry_base_s, cap_s=retry_cap_s
        )
        self._tasks = ConsumerTasks(stop_timeout_s=stop_timeout_s)
        self._subscriptions: dict[tuple[str, str], _Subscription] = {}
        self._by_topic: dict[str, list[_Subscription]] = {}

    async def publish(self, message: Message) -> None:
        await self.publish_many([message])

    async def publish_many(self, messages: Sequence[Message]) -> None:
        """Enqueue for every subscribed group; all-or-nothing if a payload is not JSON.

        Payloads go through a JSON round trip so this adapter rejects exactly what Redis would
        reject, and so each group gets its own copy that no other handler can mutate.
        """
        encoded = [(message, encode_payload(message.payload)) for message in messages]
        for message, body in encoded:
            for subscription in self._by_topic.get(message.topic, ()):
                copy = Message(id=message.id, topic=message.topic, payload=json.loads(body))
                subscription.queue.put_nowait(copy)

    def subscribe(self, *, group: str, topics: Sequence[str], handler: Handler) -> None:
        check_subscription(group, topics, started=self._tasks.running, taken=self._subscriptions)
        for topic in topics:
            subscription = _Subscription(group=group, topic=topic, handler=handler)
            self._subscriptions[(group, topic)] = subscription
            self._by_topic.setdefault(topic, []).append(subscription)

    async def start(self) -> None:
        if self._tasks.running:
            raise RuntimeError("event bus already started")
        for subscription in self._subscriptions.values():
            name = f"bus:{subscription.group}:{subscription.topic}"
            self._tasks.spawn(name, self._consume(subscription))

    async def stop(self) -> None:
        await self._tasks.stop()

    async def ping(self) -> None:
        """Always reachable: the queues live in this process."""

    async def _consume(self, subscription: _Subscription) -> None:
        """Handle one (group, topic) queue in order until stop() is requested."""
        while not self._tasks.stopping.is_set():
            message = subscription.redeliver
            if message is None:
                message = await subscription.queue.get()
            subscription.redeliver = None
            with self._tasks.in_flight():
                delivery = await deliver(
                    message,
                    subscription.handler,
                    group=subscription.group,
                    policy=self._policy,
                    stopping=self._tasks.stopping,
                )
            if delivery.outcome is Outcome.INTERRUPTED:
                subscription.redeliver = message
            # HANDLED and DEAD both move on; deliver() has already logged a dead message.


if TYPE_CHECKING:
    _conforms: type[EventBus] = InProcessEventBus
