"""ScriptLane: one connection of its own for a hot script, against real Redis servers.

The shared Redis (tests' default) for what is harmless to others; a throwaway server with a
password (``tests/redis_servers.py``) for what is not: ``SCRIPT FLUSH``, a server killed
mid-call, a script that holds Redis busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoScriptError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeout

from ridehail.locations.redis_lane import ScriptLane
from tests.redis_servers import Standalone, running_server

pytestmark = pytest.mark.redis

#: ARGV: key, value. Appends the value to a list and answers the list's length: calls that
#: run out of order show in the list.
APPEND = "return redis.call('RPUSH', ARGV[1], ARGV[2])"
#: ARGV: milliseconds. Holds Redis busy that long (a slow script), then answers "done".
BUSY = """
local t = redis.call('TIME')
local until_us = t[1] * 1000000 + t[2] + tonumber(ARGV[1]) * 1000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= until_us
return 'done'
"""


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    with running_server(Path(tmp_path_factory.mktemp("redis-lane")), secrets.token_hex(8)) as s:
        yield s


@pytest.fixture
async def shared(redis_url: str) -> AsyncIterator[Callable[[str], ScriptLane]]:
    """Lanes for scripts on the shared Redis (a client of its own each), closed afterwards."""
    made: list[tuple[aioredis.Redis, ScriptLane]] = []

    def lane_for(script: str) -> ScriptLane:
        client = aioredis.from_url(redis_url)
        lane = ScriptLane.for_client(client, script)
        assert lane is not None
        made.append((client, lane))
        return lane

    yield lane_for
    for client, lane in made:
        await lane.close()
        await client.aclose()


Made = tuple[aioredis.Redis, ScriptLane]


@pytest.fixture
async def on_server(server: Standalone) -> AsyncIterator[Callable[..., Made]]:
    """Clients (``aioredis.from_url(url, **options)``) and their lanes for a script on the
    throwaway server; closed afterwards, and the server emptied."""
    made: list[Made] = []

    def lane_for(url: str, script: str, **options: Any) -> Made:
        client = aioredis.from_url(url, **options)
        lane = ScriptLane.for_client(client, script)
        assert lane is not None
        made.append((client, lane))
        return client, lane

    yield lane_for
    for client, lane in made:
        await lane.close()
        with contextlib.suppress(RedisError):
            await client.flushall()
        await client.aclose()


def url_of(server: Standalone, db: int = 0) -> str:
    return f"redis://:{server.password}@127.0.0.1:{server.port}/{db}"


async def answer_of(lane: ScriptLane, args: list[Any]) -> Any:
    """submit(), awaited: the answer the callback was told."""
    told: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    lane.submit(args, told.set_result)
    return await told


async def test_concurrent_calls_share_the_connection_and_get_their_own_replies(
    shared: Callable[[str], ScriptLane], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    lane = shared(APPEND)
    key = f"{redis_prefix}list"
    lengths = await asyncio.gather(*(lane.evalsha([key, str(n)]) for n in range(300)))
    # Each call got a reply of its own, and every call ran exactly once.
    assert sorted(lengths) == list(range(1, 301))
    assert sorted(int(v) for v in await redis_client.lrange(key, 0, -1)) == list(range(300))


async def test_submitted_calls_run_in_the_order_submitted(
    shared: Callable[[str], ScriptLane], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    lane = shared(APPEND)
    key = f"{redis_prefix}ordered"
    told: list[Any] = []
    assert not lane.ready  # connects on the first awaited call
    await lane.evalsha([key, "first"])
    assert lane.ready
    for n in range(500):
        lane.submit([key, str(n)], told.append)
    while len(told) < 500:
        await asyncio.sleep(0.01)
    assert told == list(range(2, 502))  # answered in order, each its own length
    stored = [v.decode() for v in await redis_client.lrange(key, 0, -1)]
    assert stored == ["first", *(str(n) for n in range(500))]


async def test_a_caller_that_gives_up_does_not_take_the_next_reply(
    shared: Callable[[str], ScriptLane], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    lane = shared(APPEND)
    key = f"{redis_prefix}cancel"
    await lane.evalsha([key, "warm"])
    abandoned = asyncio.ensure_future(lane.evalsha([key, "abandoned"]))
    await asyncio.sleep(0)  # on the wire
    abandoned.cancel()
    assert await lane.evalsha([key, "next"]) == 3  # its own reply, not the abandoned one
    assert await redis_client.llen(key) == 3  # the abandoned call still ran, once


async def test_an_error_reply_is_raised_and_the_connection_stays_usable(
    shared: Callable[[str], ScriptLane], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    lane = shared("return redis.call('INCR', ARGV[1])")
    key = f"{redis_prefix}counter"
    await redis_client.set(key, "not a number")
    with pytest.raises(ResponseError, match="not an integer"):
        await lane.evalsha([key])
    told = await answer_of(lane, [key])
    assert isinstance(told, ResponseError)
    await redis_client.set(key, "41")
    assert await lane.evalsha([key]) == 42


async def test_password_database_and_client_name_come_from_the_clients_url(
    server: Standalone, on_server: Callable[..., Made]
) -> None:
    client, lane = on_server(
        url_of(server, db=3),
        "return redis.call('SET', ARGV[1], 'here')",
        client_name="ridehail-lane-test",
    )
    await lane.evalsha(["where"])
    assert await client.get("where") == b"here"  # database 3, the client's
    names = await client.client_list()
    assert sum(c["name"] == "ridehail-lane-test" for c in names) >= 2  # lane + client
    other, _ = on_server(url_of(server, db=0), APPEND)
    assert await other.exists("where") == 0


async def test_a_wrong_password_is_refused_on_connect(server: Standalone) -> None:
    client = aioredis.from_url(f"redis://:wrong@127.0.0.1:{server.port}/0")
    lane = ScriptLane.for_client(client, APPEND)
    assert lane is not None
    with pytest.raises(AuthenticationError):
        await lane.evalsha(["k", "v"])
    assert not lane.ready
    await client.aclose()


async def test_a_unix_socket_url_is_spoken_over_the_socket(
    server: Standalone, on_server: Callable[..., Made]
) -> None:
    client, lane = on_server(f"unix://:{server.password}@{server.socket}?db=2", APPEND)
    assert await lane.evalsha(["over-socket", "x"]) == 1
    assert await client.llen("over-socket") == 1


async def test_clients_it_cannot_speak_for_get_no_lane(server: Standalone) -> None:
    tls = aioredis.from_url(f"rediss://127.0.0.1:{server.port}/0")
    assert ScriptLane.for_client(tls, APPEND) is None
    cluster = RedisCluster(host="127.0.0.1", port=server.port)  # not connected
    assert ScriptLane.for_client(cluster, APPEND) is None
    await tls.aclose()


async def test_a_lost_script_is_loaded_again(
    server: Standalone, on_server: Callable[..., Made]
) -> None:
    client, lane = on_server(url_of(server), APPEND)
    assert await lane.evalsha(["flushed", "a"]) == 1
    await client.script_flush()
    # Awaited calls load it and send again (nothing ran the first time).
    assert await lane.evalsha(["flushed", "b"]) == 2
    await client.script_flush()
    # Submitted calls cannot be sent again behind the ones after them: this one and
    # the one behind it fail, the connection is dropped, the next call reconnects.
    first: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    second: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    lane.submit(["flushed", "c"], first.set_result)
    lane.submit(["flushed", "d"], second.set_result)
    assert isinstance(await first, NoScriptError)
    assert isinstance(await second, ConnectionError)
    assert not lane.ready
    assert await lane.evalsha(["flushed", "e"]) == 3
    assert await client.lrange("flushed", 0, -1) == [b"a", b"b", b"e"]


async def test_a_killed_server_fails_the_calls_in_flight_and_a_new_one_is_reached(
    server: Standalone,
) -> None:
    lane = ScriptLane(BUSY, port=server.port, host="127.0.0.1", password=server.password)
    try:
        assert await lane.evalsha([1]) == b"done"
        busy = asyncio.ensure_future(lane.evalsha([3_000]))
        queued: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await asyncio.sleep(0.2)  # the busy script is running
        lane.submit([1], queued.set_result)
        await asyncio.to_thread(server.restart)  # SIGKILL, then a new process, same port
        with pytest.raises(ConnectionError):
            await busy
        assert isinstance(await queued, ConnectionError)
        # The new server knows no script: the reconnect loads it.
        assert await lane.evalsha([1]) == b"done"
    finally:
        await lane.close()


async def test_a_reply_later_than_the_socket_timeout_drops_the_connection(
    server: Standalone,
) -> None:
    client = aioredis.from_url(url_of(server), socket_timeout=0.3)
    lane = ScriptLane.for_client(client, BUSY)
    assert lane is not None
    try:
        assert await lane.evalsha([1]) == b"done"
        with pytest.raises(RedisTimeout):
            await lane.evalsha([1_000])
        assert not lane.ready
        # The busy script ends; the next call connects again (the reply it would have
        # mistaken for its own went to the dropped connection).
        await asyncio.sleep(1.0)
        assert await lane.evalsha([1]) == b"done"
        late: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        lane.submit([1_000], late.set_result)
        assert isinstance(await late, RedisTimeout)
        await asyncio.sleep(1.0)
    finally:
        await lane.close()
        await client.aclose()
