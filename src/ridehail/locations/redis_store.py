"""The production location store: live positions sharded by H3 region in Redis GEO sets,
exact fixes per driver, compact binary trip traces. Runs on one Redis or on Redis Cluster.

Keys (``P`` = ``key_prefix + "loc:"``; the layout and the scripts are in
:mod:`ridehail.locations.redis_lua`):

* ``P{<region>}:geo`` and ``P{<region>}:seen`` - the searchable drivers of one coarse H3
  cell (resolution 5 by default, about 250 km²) and the time of each one's position. A city
  spans a handful of regions, so no single key holds the world, and in a cluster the
  regions spread over the shards (the ``{...}`` hash tag keeps a region's two keys in one
  slot).
* ``Pdrv:{<driver>}`` - the live fix as a 48-byte record, whether a trace is open, and the
  region it is filed under. It is the source of truth: GEO quantises coordinates to a
  52-bit geohash and, on a cluster, a region set may hold a member the driver has left, so
  search takes coordinates, freshness and the region from here.
* ``Ptrace:{<driver>}`` - the open trip trace, 48-byte records appended one after another
  (same hash tag as the state, so one script updates both).

Nothing needs a sweeper and nothing grows without bound: every write into a region first
prunes (a bounded number of) members whose position is older than ``stale_after_s`` (1.5
times that on one Redis, where ``seen`` times are renewed once per half window), both
region keys expire ``2 * stale_after_s`` after their last write, a driver's state between
half ``driver_ttl_s`` and ``driver_ttl_s`` after the last live fix, and a trace
``TRACE_TTL_S`` after it began. ``nearest`` therefore only promises drivers fresher than
``stale_after_s`` (callers ask for that window: ``location_stale_after_s`` feeds both),
and a process that only reads finds the regions gone once they have had no write for
``2 * stale_after_s``.

On one Redis a batch of fixes is one script call (:data:`~redis_lua.INGEST`) that applies
the rules, writes state, regions and traces, and publishes each new live position - one
round trip per :data:`CHUNK` fixes. Redis's single thread is what limits ingest, so the
Python side does all it can before the call: H3 regions, records, GEO scores (ZADD with a
precomputed geohash took about 40 % less time than GEOADD in a Lua loop of 200,000 each
on Redis 7.0 here), the JSON messages, all packed as one
msgpack argument. On Redis Cluster a script may only touch one slot, so a fix takes a
driver step (rules and state, which decide the outcome atomically) and then region steps,
which compare times so that a delayed writer cannot undo a newer one.

Redis GEO cannot index latitudes beyond ±85.05112878° (Web Mercator). Such a fix is still
stored as the live position (``current``) and traced, but the driver is taken out of the
region sets, so ``nearest`` does not find them there. Nobody dispatches rides at the poles.

The client may be created with ``decode_responses`` on or off (the binary values are read
without decoding either way); the default of ``redis.asyncio.from_url(url)`` is what
production uses. The store does not own the client: the composition root closes it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import struct
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final, cast

import h3.api.basic_int as h3
import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.client import NEVER_DECODE
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from ridehail.kernel.geo import cell_reach_m, haversine_m
from ridehail.locations import records, redis_lua
from ridehail.locations.cells import drivers_in_cells_by_search, resolution_of
from ridehail.locations.ports import (
    JUMP_SLACK_M,
    LocationFix,
    NearbyDriver,
    Recorded,
    position_channel,
    position_message,
)
from ridehail.locations.records import from_us, to_us
from ridehail.locations.redis_lane import ScriptLane

#: Redis GEO refuses latitudes beyond this (the Web Mercator limit).
GEO_MAX_LATITUDE: Final = 85.05112878
#: An abandoned trace (the trip never ended) expires after this long.
TRACE_TTL_S: Final = 6 * 3600
#: A driver who stopped reporting without going offline is forgotten after this long.
DRIVER_TTL_S: Final = 24 * 3600
#: H3 resolution of the regions: 5 makes cells of about 250 km², a few per city, so that a
#: search touches one to four of them and a region holds a city district's drivers.
REGION_RESOLUTION: Final = 5
#: Each write into a region removes at most this many stale members of it: enough to outrun
#: drivers going quiet, small enough that no write ever stalls on a backlog.
PRUNE_PER_WRITE: Final = 16
#: Fixes per script call in ``record_many``: large enough that the round trip and the call
#: overhead vanish, small enough that a call holds Redis only milliseconds (500 fixes at the
#: ~10 µs each that ``make bench`` measures), which other clients wait out.
CHUNK: Final = 500
#: How stale a process's view of who is followed may be: a new watcher in another process
#: gets positions at most this much later (its snapshot comes at once).
FOLLOWED_REFRESH_S: Final = 1.0
#: Expired follows are removed from Redis this often.
FOLLOWED_PRUNE_S: Final = 60.0

#: ``nearest`` over-fetches this many times ``limit`` because stale drivers are filtered
#: after Redis applies COUNT; each retry multiplies the count by the same factor...
_OVERFETCH: Final = 3
_RETRY_GROWTH: Final = 4
#: ...up to this many members per region and search.
_MAX_SEARCH_COUNT: Final = 5_000
#: Redis measures distance on a sphere of radius 6 372 797.56 m, the kernel on one of
#: 6 371 008.8 m (0.03 % apart), and on quantised coordinates. Searching a little wider and
#: filtering on the kernel's haversine keeps both adapters agreeing on who is inside.
_RADIUS_SLACK_RATIO: Final = 1.001
_RADIUS_SLACK_M: Final = 2.0
#: A search whose circle would touch more regions than this is refused: at resolution 5 it
#: is a radius of several hundred kilometres, far beyond any dispatch or nearby view.
MAX_SEARCH_REGIONS: Final = 2_000
#: ``drivers_in_cells`` reads a region whole when at least 1/this of its cells are wanted.
_SCAN_SHARE: Final = 8
#: Members per ZSCAN page (a hint to Redis) and so per MGET of their states: small enough
#: that placing a page holds the event loop for a millisecond or two, not more.
_SCAN_PAGE: Final = 250
#: Cells whose regions are worked out between two yields to the event loop.
_PLAN_CELLS_PER_YIELD: Final = 64

#: Query longitudes east of this (1 cm from the antimeridian) are searched from -180.
_ANTIMERIDIAN_EAST: Final = 179.9999999

#: µs, latitude, longitude, heading, speed, accuracy (NaN = missing); Lua's '<i8ddddd'.
_RECORD: Final = records.RECORD
_CORE: Final = struct.Struct("<qdd")
#: A state is the record, the trace flag, then the region (see redis_lua).
_STATE_REGION: Final = _RECORD.size + 1
#: msgpack's header of a 48-byte str: Redis 7.0's cmsgpack knows no bin type, and a str
#: carries any bytes.
_RECORD_HEADER: Final = bytes((0xD9, _RECORD.size))
#: The header and the record in one ``pack`` (the record's own format after the header).
_RECORD_STR: Final = struct.Struct("<BB" + _RECORD.format.lstrip("<"))
_NAN: Final = math.nan

_CODES: Final = {
    ord("1"): Recorded.LIVE,
    ord("0"): Recorded.OLDER,
    ord("2"): Recorded.IMPLAUSIBLE,
}
_OUTCOME: Final = {1: Recorded.LIVE, 0: Recorded.OLDER, 2: Recorded.IMPLAUSIBLE}

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)

#: Driver ids that go into a JSON string as they are (what ``json.dumps`` writes
#: unescaped); any other id has its message rendered by ``json.dumps`` itself.
_PLAIN_ID: Final = re.compile(r"[ !#-\[\]-~]*").fullmatch

#: ``execute_command`` option: read this reply as bytes even on a decoding client (the
#: states and traces are binary).
_RAW: Final[dict[str, list[str]]] = {NEVER_DECODE: []}

Client = aioredis.Redis | RedisCluster


def _spread(bits: int) -> int:
    """``bits`` with a zero inserted above each (Redis's ``interleave64``, one half)."""
    for shift, mask in (
        (16, 0x0000FFFF0000FFFF),
        (8, 0x00FF00FF00FF00FF),
        (4, 0x0F0F0F0F0F0F0F0F),
        (2, 0x3333333333333333),
        (1, 0x5555555555555555),
    ):
        bits = (bits | (bits << shift)) & mask
    return bits


#: ``_spread`` of every 13-bit number: a 26-bit coordinate is two lookups.
_SPREAD: Final = tuple(_spread(bits) for bits in range(8192))
_GEO_LAT_SPAN: Final = GEO_MAX_LATITUDE - -GEO_MAX_LATITUDE


def geo_score(latitude: float, longitude: float) -> int:
    """The score GEOADD gives a position: latitude and longitude as 26-bit fractions of
    their ranges, bits interleaved (latitude in the even bits), computed with Redis's own
    float operations so that it matches bit for bit (a test holds it to GEOADD) - except at
    latitude +85.05112878 and longitude +180 exactly, where GEOADD overflows."""
    # At exactly the top of a range the fraction is 1.0 and the 27th bit would spill into
    # the other coordinate's bits (GEOADD does that); the last 26-bit step is kept instead.
    y = min(int((latitude - -GEO_MAX_LATITUDE) / _GEO_LAT_SPAN * 67108864.0), 67108863)
    x = min(int((longitude - -180.0) / 360.0 * 67108864.0), 67108863)
    spread = _SPREAD
    lat_bits = spread[y & 8191] | spread[y >> 13] << 26
    lon_bits = spread[x & 8191] | spread[x >> 13] << 26
    return lat_bits | lon_bits << 1


def position_json(fix: LocationFix, lat_text: str, lon_text: str) -> str:
    """``json.dumps(position_message(fix))``, built by hand for the common driver id at a
    fraction of the cost (it runs for every fix of a batch). ``lat_text``/``lon_text``
    are the coordinates' ``repr``, which is how ``json`` writes a float."""
    driver_id = fix.driver_id
    if not _PLAIN_ID(driver_id):
        return json.dumps(position_message(fix))
    heading = fix.heading
    return (
        '{"type": "driver.location", "driver_id": "'
        + driver_id
        + '", "latitude": '
        + lat_text
        + ', "longitude": '
        + lon_text
        + ', "heading": '
        + ("null" if heading is None else repr(heading))
        + ', "recorded_at": "'
        + fix.recorded_at.isoformat()
        + '"}'
    )


def _outcomes(reply: bytes | str, count: int) -> list[Recorded]:
    codes = _bytes(reply)
    if len(codes) != count:
        raise RuntimeError(f"ingest script answered {len(codes)} outcomes for {count}")
    return [_CODES[code] for code in codes]


def _deliver(done: Callable[[list[Recorded] | Exception], None], count: int, reply: Any) -> None:
    """Tell ``done`` the outcomes in the ingest script's ``reply``, or its error."""
    if isinstance(reply, Exception):
        done(reply)
        return
    try:
        outcomes = _outcomes(reply, count)
    except RuntimeError as exc:
        done(exc)
        return
    done(outcomes)


def _live_in(state: bytes | None, region: str, since_us: int) -> tuple[int, float, float] | None:
    """(fix µs, latitude, longitude) of a driver's state, if it files the driver under
    ``region`` (a member elsewhere is a leftover) and the fix is not older than
    ``since_us``; otherwise None. The state is the truth for every read of a region."""
    if state is None or state[_STATE_REGION:].decode() != region:
        return None
    live: tuple[int, float, float] = _CORE.unpack_from(state)
    return live if live[0] >= since_us else None


def _text(value: bytes | str) -> str:
    """Replies are bytes or str depending on the client's ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


@dataclass(slots=True)
class _RegionOps:
    """One region's share of a cluster batch: who leaves (with the time of the position
    that leaves) and who arrives."""

    leaving: dict[str, int] = field(default_factory=dict)
    arriving: list[Any] = field(default_factory=list)


class RedisLocationStore:
    """Live positions and trip traces in Redis, shared by every API and dispatch process."""

    def __init__(
        self,
        client: Client,
        *,
        key_prefix: str = "ridehail:",
        max_speed_mps: float | None = None,
        stale_after_s: float = 30.0,
        region_resolution: int = REGION_RESOLUTION,
        driver_ttl_s: float = DRIVER_TTL_S,
        announce_prefix: str | None = None,
        clock: Callable[[], float] = time.time,
        ingest_lane: bool = False,
    ) -> None:
        """``announce_prefix`` turns on publishing: each fix that becomes live for a driver
        someone follows (:meth:`follow`) is sent as :func:`position_message` JSON to
        ``announce_prefix + position_channel(driver)`` by the write itself (pass the pub/sub
        adapter's channel prefix). ``clock`` gives
        the time (epoch seconds) against which positions count as stale. ``ingest_lane``
        sends the ingest script on a connection of the store's own
        (:class:`~ridehail.locations.redis_lane.ScriptLane`, where the client's connection
        allows one), which :meth:`close` releases."""
        if "{" in key_prefix or "}" in key_prefix:
            raise ValueError("key_prefix must not contain '{' or '}' (hash tags are ours)")
        if not stale_after_s > 0 or not driver_ttl_s > 0:
            raise ValueError("stale_after_s and driver_ttl_s must be positive")
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._loc = f"{key_prefix}loc:"
        self._max_speed = repr(float(max_speed_mps or 0))
        self._stale_after_s = float(stale_after_s)
        self._resolution = region_resolution
        self._state_ttl_ms = str(max(1, round(driver_ttl_s * 1000)))
        #: A state's TTL is renewed when a live fix enters a new step of this much fix time.
        self._renew_us = max(1, round(driver_ttl_s * 1e6 / 2))
        self._region_ttl_ms = str(max(1, round(stale_after_s * 2000)))
        #: On one Redis a ``seen`` time is renewed once per this step of fix time (see
        #: redis_lua), so it lags a position by up to the step and pruning waits as long.
        self._seen_step_us = max(1, round(stale_after_s * 1e6 / 2))
        self._clock = clock
        self.announces_positions = announce_prefix is not None
        head, _marker, tail = position_channel("\x00").partition("\x00")
        self._channel_prefix = "" if announce_prefix is None else announce_prefix + head
        self._channel_suffix = tail
        self._announce_prefix = announce_prefix or ""
        #: Who is followed: a sorted set of driver ids scored by when the following ends
        #: (epoch ms), shared by every process; each process reads it at most once per
        #: FOLLOWED_REFRESH_S into ``_followed`` (its own follows count at once).
        self._followed_key = f"{self._loc}followed"
        self._followed: dict[str, float] = {}
        self._followed_read_at = -FOLLOWED_REFRESH_S
        self._followed_pruned_at = 0.0
        self._hex: dict[int, str] = {}
        self._extents: dict[int, tuple[float, float, float]] = {}
        self._encoder = msgspec.msgpack.Encoder()
        self._ingest: AsyncScript = client.register_script(redis_lua.INGEST)
        self._forget: AsyncScript = client.register_script(redis_lua.FORGET)
        self._trace_append: AsyncScript = client.register_script(redis_lua.TRACE_APPEND)
        self._begin_trace: AsyncScript = client.register_script(redis_lua.BEGIN_TRACE)
        self._end_trace: AsyncScript = client.register_script(redis_lua.END_TRACE)
        self._driver_record: AsyncScript = client.register_script(redis_lua.DRIVER_RECORD)
        self._driver_forget: AsyncScript = client.register_script(redis_lua.DRIVER_FORGET)
        self._region: AsyncScript = client.register_script(redis_lua.REGION)
        self._cluster_scripts_loaded = False
        self._lane = (
            ScriptLane.for_client(client, redis_lua.INGEST)
            if ingest_lane and not self._cluster
            else None
        )

    # --- keys -------------------------------------------------------------------------

    def state_key(self, driver_id: str) -> str:
        return f"{self._loc}drv:{{{driver_id}}}"

    def trace_key(self, driver_id: str) -> str:
        return f"{self._loc}trace:{{{driver_id}}}"

    def region_keys(self, region: str) -> tuple[str, str]:
        """The GEO set and the ``seen`` sorted set of a region (H3 index in hex)."""
        return f"{self._loc}{{{region}}}:geo", f"{self._loc}{{{region}}}:seen"

    def region_of(self, latitude: float, longitude: float) -> str:
        """The region (H3 hex) a position is filed under; ``""`` if GEO cannot index it."""
        if not -GEO_MAX_LATITUDE <= latitude <= GEO_MAX_LATITUDE:
            return ""
        cell = h3.latlng_to_cell(latitude, longitude, self._resolution)
        hexes = self._hex
        found = hexes.get(cell)
        if found is None:
            if len(hexes) > 65_536:  # regions a process ever sees are few; stay bounded
                hexes.clear()
            found = hexes[cell] = format(cell, "x")
        return found

    # --- writes -----------------------------------------------------------------------

    async def follow(self, driver_id: str, *, for_s: float) -> None:
        if not self.announces_positions:
            return
        until = self._clock() + for_s
        self._followed[driver_id] = max(until, self._followed.get(driver_id, 0.0))
        await self._client.zadd(self._followed_key, {driver_id: until * 1000.0}, gt=True)

    def _followed_due(self) -> bool:
        return self._clock() - self._followed_read_at >= FOLLOWED_REFRESH_S

    async def _who_is_followed(self) -> dict[str, float]:
        """The followed drivers (id -> until, epoch s), re-read at most once per
        FOLLOWED_REFRESH_S; expired follows are pruned from Redis now and then."""
        now = self._clock()
        if now - self._followed_read_at >= FOLLOWED_REFRESH_S:
            self._followed_read_at = now
            rows: list[tuple[bytes | str, float]] = await self._client.zrangebyscore(
                self._followed_key, repr(now * 1000.0), "+inf", withscores=True
            )  # type: ignore[assignment]
            self._followed = {_text(d): float(score) / 1000.0 for d, score in rows}
            if now - self._followed_pruned_at >= FOLLOWED_PRUNE_S:
                self._followed_pruned_at = now
                await self._client.zremrangebyscore(
                    self._followed_key, "-inf", f"({now * 1000.0!r}"
                )
        return self._followed

    async def record(self, fix: LocationFix) -> Recorded:
        if self._cluster:
            return (await self._cluster_record_many([fix]))[0]
        return (await self._ingest_chunk([fix]))[0]

    async def record_many(self, fixes: Sequence[LocationFix]) -> list[Recorded]:
        """One script call per :data:`CHUNK` fixes on one Redis; each call applies its
        fixes in order, so a driver may appear any number of times."""
        if not fixes:
            return []
        if self._cluster:
            return await self._cluster_record_many(fixes)
        outcomes: list[Recorded] = []
        for start in range(0, len(fixes), CHUNK):
            outcomes += await self._ingest_chunk(fixes[start : start + CHUNK])
        return outcomes

    async def trace_only(self, fix: LocationFix) -> None:
        await self._trace_append(keys=[self.trace_key(fix.driver_id)], args=[records.encode(fix)])

    async def forget(self, driver_id: str) -> None:
        if not self._cluster:
            await self._forget(keys=[self.state_key(driver_id)], args=[self._loc, driver_id])
            return
        gone = await self._driver_forget(keys=[self.state_key(driver_id)])
        if gone:
            region, micros = _text(gone[0]), int(gone[1])
            if region:
                ops = _RegionOps(leaving={driver_id: micros})
                await self._run_cluster([self._region_call(region, ops)])

    async def begin_trace(self, driver_id: str) -> None:
        await self._begin_trace(
            keys=[self.state_key(driver_id), self.trace_key(driver_id)], args=[TRACE_TTL_S]
        )

    async def end_trace(self, driver_id: str) -> list[LocationFix]:
        keys = [self.state_key(driver_id), self.trace_key(driver_id)]
        raw = await self._eval_raw(self._end_trace, keys)
        return [] if not raw else records.trace_points(driver_id, _bytes(raw))

    # --- reads ------------------------------------------------------------------------

    async def current(self, driver_id: str) -> LocationFix | None:
        raw = await self._client.execute_command("GET", self.state_key(driver_id), **_RAW)
        return None if raw is None else records.decode(driver_id, _bytes(raw))

    async def nearest(
        self,
        *,
        latitude: float,
        longitude: float,
        radius_m: float,
        limit: int,
        fresh_since: datetime,
    ) -> list[NearbyDriver]:
        """GEOSEARCH every region the circle touches, nearest first, then judge each member
        by its state; fetch more while stale members left the page short and Redis had more
        to give."""
        if limit <= 0 or not radius_m >= 0:  # "not >=" also refuses NaN
            return []
        search_radius = radius_m * _RADIUS_SLACK_RATIO + _RADIUS_SLACK_M
        regions = self.regions_within(latitude, longitude, search_radius)
        since_us = to_us(fresh_since)
        count = limit * _OVERFETCH
        while True:
            members, full = await self._search(regions, latitude, longitude, search_radius, count)
            hits = await self._fresh_hits(members, latitude, longitude, radius_m, since_us)
            if len(hits) >= limit or not full or count >= _MAX_SEARCH_COUNT:
                return hits[:limit]
            count = min(count * _RETRY_GROWTH, _MAX_SEARCH_COUNT)

    async def drivers_in_cells(
        self, cells: Collection[str], *, fresh_since: datetime
    ) -> dict[str, str]:
        """Regions that many of ``cells`` touch are read whole (ZSCAN of the region, the
        states of a page of members at a time, each placed with one H3 lookup); the cells of
        the other regions are searched around one by one. In a city with demand
        everywhere this reads each driver once, where a search per cell found each one a
        couple of times and sorted, measured and dated every hit."""
        if not cells:
            return {}
        resolution = resolution_of(cells)
        wanted = {h3.str_to_int(cell): cell for cell in cells}
        regions_of: dict[int, list[str]] = {}
        touching: dict[str, int] = {}
        for n, (cell, name) in enumerate(wanted.items(), 1):
            if n % _PLAN_CELLS_PER_YIELD == 0:
                await asyncio.sleep(0)  # a city's cells take a while: let others run
            lat, lon = h3.cell_to_latlng(cell)
            reach = cell_reach_m(name) * _RADIUS_SLACK_RATIO + _RADIUS_SLACK_M
            regions_of[cell] = self.regions_within(lat, lon, reach)
            for region in regions_of[cell]:
                touching[region] = touching.get(region, 0) + 1
        # A region holds about 7 ** (resolution difference) cells: read it whole when an
        # eighth of them are wanted.
        whole = max(1, 7 ** (resolution - self._resolution) // _SCAN_SHARE)
        scanned = {region for region, n in touching.items() if n >= whole}
        since_us = to_us(fresh_since)
        where: dict[str, str] = {}
        for region in sorted(scanned):
            await self._scan_region(region, wanted, resolution, since_us, where)
        rest = [wanted[c] for c, regions in regions_of.items() if not scanned.issuperset(regions)]
        if rest:
            where.update(
                await drivers_in_cells_by_search(self.nearest, rest, fresh_since=fresh_since)
            )
        return where

    async def _scan_region(
        self,
        region: str,
        wanted: Mapping[int, str],
        resolution: int,
        since_us: int,
        where: dict[str, str],
    ) -> None:
        """Place every fresh driver filed under ``region`` whose cell is wanted. ZSCAN
        returns every member present for the whole scan, whatever is written meanwhile."""
        key = self.region_keys(region)[0]
        cursor = 0
        while True:
            cursor, page = await self._client.zscan(key, cursor, count=_SCAN_PAGE)
            members = cast(list[tuple[bytes | str, float]], page)  # scores: the geohashes
            ids = [_text(member) for member, _score in members]
            states = await self._states(ids) if ids else []
            for driver_id, state in zip(ids, states, strict=True):
                live = _live_in(state, region, since_us)
                if live is None:
                    continue
                cell = wanted.get(h3.latlng_to_cell(live[1], live[2], resolution))
                if cell is not None:
                    where[driver_id] = cell
            if cursor == 0:
                return

    def regions_within(self, latitude: float, longitude: float, radius_m: float) -> list[str]:
        """Every region that may hold a point within ``radius_m`` of the given one.

        Rings of cells around the point's own cell are walked outwards, keeping each cell
        whose centre lies within ``radius_m`` plus the cell's own reach (the farthest of its
        vertices from its centre: cells are convex); the walk stops at the first ring that
        keeps none. The disc is connected and any path out of a ring crosses it, so nothing
        beyond can touch the circle. Works across the antimeridian (cells and haversine
        know no seam); not near the twelve pentagons, which lie in the oceans.
        """
        origin = h3.latlng_to_cell(latitude, longitude, self._resolution)
        cells = [origin]
        k = 1
        while True:
            kept = [
                cell
                for cell in h3.grid_ring(origin, k)
                if self._within(cell, latitude, longitude, radius_m)
            ]
            if not kept:
                return [self._hex.get(cell) or format(cell, "x") for cell in cells]
            cells += kept
            if len(cells) > MAX_SEARCH_REGIONS:
                raise ValueError(f"radius too large for a regional search: {radius_m} m")
            k += 1

    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        """Closes the ingest lane, if any; the client is shared and closed by whoever
        created it."""
        if self._lane is not None:
            await self._lane.close()

    # --- one Redis --------------------------------------------------------------------

    def submit_many(
        self, fixes: Sequence[LocationFix], done: Callable[[list[Recorded] | Exception], None]
    ) -> bool:
        """Send ``fixes`` on the ingest lane now; ``done`` is told :meth:`record_many`'s
        outcomes or the error (see :class:`~ridehail.locations.coalesce.Submits`). False,
        having sent nothing, when that needs a wait first: no lane or not connected yet, a
        cluster, more than :data:`CHUNK` fixes, or the followed drivers due to be read."""
        lane = self._lane
        if (
            lane is None
            or not lane.ready
            or len(fixes) > CHUNK
            or (self.announces_positions and self._followed_due())
        ):
            return False
        lane.submit(self._ingest_args(fixes, self._followed), partial(_deliver, done, len(fixes)))
        return True

    async def _ingest_chunk(self, fixes: Sequence[LocationFix]) -> list[Recorded]:
        followed = await self._who_is_followed() if self.announces_positions else {}
        args = self._ingest_args(fixes, followed)
        lane = self._lane
        reply = await (lane.evalsha(args) if lane is not None else self._ingest(args=args))
        return _outcomes(reply, len(fixes))

    def _ingest_args(
        self, fixes: Sequence[LocationFix], followed: Mapping[str, float]
    ) -> list[bytes | str | int]:
        """ARGV of :data:`~redis_lua.INGEST` for ``fixes``."""
        return [
            self._pack(fixes, followed),
            len(fixes),
            self._loc,
            self._prune_below(lag_s=self._seen_step_us / 1e6),
            PRUNE_PER_WRITE,
            self._max_speed,
            repr(JUMP_SLACK_M),
            self._state_ttl_ms,
            self._renew_us,
            self._region_ttl_ms,
            self._channel_prefix,
            self._channel_suffix,
            self._seen_step_us,
        ]

    def _pack(self, fixes: Iterable[LocationFix], followed: Mapping[str, float]) -> bytes:
        """The fixes as one msgpack array, :data:`~redis_lua.INGEST_FIELDS` values each.

        The hot loop of batch ingest, so the record and the message are made here (the
        other core) rather than in the script, which has Redis's single thread to itself.
        """
        values: list[object] = []
        extend = values.extend
        region_of = self.region_of
        pack = _RECORD_STR.pack
        raw = msgspec.Raw
        header, size = _RECORD_HEADER
        now = self._clock()
        for fix in fixes:
            lat = fix.latitude
            lon = fix.longitude
            micros = (fix.recorded_at - _EPOCH) // _ONE_US
            heading = fix.heading
            speed = fix.speed_mps
            accuracy = fix.accuracy_m
            region = region_of(lat, lon)
            extend(
                (
                    fix.driver_id,
                    micros,
                    lat,
                    lon,
                    region,
                    raw(
                        pack(
                            header,
                            size,
                            micros,
                            lat,
                            lon,
                            _NAN if heading is None else heading,
                            _NAN if speed is None else speed,
                            _NAN if accuracy is None else accuracy,
                        )
                    ),
                    position_json(fix, repr(lat), repr(lon))
                    if followed and followed.get(fix.driver_id, 0.0) > now
                    else "",
                    str(geo_score(lat, lon)) if region else "",
                    # Whole milliseconds: a seen time only decides pruning, and lags a
                    # position by up to seen_step anyway; an int prints 4x faster.
                    str(micros // 1000),
                )
            )
        return self._encoder.encode(values)

    def _prune_below(self, lag_s: float = 0.0) -> str:
        """ZRANGEBYSCORE's exclusive upper bound: positions older than the stale window,
        and ``lag_s`` more where ``seen`` times may lag positions by that much."""
        return f"({(self._clock() - self._stale_after_s - lag_s) * 1000.0!r}"

    # --- Redis Cluster ----------------------------------------------------------------

    async def _cluster_record_many(self, fixes: Sequence[LocationFix]) -> list[Recorded]:
        """Driver steps for every fix (pipelined; a driver's steps run in order on its
        node), then one region step per region touched, then the announcements."""
        regions = [self.region_of(fix.latitude, fix.longitude) for fix in fixes]
        micros = [to_us(fix.recorded_at) for fix in fixes]
        calls = []
        for fix, region, at_us in zip(fixes, regions, micros, strict=True):
            if not fix.driver_id:
                raise ValueError("an empty driver id has no hash tag to shard by")
            keys = [self.state_key(fix.driver_id), self.trace_key(fix.driver_id)]
            args: list[Any] = [
                at_us,
                repr(fix.latitude),
                repr(fix.longitude),
                region,
                records.encode(fix),
                self._max_speed,
                repr(JUMP_SLACK_M),
                self._state_ttl_ms,
                self._renew_us,
            ]
            calls.append((self._driver_record, keys, args))
        replies = await self._run_cluster(calls)
        codes = [int(reply[0]) for reply in replies]

        newest: dict[str, int] = {}  # driver -> index of its newest live fix
        left: list[tuple[str, str, int]] = []  # driver, region it left, that position's µs
        for index, (fix, code, reply) in enumerate(zip(fixes, codes, replies, strict=True)):
            if code == 1:
                newest[fix.driver_id] = index
                if _text(reply[1]):
                    left.append((fix.driver_id, _text(reply[1]), int(reply[2])))
        ops: dict[str, _RegionOps] = {}
        for driver_id, index in newest.items():
            if regions[index]:
                fix = fixes[index]
                ops.setdefault(regions[index], _RegionOps()).arriving.extend(
                    (driver_id, geo_score(fix.latitude, fix.longitude), micros[index])
                )
        for driver_id, region, left_us in left:
            if region != regions[newest[driver_id]]:
                leaving = ops.setdefault(region, _RegionOps()).leaving
                leaving[driver_id] = max(left_us, leaving.get(driver_id, left_us))
        await self._run_cluster([self._region_call(region, op) for region, op in ops.items()])
        if self.announces_positions and newest:
            followed, now = await self._who_is_followed(), self._clock()
            await asyncio.gather(
                *(
                    self._announce(fixes[index])
                    for driver_id, index in newest.items()
                    if followed.get(driver_id, 0.0) > now
                )
            )
        return [_OUTCOME[code] for code in codes]

    async def _announce(self, fix: LocationFix) -> None:
        channel = self._announce_prefix + position_channel(fix.driver_id)
        await self._client.publish(
            channel, position_json(fix, repr(fix.latitude), repr(fix.longitude))
        )

    async def _eval_raw(self, script: AsyncScript, keys: list[str]) -> Any:
        """A script whose reply is binary: read undecoded whatever the client's options."""
        command: tuple[str | int, ...] = ("EVALSHA", script.sha, len(keys), *keys)
        try:
            return await self._client.execute_command(*command, **_RAW)
        except NoScriptError:
            await self._client.script_load(script.script)
            return await self._client.execute_command(*command, **_RAW)

    def _region_call(
        self, region: str, ops: _RegionOps
    ) -> tuple[AsyncScript, list[str], list[Any]]:
        args: list[Any] = [
            self._prune_below(),
            min(PRUNE_PER_WRITE * max(1, len(ops.arriving) // 3), 3000),
            self._region_ttl_ms,
            len(ops.leaving),
        ]
        for driver_id, micros in ops.leaving.items():
            args += [driver_id, micros]
        args += ops.arriving
        return self._region, list(self.region_keys(region)), args

    async def _run_cluster(
        self, calls: Sequence[tuple[AsyncScript, list[str], list[Any]]]
    ) -> list[Any]:
        """Script calls in one cluster pipeline (grouped per node by redis-py, in order
        within a node). A node that lost its script cache (restart, failover) gets the
        scripts again and its calls are replayed once."""
        if not calls:
            return []
        if not self._cluster_scripts_loaded:
            await self._load_cluster_scripts()
        results = await self._pipeline(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            await self._load_cluster_scripts()
            again = await self._pipeline([calls[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def _pipeline(
        self, calls: Sequence[tuple[AsyncScript, list[str], list[Any]]]
    ) -> list[Any]:
        async with self._client.pipeline() as pipe:
            for script, keys, args in calls:
                # redis-py blocks the evalsha *method* on cluster pipelines (it cannot
                # load scripts there); the command itself routes by its keys like any
                # other, and _run_cluster loads the scripts.
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def _load_cluster_scripts(self) -> None:
        for script in (self._driver_record, self._region, self._driver_forget):
            await self._client.script_load(script.script)  # every primary
        self._cluster_scripts_loaded = True

    # --- search -----------------------------------------------------------------------

    def _within(self, cell: int, latitude: float, longitude: float, radius_m: float) -> bool:
        extent = self._extents.get(cell)
        if extent is None:
            lat, lon = h3.cell_to_latlng(cell)
            reach = max(haversine_m(lat, lon, *vertex) for vertex in h3.cell_to_boundary(cell))
            extent = (lat, lon, reach * 1.001 + 1.0)
            if len(self._extents) > 65_536:
                self._extents.clear()
            self._extents[cell] = extent
        lat, lon, reach = extent
        return haversine_m(latitude, longitude, lat, lon) <= radius_m + reach

    async def _search(
        self,
        regions: list[str],
        latitude: float,
        longitude: float,
        radius_m: float,
        count: int,
    ) -> tuple[list[tuple[float, str, str]], bool]:
        """(GEO distance, member, region) nearest first over all regions, at most
        ``count``, and whether COUNT may have left some out."""
        query: dict[str, Any] = {
            # GEOSEARCH centred on longitude 180 (or the double just below) misses members
            # west of the antimeridian; -180 is the same meridian and works.
            "longitude": -180.0 if longitude > _ANTIMERIDIAN_EAST else longitude,
            "latitude": latitude,
            "radius": radius_m,
            "unit": "m",
            "sort": "ASC",
            "count": count,
            "withdist": True,
        }
        keys = [self.region_keys(region)[0] for region in regions]
        replies: list[Any]
        if self._cluster:
            replies = list(
                await asyncio.gather(*(self._client.geosearch(key, **query) for key in keys))
            )
        else:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.geosearch(key, **query)
                replies = await pipe.execute()
        found: list[tuple[float, str, str]] = []
        for region, reply in zip(regions, replies, strict=True):
            for item in reply:  # WITHDIST: [member, distance]
                found.append((float(item[1]), _text(item[0]), region))
        full = any(len(reply) >= count for reply in replies) or len(found) > count
        found.sort()
        return found[:count], full

    async def _states(self, driver_ids: list[str]) -> list[bytes | None]:
        """The raw state of each driver, by MGET (per slot on a cluster, all in one
        pipeline: redis-py sends each node its share in one go; a gather of one call per
        slot took a connection per call and ran out of them past 100 per node)."""
        keys = [self.state_key(driver_id) for driver_id in driver_ids]
        if not self._cluster:
            values = await self._client.execute_command("MGET", *keys, **_RAW)
            return [None if value is None else _bytes(value) for value in values]
        by_slot: dict[int, list[int]] = {}
        for index, key in enumerate(keys):
            by_slot.setdefault(key_slot(key.encode()), []).append(index)
        groups = list(by_slot.values())
        async with self._client.pipeline() as pipe:
            for group in groups:
                pipe.execute_command("MGET", *(keys[i] for i in group), **_RAW)
            replies = await pipe.execute()
        states: list[bytes | None] = [None] * len(keys)
        for group, values in zip(groups, replies, strict=True):
            for index, value in zip(group, values, strict=True):
                states[index] = None if value is None else _bytes(value)
        return states

    async def _fresh_hits(
        self,
        members: list[tuple[float, str, str]],
        latitude: float,
        longitude: float,
        radius_m: float,
        since_us: int,
    ) -> list[NearbyDriver]:
        """Exact positions from the states, measured with the kernel's haversine; a member
        found in a region its state does not name is a leftover and is skipped."""
        if not members:
            return []
        states = await self._states([member for _distance, member, _region in members])
        hits: list[NearbyDriver] = []
        for (_distance, driver_id, region), state in zip(members, states, strict=True):
            live = _live_in(state, region, since_us)
            if live is None:
                continue
            micros, lat, lon = live
            distance = haversine_m(latitude, longitude, lat, lon)
            if distance <= radius_m:
                hits.append(
                    NearbyDriver(
                        driver_id=driver_id,
                        latitude=lat,
                        longitude=lon,
                        distance_m=distance,
                        recorded_at=from_us(micros),
                    )
                )
        hits.sort(key=lambda hit: (hit.distance_m, hit.driver_id))
        return hits
