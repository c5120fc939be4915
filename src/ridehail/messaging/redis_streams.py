"""The event bus over Redis Streams and consumer groups.

Layout (``P`` is ``key_prefix``):

* ``P stream:{topic}`` - one stream per topic; entries carry ``id`` (the message's own id) and
  ``payload`` (JSON). Trimmed approximately at ``maxlen`` so a stream cannot grow forever.
* one consumer group per subscribing group, created at id ``0`` so a group that appears after
  messages were published still receives them.
* ``P dead:{topic}`` - dead letters: the message plus the group, the error and the attempts.

Each (group, topic) gets one consumer loop per process, which is what keeps a topic in publish
order within a process. Across processes the consumers of a group compete, so order holds per
consumer, and messages taken over from a dead consumer are handled when they are reclaimed.

Known limits: the attempt count lives in the consumer loop, so a message whose handler kills
the whole process is retried afresh by whoever reclaims it; consumers of exited processes stay
listed in the group (with nothing pending) until removed with ``XGROUP DELCONSUMER``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT, FieldT

from ridehail.messaging.ports import (
    ConsumerTasks,
    Delivery,
    EventBus,
    Handler,
    Message,
    Outcome,
    RetryPolicy,
    check_subscription,
    deliver,
    describe_error,
    encode_payload,
    sleep_unless,
)

logger = logging.getLogger("ridehail.messaging")


@dataclass(frozen=True, slots=True)
class _Settings:
    """Everything a consumer loop needs from its bus, fixed at construction."""

    client: Redis
    key_prefix: str
    consumer: str
    block_ms: int
    claim_idle_ms: int
    maxlen: int
    batch_size: int
    policy: RetryPolicy

    def stream_key(self, topic: str) -> str:
        return f"{self.key_prefix}stream:{topic}"

    def dead_key(self, topic: str) -> str:
        return f"{self.key_prefix}dead:{topic}"


@dataclass(frozen=True, slots=True)
class _Subscription:
    group: str
    topic: str
    handler: Handler


class RedisStreamsEventBus:
    """Durable, multi-process consumer groups over Redis Streams.

    ``client`` may use bytes (the default of ``redis.asyncio.from_url``) or decoded responses.
    Its ``socket_timeout``, if set, must exceed ``block_ms``, or idle reads time out as errors.
    Each consumer loop holds one pooled connection while it blocks, so the pool must allow one
    connection per subscribed (group, topic) plus what publishers need.
    """

    def __init__(
        self,
        client: Redis,
        *,
        key_prefix: str = "ridehail:",
        consumer_name: str | None = None,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        maxlen: int = 100_000,
        max_attempts: int = 10,
        retry_base_s: float = 0.05,
        retry_cap_s: float = 5.0,
        batch_size: int = 10,
        stop_timeout_s: float = 5.0,
    ) -> None:
        if block_ms < 1 or claim_idle_ms < 2 or maxlen < 1 or batch_size < 1:
            raise ValueError("block_ms, claim_idle_ms, maxlen and batch_size must be positive")
        self._settings = _Settings(
            client=client,
            key_prefix=key_prefix,
            consumer=consumer_name or _default_consumer_name(),
            block_ms=block_ms,
            claim_idle_ms=claim_idle_ms,
            maxlen=maxlen,
            batch_size=batch_size,
            policy=RetryPolicy(max_attempts=max_attempts, base_s=retry_base_s, cap_s=retry_cap_s),
        )
        self._tasks = ConsumerTasks(stop_timeout_s=stop_timeout_s)
        self._subscriptions: dict[tuple[str, str], _Subscription] = {}

    @property
    def consumer_name(self) -> str:
        return self._settings.consumer

    def stream_key(self, topic: str) -> str:
        return self._settings.stream_key(topic)

    def dead_letter_key(self, topic: str) -> str:
        return self._settings.dead_key(topic)

    async def publish(self, message: Message) -> None:
        settings = self._settings
        await settings.client.xadd(
            settings.stream_key(message.topic),
            _fields(message),
            maxlen=settings.maxlen,
            approximate=True,
        )

    async def publish_many(self, messages: Sequence[Message]) -> None:
        """Publish in one pipelined round trip.

        Not a transaction: if Redis fails midway, some messages may already be published. The
        caller (an outbox relay) retries the batch and consumers deduplicate by message id.
        """
        if not messages:
            return
        settings = self._settings
        encoded = [(settings.stream_key(m.topic), _fields(m)) for m in messages]
        async with settings.client.pipeline(transaction=False) as pipe:
            for key, fields in encoded:
                pipe.xadd(key, fields, maxlen=settings.maxlen, approximate=True)
            await pipe.execute()

    def subscribe(self, *, group: str, topics: Sequence[str], handler: Handler) -> None:
        check_subscription(group, topics, started=self._tasks.running, taken=self._subscriptions)
        for topic in topics:
            self._subscriptions[(group, topic)] = _Subscription(group, topic, handler)

    async def start(self) -> None:
        """Create the consumer groups (failing fast if Redis is unusable), then start loops."""
        if self._tasks.running:
            raise RuntimeError("event bus already started")
        settings = self._settings
        for sub in self._subscriptions.values():
            await _ensure_group(settings.client, settings.stream_key(sub.topic), sub.group)
        for sub in self._subscriptions.values():
            consumer = _GroupConsumer(settings, self._tasks, sub)
            self._tasks.spawn(f"bus:{sub.group}:{sub.topic}", consumer.run())

    async def stop(self) -> None:
        await self._tasks.stop()

    async def ping(self) -> None:
        await self._settings.client.ping()


class _Entry(NamedTuple):
    entry_id: str
    fields: dict[str, str]


class _MalformedEntryError(ValueError):
    """A stream entry that can never be handled (trimmed, foreign, or not JSON)."""


class _GroupConsumer:
    """The consumer loop of one (group, topic) in this process.

    Phases: drain this consumer's own pending entries (left by a previous run or an error),
    then block for new ones; every ``claim_idle_ms / 2`` take over entries that some other
    consumer read but has not acknowledged for ``claim_idle_ms`` (it probably died).
    """

    def __init__(self, settings: _Settings, tasks: ConsumerTasks, sub: _Subscription) -> None:
        self._settings = settings
        self._tasks = tasks
        self._sub = sub
        self._stream = settings.stream_key(sub.topic)
        self._claim_every_s = settings.claim_idle_ms / 2000
        self._next_claim_at = 0.0
        self._pending_cursor: str | None = "0"
        self._group_missing = False

    async def run(self) -> None:
        """Loop until stop(); Redis outages are logged and retried with backoff, not fatal."""
        failures = 0
        while not self._tasks.stopping.is_set():
            try:
                await self._step()
            except Exception as exc:
                failures += 1
                self._recover_from(exc)
                await sleep_unless(self._tasks.stopping, self._settings.policy.delay_s(failures))
            else:
                failures = 0

    def _recover_from(self, error: Exception) -> None:
        """Re-read our own pending entries after any error: one may have missed its XACK."""
        self._pending_cursor = "0"
        if isinstance(error, ResponseError) and "NOGROUP" in str(error):
            self._group_missing = True  # the stream (and its groups) was deleted under us
        if isinstance(error, RedisError):
            logger.warning(
                "consumer %s on %s: redis error: %s",
                self._sub.group,
                self._stream,
                describe_error(error),
            )
        else:
            logger.exception("consumer %s on %s crashed; restarting", self._sub.group, self._stream)

    async def _step(self) -> None:
        if self._group_missing:
            await _ensure_group(self._settings.client, self._stream, self._sub.group)
            self._group_missing = False
        if self._loop_time() >= self._next_claim_at:
            await self._reclaim_idle()
        elif self._pending_cursor is not None:
            await self._drain_own_pending(self._pending_cursor)
        else:
            await self._handle_all(await self._read(">", block_ms=self._block_ms()))

    async def _drain_own_pending(self, cursor: str) -> None:
        """Re-read entries delivered to this consumer name but never acknowledged."""
        entries = await self._read(cursor, block_ms=None)
        if not entries:
            self._pending_cursor = None
            return
        self._pending_cursor = entries[-1].entry_id
        await self._handle_all(entries)

    async def _reclaim_idle(self) -> None:
        """XAUTOCLAIM entries idle for ``claim_idle_ms``, batch by batch, and handle them."""
        self._next_claim_at = self._loop_time() + self._claim_every_s
        settings = self._settings
        cursor = "0-0"
        while not self._tasks.stopping.is_set():
            response = await settings.client.xautoclaim(
                self._stream,
                self._sub.group,
                settings.consumer,
                min_idle_time=settings.claim_idle_ms,
                start_id=cursor,
                count=settings.batch_size,
            )
            cursor = _text(response[0])
            entries = _parse_entries(response[1])
            if entries:
                logger.info(
                    "consumer %s took over %d idle entries of %s",
                    self._sub.group,
                    len(entries),
                    self._stream,
                )
            await self._handle_all(entries)
            if cursor in ("0", "0-0"):
                return

    async def _read(self, cursor: str, *, block_ms: int | None) -> list[_Entry]:
        response = await self._settings.client.xreadgroup(
            self._sub.group,
            self._settings.consumer,
            {self._stream: cursor},
            count=self._settings.batch_size,
            block=block_ms,
        )
        return _parse_read_response(response)

    async def _handle_all(self, entries: Sequence[_Entry]) -> None:
        """Handle in order; on stop, leave the rest pending (redelivered to us or reclaimed)."""
        for entry in entries:
            if self._tasks.stopping.is_set():
                return
            with self._tasks.in_flight():
                await self._handle(entry)

    async def _handle(self, entry: _Entry) -> None:
        try:
            message = _decode(entry, self._sub.topic)
        except _MalformedEntryError as exc:
            logger.error("unusable entry %s in %s: %s", entry.entry_id, self._stream, exc)
            await self._dead_letter(entry, Delivery(Outcome.DEAD, 0, exc))
            return
        delivery = await deliver(
            message,
            self._sub.handler,
            group=self._sub.group,
            policy=self._settings.policy,
            stopping=self._tasks.stopping,
        )
        if delivery.outcome is Outcome.HANDLED:
            await self._settings.client.xack(self._stream, self._sub.group, entry.entry_id)
        elif delivery.outcome is Outcome.DEAD:
            await self._dead_letter(entry, delivery)
        # INTERRUPTED: no XACK, so the entry stays pending and comes back.

    async def _dead_letter(self, entry: _Entry, delivery: Delivery) -> None:
        """Record the dead message and acknowledge it atomically, so it is recorded once."""
        settings = self._settings
        record: dict[FieldT, EncodableT] = {
            "id": entry.fields.get("id", ""),
            "payload": entry.fields.get("payload", ""),
            "group": self._sub.group,
            "entry_id": entry.entry_id,
            "error": describe_error(delivery.error),
            "attempts": str(delivery.attempts),
            "consumer": settings.consumer,
        }
        async with settings.client.pipeline(transaction=True) as pipe:
            pipe.xadd(
                settings.dead_key(self._sub.topic),
                record,
                maxlen=settings.maxlen,
                approximate=True,
            )
            pipe.xack(self._stream, self._sub.group, entry.entry_id)
            await pipe.execute()

    def _block_ms(self) -> int:
        """Block no longer than the next claim is due (and never 0, which blocks forever)."""
        until_claim_ms = int((self._next_claim_at - self._loop_time()) * 1000)
        return max(1, min(self._settings.block_ms, until_claim_ms))

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()


async def _ensure_group(client: Redis, stream: str, group: str) -> None:
    """Create ``group`` at id 0 (and the stream if needed); an existing group is fine."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _default_consumer_name() -> str:
    """Unique per process and per bus, and readable in ``XINFO CONSUMERS``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def _fields(message: Message) -> dict[FieldT, EncodableT]:
    return {"id": message.id, "payload": encode_payload(message.payload)}


def _decode(entry: _Entry, topic: str) -> Message:
    message_id = entry.fields.get("id")
    body = entry.fields.get("payload")
    if not message_id or body is None:
        raise _MalformedEntryError("entry has no id/payload (trimmed, or not written by us)")
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise _MalformedEntryError(f"payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise _MalformedEntryError("payload is not a JSON object")
    return Message(id=message_id, topic=topic, payload=payload)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _parse_read_response(response: Any) -> list[_Entry]:
    """Entries of the single stream read, whatever reply shape the client is configured for.

    redis-py returns ``[[key, entries]]`` (RESP2 shapes, the default), ``{key: entries}``
    (unified shapes) or ``{key: [entries]}`` (RESP3 legacy shapes).
    """
    if not response:
        return []
    streams = list(response.values()) if isinstance(response, Mapping) else [r[1] for r in response]
    entries = streams[0]
    if entries and isinstance(entries[0], list):
        entries = entries[0]
    return _parse_entries(entries)


def _parse_entries(raw: Any) -> list[_Entry]:
    """Normalise ``[(id, {field: value})]`` to text; trimmed entries come back with no fields."""
    parsed: list[_Entry] = []
    for entry_id, fields in raw or ():
        if entry_id is None:
            continue
        text_fields = {_text(k): _text(v) for k, v in (fields or {}).items()}
        parsed.append(_Entry(_text(entry_id), text_fields))
    return parsed


if TYPE_CHECKING:
    _conforms: type[EventBus] = RedisStreamsEventBus
