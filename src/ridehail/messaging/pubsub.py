"""Real-time fan-out: at-most-once messages to whoever listens right now.

Unlike the event bus, nothing is stored: a listener that was not subscribed when a message
was published never sees it, so every real-time client starts from a snapshot (and resyncs
from one after reconnecting). One process multiplexes all of its local subscribers over a
single upstream subscription per channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub as RedisPubSubConnection

log = logging.getLogger("ridehail.messaging")

Event = tuple[str, dict[str, Any]]

#: A subscriber that falls this far behind loses its oldest messages, not the process its
#: memory: real-time messages are superseded by newer ones anyway.
QUEUE_LIMIT = 256


class Subscription:
    """One listener's channels and inbox. Use ``await sub.get()`` to receive."""

    def __init__(self, hub: _Fanout) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.channels: set[str] = set()

    async def add(self, channel: str) -> None:
        if channel not in self.channels:
            self.channels.add(channel)
            await self._hub.attach(channel, self)

    async def remove(self, channel: str) -> None:
        if channel in self.channels:
            self.channels.discard(channel)
            await self._hub.detach(channel, self)

    async def get(self) -> Event:
        return await self._queue.get()

    def offer(self, event: Event) -> None:
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
        self._queue.put_nowait(event)

    async def close(self) -> None:
        for channel in list(self.channels):
            await self.remove(channel)


class _Fanout:
    """Local registry: channel -> subscriptions; delivers to each one's inbox."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)

    async def attach(self, channel: str, sub: Subscription) -> None:
        first = not self._subs[channel]
        self._subs[channel].add(sub)
        if first:
            await self._upstream_subscribe(channel)

    async def detach(self, channel: str, sub: Subscription) -> None:
        subs = self._subs.get(channel)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[channel]
            await self._upstream_unsubscribe(channel)

    def deliver(self, channel: str, message: dict[str, Any]) -> None:
        for sub in list(self._subs.get(channel, ())):
            sub.offer((channel, message))

    def subscription(self) -> Subscription:
        return Subscription(self)

    async def _upstream_subscribe(self, channel: str) -> None:
        return None

    async def _upstream_unsubscribe(self, channel: str) -> None:
        return None


class PubSub(Protocol):
    def subscription(self) -> Subscription: ...
    async def publish(self, channel: str, message: Mapping[str, Any]) -> None: ...
    def may_have_listeners(self, channel: str) -> bool:
        """False only when a publish to ``channel`` would certainly reach nobody, so that a
        hot path can skip building the message."""
        ...

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class InProcessPubSub(_Fanout):
    """The embedded default: publish delivers straight to this process's subscribers."""

    async def publish(self, channel: str, message: Mapping[str, Any]) -> None:
        if channel in self._subs:
            self.deliver(channel, json.loads(json.dumps(message)))

    def may_have_listeners(self, channel: str) -> bool:
        return channel in self._subs

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisPubSub(_Fanout):
    """Redis pub/sub: every process subscribes once per channel its clients watch, so a
    rider on one API process sees what a driver reported to another."""

    def __init__(self, client: aioredis.Redis, *, key_prefix: str = "ridehail:") -> None:
        super().__init__()
        self._client = client
        self._prefix = f"{key_prefix}rt:"
        self._conn: RedisPubSubConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def publish(self, channel: str, message: Mapping[str, Any]) -> None:
        await self._client.publish(self._prefix + channel, json.dumps(message))

    def may_have_listeners(self, channel: str) -> bool:
        return True  # listeners may be in any process

    async def start(self) -> None:
        self._conn = self._client.pubsub(ignore_subscribe_messages=True)
        # A standing subscription keeps the connection open for the reader.
        await self._conn.subscribe(self._prefix + "_")
        self._reader = asyncio.create_task(self._read(), name="redis-pubsub-reader")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._conn is not None:
            await self._conn.aclose()  # type: ignore[no-untyped-call]
            self._conn = None

    async def _upstream_subscribe(self, channel: str) -> None:
        if self._conn is not None:
            async with self._lock:
                await self._conn.subscribe(self._prefix + channel)

    async def _upstream_unsubscribe(self, channel: str) -> None:
        if self._conn is not None:
            async with self._lock:
                await self._conn.unsubscribe(self._prefix + channel)

    async def _read(self) -> None:
        assert self._conn is not None
        while True:
            try:
                raw = await self._conn.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # the connection dropped: redis-py reconnects and resubscribes
                log.warning("pubsub read failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if raw is None or raw.get("type") != "message":
                continue
            channel = raw["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else str(channel)
            try:
                message = json.loads(raw["data"])
            except (TypeError, ValueError):
                continue
            self.deliver(channel.removeprefix(self._prefix), message)
