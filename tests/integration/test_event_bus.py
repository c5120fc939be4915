"""The event bus contract, run against both adapters, plus what only Redis can show.

Every wait is a bounded poll on a condition; nothing sleeps "long enough".
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
import redis.asyncio as aioredis

from ridehail.messaging import (
    EventBus,
    InProcessEventBus,
    Message,
    RedisStreamsEventBus,
)

TOPIC = "rides.requested"
FAST_RETRY = 0.001


# --- helpers ------------------------------------------------------------------------------


async def eventually(condition: Callable[[], bool], within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def message(n: int = 0, topic: str = TOPIC, **payload: Any) -> Message:
    return Message(id=f"evt_{uuid.uuid4().hex}", topic=topic, payload={"n": n, **payload})


@dataclass
class Recorder:
    """A handler that records calls and can be told to fail a number of times per message."""

    fail_times: int = 0
    fail_always_when: Callable[[Message], bool] = lambda _m: False
    delay_s: float = 0.0
    calls: list[str] = field(default_factory=list)
    handled: list[Message] = field(default_factory=list)

    async def __call__(self, msg: Message) -> None:
        self.calls.append(msg.id)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_always_when(msg) or self.calls.count(msg.id) <= self.fail_times:
            raise RuntimeError(f"boom on {msg.id}")
        self.handled.append(msg)

    @property
    def handled_ids(self) -> list[str]:
        return [m.id for m in self.handled]


class BusFactory(Protocol):
    def __call__(self, **options: Any) -> EventBus: ...


@dataclass(frozen=True)
class Backend:
    name: str
    redis_url: str = ""
    prefix: str = ""


async def dead_letters(client: aioredis.Redis, key: str) -> list[dict[bytes, bytes]]:
    entries: Any = await client.xrange(key)
    return [fields for _entry_id, fields in entries]


async def pending_count(client: aioredis.Redis, stream: str, group: str) -> int:
    summary = await client.xpending(stream, group)
    return int(summary["pending"])


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Resolved synchronously so the in-memory runs do not need Redis at all."""
    if request.param == "memory":
        return Backend("memory")
    return Backend(
        "redis",
        redis_url=request.getfixturevalue("redis_url"),
        prefix=request.getfixturevalue("redis_prefix"),
    )


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def make_bus(backend: Backend) -> AsyncIterator[BusFactory]:
    """Build buses of the adapter under test (tiny retry backoff); stop them all afterwards."""
    buses: list[EventBus] = []
    clients: list[aioredis.Redis] = []

    def make(**options: Any) -> EventBus:
        options.setdefault("retry_base_s", FAST_RETRY)
        bus: EventBus
        if backend.name == "memory":
            bus = InProcessEventBus(**options)
        else:
            client = aioredis.from_url(backend.redis_url)
            clients.append(client)
            bus = RedisStreamsEventBus(client, key_prefix=backend.prefix, **options)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.stop()
    for client in clients:
        await client.aclose()


@pytest.fixture
async def make_redis_bus(
    redis_url: str, redis_prefix: str
) -> AsyncIterator[Callable[..., RedisStreamsEventBus]]:
    buses: list[RedisStreamsEventBus] = []
    clients: list[aioredis.Redis] = []

    def make(*, decode_responses: bool = False, **options: Any) -> RedisStreamsEventBus:
        options.setdefault("retry_base_s", FAST_RETRY)
        client = aioredis.from_url(redis_url, decode_responses=decode_responses)
        clients.append(client)
        bus = RedisStreamsEventBus(client, key_prefix=redis_prefix, **options)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.stop()
    for client in clients:
        await client.aclose()


# --- the contract, both adapters ----------------------------------------------------------


async def test_delivers_a_published_message(make_bus: BusFactory) -> None:
    bus, recorder = make_bus(), Recorder()
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=recorder)
    await bus.start()
    sent = message(7, rider="rdr_1")

    await bus.publish(sent)

    await eventually(lambda: len(recorder.handled) == 1)
    assert recorder.handled == [sent]


async def test_each_group_gets_every_message(make_bus: BusFactory) -> None:
    bus, dispatch, billing = make_bus(), Recorder(), Recorder()
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=dispatch)
    bus.subscribe(group="billing", topics=[TOPIC, "rides.completed"], handler=billing)
    await bus.start()
    sent = [message(n) for n in range(5)]

    await bus.publish_many([*sent, message(99, topic="rides.completed")])

    await eventually(lambda: len(dispatch.handled) == 5 and len(billing.handled) == 6)
    assert dispatch.handled_ids == [m.id for m in sent]
    assert {m.topic for m in billing.handled} == {TOPIC, "rides.completed"}


async def test_messages_of_a_topic_are_handled_in_publish_order(make_bus: BusFactory) -> None:
    bus, recorder = make_bus(), Recorder()
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=recorder)
    await bus.start()
    sent = [message(n) for n in range(40)]

    await bus.publish_many(sent[:20])
    for msg in sent[20:]:
        await bus.publish(msg)

    await eventually(lambda: len(recorder.handled) == 40)
    assert recorder.handled_ids == [m.id for m in sent]


async def test_a_slow_group_does_not_hold_up_another_group(make_bus: BusFactory) -> None:
    release = asyncio.Event()

    async def stuck(_msg: Message) -> None:
        await release.wait()

    bus, fast = make_bus(), Recorder()
    bus.subscribe(group="slow", topics=[TOPIC], handler=stuck)
    bus.subscribe(group="fast", topics=[TOPIC], handler=fast)
    await bus.start()

    await bus.publish_many([message(n) for n in range(3)])

    await eventually(lambda: len(fast.handled) == 3)
    release.set()


async def test_failing_handler_is_retried_until_it_succeeds(make_bus: BusFactory) -> None:
    bus, recorder = make_bus(), Recorder(fail_times=2)
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=recorder)
    await bus.start()
    flaky, after = message(1), message(2)

    await bus.publish(flaky)
    await bus.publish(after)

    await eventually(lambda: len(recorder.handled) == 2)
    assert recorder.calls.count(flaky.id) == 3
    assert recorder.handled_ids == [flaky.id, after.id]  # retried in place: order is kept


async def test_permanently_failing_message_is_dead_lettered_and_the_topic_moves_on(
    make_bus: BusFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ridehail.messaging")
    bus = make_bus(max_attempts=3)
    recorder = Recorder(fail_always_when=lambda m: m.payload.get("poison") is True)
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=recorder)
    await bus.start()
    poison, healthy = message(1, poison=True), message(2)

    await bus.publish_many([poison, healthy])

    await eventually(lambda: recorder.handled_ids == [healthy.id])
    assert recorder.calls.count(poison.id) == 3
    dead = [r for r in caplog.records if r.levelno == logging.ERROR and "dead" in r.getMessage()]
    assert len(dead) == 1
    assert poison.id in dead[0].getMessage()


async def test_messages_published_before_start_are_delivered(make_bus: BusFactory) -> None:
    bus, recorder = make_bus(), Recorder()
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=recorder)
    sent = [message(n) for n in range(3)]
    await bus.publish_many(sent)

    await bus.start()

    await eventually(lambda: len(recorder.handled) == 3)
    assert recorder.handled_ids == [m.id for m in sent]


async def test_stop_returns_promptly_when_idle(make_bus: BusFactory) -> None:
    bus = make_bus()  # Redis: default block_ms=1000, so a prompt stop cannot wait it out
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=Recorder())
    await bus.start()
    await asyncio.sleep(0.05)  # let the loops reach their blocking read

    started = time.monotonic()
    await bus.stop()

    assert time.monotonic() - started < 0.5


async def test_stop_lets_an_in_flight_handler_finish(make_bus: BusFactory) -> None:
    bus, recorder = make_bus(), Recorder(delay_s=0.2)
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=recorder)
    await bus.start()
    await bus.publish(message(1))
    await eventually(lambda: len(recorder.calls) == 1)

    await bus.stop()

    assert len(recorder.handled) == 1


async def test_stop_is_bounded_when_a_handler_hangs(make_bus: BusFactory) -> None:
    never = asyncio.Event()
    entered: list[str] = []

    async def hang(msg: Message) -> None:
        entered.append(msg.id)
        await never.wait()

    bus = make_bus(stop_timeout_s=0.1)
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=hang)
    await bus.start()
    await bus.publish(message(1))
    await eventually(lambda: len(entered) == 1)

    started = time.monotonic()
    await bus.stop()

    assert time.monotonic() - started < 1.0


async def test_retry_interrupted_by_stop_is_delivered_after_restart(make_bus: BusFactory) -> None:
    bus, recorder = make_bus(retry_base_s=30.0), Recorder(fail_times=1)
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=recorder)
    await bus.start()
    sent = message(1)
    await bus.publish(sent)
    await eventually(lambda: len(recorder.calls) == 1)  # now in a 15-30 s backoff

    started = time.monotonic()
    await bus.stop()
    assert time.monotonic() - started < 0.5
    await bus.start()

    await eventually(lambda: recorder.handled_ids == [sent.id])


async def test_subscribing_after_start_is_rejected(make_bus: BusFactory) -> None:
    bus = make_bus()
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=Recorder())
    await bus.start()

    with pytest.raises(RuntimeError):
        bus.subscribe(group="billing", topics=[TOPIC], handler=Recorder())


async def test_a_group_cannot_subscribe_twice_to_a_topic(make_bus: BusFactory) -> None:
    bus = make_bus()
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=Recorder())

    with pytest.raises(ValueError, match="already subscribes"):
        bus.subscribe(group="dispatch", topics=["other", TOPIC], handler=Recorder())


async def test_non_json_payload_is_rejected_at_publish(make_bus: BusFactory) -> None:
    bus = make_bus()
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=Recorder())

    with pytest.raises(TypeError):
        await bus.publish(Message(id="evt_1", topic=TOPIC, payload={"at": object()}))


async def test_ping_succeeds_when_reachable(make_bus: BusFactory) -> None:
    await make_bus().ping()


# --- Redis only -------------------------------------------------------------------------


@pytest.mark.redis
async def test_consumers_of_one_group_in_two_processes_split_the_messages(
    make_redis_bus: Callable[..., RedisStreamsEventBus],
) -> None:
    first, second = Recorder(delay_s=0.005), Recorder(delay_s=0.005)
    bus_a = make_redis_bus(batch_size=1, block_ms=200)
    bus_b = make_redis_bus(batch_size=1, block_ms=200)
    bus_a.subscribe(group="dispatch", topics=[TOPIC], handler=first)
    bus_b.subscribe(group="dispatch", topics=[TOPIC], handler=second)
    await bus_a.start()
    await bus_b.start()
    sent = [message(n) for n in range(30)]

    await bus_a.publish_many(sent)

    await eventually(lambda: len(first.handled) + len(second.handled) >= 30)
    got = first.handled_ids + second.handled_ids
    assert sorted(got) == sorted(m.id for m in sent)  # none lost, none twice
    assert first.handled
    assert second.handled


@pytest.mark.redis
async def test_messages_of_a_dead_consumer_are_reclaimed(
    make_redis_bus: Callable[..., RedisStreamsEventBus], redis_client: aioredis.Redis
) -> None:
    bus, recorder = make_redis_bus(claim_idle_ms=200), Recorder()
    stream = bus.stream_key(TOPIC)
    sent = [message(n) for n in range(3)]
    await bus.publish_many(sent)
    await redis_client.xgroup_create(stream, "dispatch", id="0", mkstream=True)
    taken: Any = await redis_client.xreadgroup("dispatch", "ghost", {stream: ">"}, count=10)
    assert len(taken[0][1]) == 3  # "ghost" read them all, then died without XACK

    bus.subscribe(group="dispatch", topics=[TOPIC], handler=recorder)
    await bus.start()

    await eventually(lambda: len(recorder.handled) == 3)
    assert sorted(recorder.handled_ids) == sorted(m.id for m in sent)
    await bus.stop()  # waits for the last in-flight XACK
    assert await pending_count(redis_client, stream, "dispatch") == 0


@pytest.mark.redis
async def test_own_pending_messages_are_handled_first_after_a_restart(
    make_redis_bus: Callable[..., RedisStreamsEventBus], redis_client: aioredis.Redis
) -> None:
    bus, recorder = make_redis_bus(consumer_name="worker-1"), Recorder()
    stream = bus.stream_key(TOPIC)
    old, new = message(1), message(2)
    await bus.publish(old)
    await redis_client.xgroup_create(stream, "dispatch", id="0", mkstream=True)
    await redis_client.xreadgroup("dispatch", "worker-1", {stream: ">"})  # crashed before XACK
    await bus.publish(new)

    bus.subscribe(group="dispatch", topics=[TOPIC], handler=recorder)
    await bus.start()

    await eventually(lambda: len(recorder.handled) == 2)
    assert recorder.handled_ids == [old.id, new.id]


@pytest.mark.redis
async def test_dead_letters_go_to_the_dead_stream_and_are_acknowledged(
    make_redis_bus: Callable[..., RedisStreamsEventBus], redis_client: aioredis.Redis
) -> None:
    bus = make_redis_bus(max_attempts=2)
    recorder = Recorder(fail_always_when=lambda m: m.payload.get("poison") is True)
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=recorder)
    await bus.start()
    poison, healthy = message(1, poison=True), message(2)

    await bus.publish_many([poison, healthy])

    await eventually(lambda: recorder.handled_ids == [healthy.id])
    await bus.stop()  # waits for the last in-flight XACK
    dead = await dead_letters(redis_client, bus.dead_letter_key(TOPIC))
    assert len(dead) == 1
    fields = dead[0]
    assert fields[b"id"] == poison.id.encode()
    assert fields[b"group"] == b"dispatch"
    assert fields[b"attempts"] == b"2"
    assert b"boom" in fields[b"error"]
    assert await pending_count(redis_client, bus.stream_key(TOPIC), "dispatch") == 0


@pytest.mark.redis
async def test_unusable_entries_are_dead_lettered_without_calling_the_handler(
    make_redis_bus: Callable[..., RedisStreamsEventBus], redis_client: aioredis.Redis
) -> None:
    bus, recorder = make_redis_bus(), Recorder()
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=recorder)
    await bus.start()
    healthy = message(2)

    await redis_client.xadd(bus.stream_key(TOPIC), {"id": "evt_bad", "payload": "{not json"})
    await bus.publish(healthy)

    await eventually(lambda: recorder.handled_ids == [healthy.id])
    assert recorder.calls == [healthy.id]
    dead = await dead_letters(redis_client, bus.dead_letter_key(TOPIC))
    assert [fields[b"id"] for fields in dead] == [b"evt_bad"]


@pytest.mark.redis
async def test_works_with_a_client_that_decodes_responses(
    make_redis_bus: Callable[..., RedisStreamsEventBus],
) -> None:
    bus, recorder = make_redis_bus(decode_responses=True), Recorder()
    bus.subscribe(group="dispatch", topics=[TOPIC], handler=recorder)
    await bus.start()
    sent = message(1, note="héllo")

    await bus.publish(sent)

    await eventually(lambda: recorder.handled == [sent])


@pytest.mark.redis
async def test_ping_raises_when_redis_is_unreachable() -> None:
    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(aioredis.ConnectionError):
            await RedisStreamsEventBus(client).ping()
    finally:
        await client.aclose()
