"""The production location store: Redis GEO for search, a hash for exact fixes, lists for
trip traces.

Keys (all under ``key_prefix``):

* ``loc:geo`` - GEO sorted set of searchable live positions, member = driver id.
* ``loc:fix`` - hash, field = driver id, value = the live fix in a compact text form
  ``recorded_ms,lat,lon[,heading,speed,accuracy]`` (see :func:`encode_fix`). It is the source
  of truth: GEO quantises coordinates to a 52-bit geohash, so search results take their
  coordinates and freshness from here.
* ``loc:trace:<driver id>`` - list of encoded fixes of the open trip trace, headed by a
  marker element so that it exists (and ``RPUSHX`` appends) as soon as the trace begins.

Writes go through one Lua script so that "older points never move the live position" holds
with any number of concurrent writers, and so that ingest costs one round trip with no read.

Redis GEO cannot index latitudes beyond ±85.05112878° (Web Mercator). Such a fix is still
stored as the live position (``current``) and traced, but the driver is taken out of GEO, so
``nearest`` does not find them there. Nobody dispatches rides at the poles.

The client may be created with ``decode_responses`` on or off; the default of
``redis.asyncio.from_url(url)`` (bytes) is what production uses. The store does not own the
client: it is shared with the event bus, and the composition root closes it.

The keys do not share a hash slot. For Redis Cluster, put a hash tag in the prefix
(``"{ridehail}:"``) so the script's keys land on one node.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from ridehail.kernel.geo import haversine_m
from ridehail.locations.ports import JUMP_SLACK_M, LocationFix, NearbyDriver, Recorded

#: Redis GEO refuses latitudes beyond this (the Web Mercator limit).
GEO_MAX_LATITUDE: Final = 85.05112878
#: An abandoned trace (the trip never ended) expires after this long.
TRACE_TTL_S: Final = 6 * 3600
#: First element of every trace list; never parsed as a fix.
TRACE_MARKER: Final = "^"
#: ``nearest`` over-fetches this many times ``limit`` because stale drivers are filtered
#: after Redis applies COUNT; each retry multiplies the count by the same factor...
_OVERFETCH: Final = 3
_RETRY_GROWTH: Final = 4
#: ...up to this many members per search.
_MAX_SEARCH_COUNT: Final = 5_000
#: Redis measures distance on a sphere of radius 6 372 797.56 m, the kernel on one of
#: 6 371 008.8 m (0.03 % apart), and on quantised coordinates. Searching a little wider and
#: filtering on the kernel's haversine keeps both adapters agreeing on who is inside.
_RADIUS_SLACK_RATIO: Final = 1.001
_RADIUS_SLACK_M: Final = 2.0

_JUMP_SLACK: Final = repr(JUMP_SLACK_M)

_OUTCOME: Final = {1: Recorded.LIVE, 0: Recorded.OLDER, 2: Recorded.IMPLAUSIBLE}

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)

# KEYS: geo, fix hash, trace list.
# ARGV: driver id, recorded_ms, encoded fix, lon, lat, "1" if GEO can index it else "0".
# Returns 1 if the live position moved, 0 if a newer-or-equal one was already stored.
_RECORD_LUA: Final = """
redis.call('RPUSHX', KEYS[3], ARGV[3])
local stored = redis.call('HGET', KEYS[2], ARGV[1])
if stored then
  local ms, lat, lon = string.match(stored, '^([^,]+),([^,]+),([^,]+)')
  local stored_ms = tonumber(ms)
  local new_ms = tonumber(ARGV[2])
  if stored_ms >= new_ms then
    return 0
  end
  local max_speed = tonumber(ARGV[7])
  if max_speed > 0 then
    local p1, p2 = math.rad(tonumber(lat)), math.rad(tonumber(ARGV[5]))
    local dl = math.rad(tonumber(ARGV[4]) - tonumber(lon))
    local a = math.sin((p2 - p1) / 2) ^ 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ^ 2
    local meters = 2 * 6371008.8 * math.asin(math.min(1, math.sqrt(a)))
    if meters > max_speed * (new_ms - stored_ms) / 1000 + tonumber(ARGV[8]) then
      return 2
    end
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[6] == '1' then
  redis.call('GEOADD', KEYS[1], ARGV[4], ARGV[5], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
"""


def encode_ms(moment: datetime) -> str:
    """Epoch milliseconds as text, with a fractional part only when the fix has one.

    Phones report whole milliseconds, so the common case stays short; sub-millisecond
    precision is kept so that a fix reads back exactly equal. Lua compares these as doubles,
    which separate distinct microseconds until about the year 2200.
    """
    micros = (moment - _EPOCH) // _ONE_US
    sign = "-" if micros < 0 else ""
    millis, fraction = divmod(abs(micros), 1000)
    return f"{sign}{millis}.{fraction:03d}" if fraction else f"{sign}{millis}"


def decode_ms(text: str) -> datetime:
    negative = text.startswith("-")
    millis, _dot, fraction = text.lstrip("-").partition(".")
    micros = int(millis) * 1000 + (int(fraction.ljust(3, "0")) if fraction else 0)
    return _EPOCH + timedelta(microseconds=-micros if negative else micros)


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)


def _optional_number(text: str) -> float | None:
    return float(text) if text else None


def encode_fix(fix: LocationFix) -> str:
    """``recorded_ms,lat,lon,heading,speed,accuracy`` with trailing empty fields dropped.

    ``repr`` of a float is the shortest text that reads back as the same float, so the
    coordinates round-trip exactly. The time comes first so the Lua script finds it cheaply.
    """
    fields = [
        encode_ms(fix.recorded_at),
        repr(fix.latitude),
        repr(fix.longitude),
        _number(fix.heading),
        _number(fix.speed_mps),
        _number(fix.accuracy_m),
    ]
    return ",".join(fields).rstrip(",")


def decode_fix(driver_id: str, text: str) -> LocationFix:
    fields = text.split(",") + [""] * 3
    return LocationFix(
        driver_id=driver_id,
        latitude=float(fields[1]),
        longitude=float(fields[2]),
        recorded_at=decode_ms(fields[0]),
        heading=_optional_number(fields[3]),
        speed_mps=_optional_number(fields[4]),
        accuracy_m=_optional_number(fields[5]),
    )


def _text(value: bytes | str) -> str:
    """Replies are bytes or str depending on the client's ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else value


class RedisLocationStore:
    """Live positions and trip traces in Redis, shared by every API and dispatch process."""

    announces_positions = False

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key_prefix: str = "ridehail:",
        max_speed_mps: float | None = None,
    ) -> None:
        self._max_speed = repr(float(max_speed_mps or 0))
        self._client = client
        self._geo_key = f"{key_prefix}loc:geo"
        self._fix_key = f"{key_prefix}loc:fix"
        self._trace_prefix = f"{key_prefix}loc:trace:"
        self._record_script: AsyncScript = client.register_script(_RECORD_LUA)

    async def record(self, fix: LocationFix) -> Recorded:
        code = await self._record_script(keys=self._script_keys(fix), args=self._script_args(fix))
        return _OUTCOME[int(code)]

    async def record_many(self, fixes: Sequence[LocationFix]) -> list[Recorded]:
        """One round trip for the batch; each script call is still atomic on its own."""
        if not fixes:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for fix in fixes:
                await self._record_script(
                    keys=self._script_keys(fix), args=self._script_args(fix), client=pipe
                )
            codes = await pipe.execute()
        return [_OUTCOME[int(code)] for code in codes]

    async def trace_only(self, fix: LocationFix) -> None:
        await self._client.rpushx(self._trace_key(fix.driver_id), encode_fix(fix))

    async def current(self, driver_id: str) -> LocationFix | None:
        stored = await self._client.hget(self._fix_key, driver_id)
        return None if stored is None else decode_fix(driver_id, _text(stored))

    async def nearest(
        self,
        *,
        latitude: float,
        longitude: float,
        radius_m: float,
        limit: int,
        fresh_since: datetime,
    ) -> list[NearbyDriver]:
        """GEOSEARCH nearest first, then drop stale fixes; fetch more while staleness left
        the page short and Redis had more to give."""
        if limit <= 0 or not radius_m >= 0:  # "not >=" also refuses NaN
            return []
        count = limit * _OVERFETCH
        while True:
            members, full = await self._search(latitude, longitude, radius_m, count)
            hits = await self._fresh_hits(members, latitude, longitude, radius_m, fresh_since)
            if len(hits) >= limit or not full or count >= _MAX_SEARCH_COUNT:
                return hits[:limit]
            count = min(count * _RETRY_GROWTH, _MAX_SEARCH_COUNT)

    async def forget(self, driver_id: str) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zrem(self._geo_key, driver_id)
            pipe.hdel(self._fix_key, driver_id)
            await pipe.execute()

    async def begin_trace(self, driver_id: str) -> None:
        key = self._trace_key(driver_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.rpush(key, TRACE_MARKER)
            pipe.expire(key, TRACE_TTL_S)
            await pipe.execute()

    async def end_trace(self, driver_id: str) -> list[LocationFix]:
        """Read and delete in one transaction so no point is lost between the two."""
        key = self._trace_key(driver_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            entries, _deleted = await pipe.execute()
        return _trace_points(driver_id, [_text(entry) for entry in entries])

    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        """Nothing to release: the client is shared and closed by whoever created it."""

    def _trace_key(self, driver_id: str) -> str:
        return f"{self._trace_prefix}{driver_id}"

    def _script_keys(self, fix: LocationFix) -> list[str]:
        return [self._geo_key, self._fix_key, self._trace_key(fix.driver_id)]

    def _script_args(self, fix: LocationFix) -> list[str]:
        searchable = abs(fix.latitude) <= GEO_MAX_LATITUDE
        return [
            fix.driver_id,
            encode_ms(fix.recorded_at),
            encode_fix(fix),
            repr(fix.longitude),
            repr(fix.latitude),
            "1" if searchable else "0",
            self._max_speed,
            _JUMP_SLACK,
        ]

    async def _search(
        self, latitude: float, longitude: float, radius_m: float, count: int
    ) -> tuple[list[str], bool]:
        """Member ids nearest first, and whether COUNT cut the answer short."""
        reply = await self._client.geosearch(
            self._geo_key,
            longitude=longitude,
            latitude=latitude,
            radius=radius_m * _RADIUS_SLACK_RATIO + _RADIUS_SLACK_M,
            unit="m",
            sort="ASC",
            count=count,
        )
        # Without WITHDIST/WITHCOORD every item is a bare member name.
        members = [_text(member) for member in reply if isinstance(member, bytes | str)]
        return members, len(members) >= count

    async def _fresh_hits(
        self,
        members: list[str],
        latitude: float,
        longitude: float,
        radius_m: float,
        fresh_since: datetime,
    ) -> list[NearbyDriver]:
        """Exact positions from the hash, measured with the kernel's haversine, fresh only."""
        if not members:
            return []
        stored = await self._client.hmget(self._fix_key, members)
        hits: list[NearbyDriver] = []
        for driver_id, value in zip(members, stored, strict=True):
            if value is None:  # forgotten between the two reads
                continue
            fix = decode_fix(driver_id, _text(value))
            distance = haversine_m(latitude, longitude, fix.latitude, fix.longitude)
            if fix.recorded_at >= fresh_since and distance <= radius_m:
                hits.append(
                    NearbyDriver(
                        driver_id=driver_id,
                        latitude=fix.latitude,
                        longitude=fix.longitude,
                        distance_m=distance,
                        recorded_at=fix.recorded_at,
                    )
                )
        hits.sort(key=lambda hit: (hit.distance_m, hit.driver_id))
        return hits


def _trace_points(driver_id: str, entries: list[str]) -> list[LocationFix]:
    """Points sorted by time, exact duplicates (same time and place) dropped.

    Deduplication happens here rather than on ingest so that ingest never reads the trace.
    """
    seen: set[tuple[str, str, str]] = set()
    points: list[LocationFix] = []
    for entry in entries:
        if entry == TRACE_MARKER:
            continue
        millis, lat, lon, *_rest = entry.split(",")
        if (millis, lat, lon) in seen:
            continue
        seen.add((millis, lat, lon))
        points.append(decode_fix(driver_id, entry))
    points.sort(key=lambda point: point.recorded_at)
    return points
