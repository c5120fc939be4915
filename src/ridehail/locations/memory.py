"""The embedded location store: a latitude/longitude grid held in process memory.

Used when no Redis is configured (single-process deployments, development, tests). It is a
real implementation, sized for a whole city on one core:

* **Search cost depends on the drivers near the query, never on the total.** The globe is
  cut into rows about ``cell_m`` tall; each row into as many columns as keep its cells about
  ``cell_m`` wide, so cells stay roughly square from the equator to the poles (a row at the
  pole is a single cell, the poles need no special case). ``nearest`` scans a growing box of
  cells around the query point and stops as soon as it holds ``limit`` drivers nearer than
  the box's guaranteed reach, i.e. nearer than anything outside it can be.
* **Exact answers.** Every driver in the box gets a cheap planar key; the key is turned
  into a *proven* lower bound of the great-circle distance (see :func:`_lower_bound_scale`),
  so only drivers that could still make the top ``limit`` cost a
  :func:`~ridehail.kernel.geo.haversine_m`; the answer is ordered by that very function and
  then by driver id, exactly as a brute-force scan would order it.
* **Small.** Per driver: a slot in six ``array`` columns (latitude, longitude, time,
  heading, speed, accuracy: 48 bytes), its id in a list, an entry in a dict from id to its
  cell's slot array and 4 bytes in that array; per occupied cell, the array and its dict
  entry. No object per driver: about 150 bytes at city density besides the id string, which
  the caller allocated and the store only references (``bench/memory.py``).
* **Bounded without a sweeper process.** A driver whose newest fix is more than
  ``evict_after_s`` behind the newest fix in the store counts as gone at once; its memory
  is reclaimed lazily, by a search that meets it, by its own next fix, and by a sweep of two
  slots per new driver (only new drivers make the store grow). Trip traces are packed
  bytes, capped in length, and expire like the Redis ones (``TRACE_TTL_S``).

The store is driven from a single asyncio event loop. None of its methods awaits, so each
call runs to completion without interleaving and no lock is needed.
"""

from __future__ import annotations

import math
import time
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Final, cast

from ridehail.kernel.geo import EARTH_RADIUS_M, METERS_PER_DEGREE_LAT, haversine_m
from ridehail.locations import records
from ridehail.locations.cells import drivers_in_cells_by_search
from ridehail.locations.ports import JUMP_SLACK_M, LocationFix, NearbyDriver, Recorded
from ridehail.locations.records import from_us, nan_if_none, none_if_nan, to_us

#: An abandoned trace (the trip never ended) is dropped this long after it began, as Redis
#: expires its trace list (``redis_store.TRACE_TTL_S``).
TRACE_TTL_S: Final = 6 * 3600
#: One point a second for the whole life of a trace; further points are not kept, so a phone
#: stuck in a loop cannot grow a trace without bound.
MAX_TRACE_POINTS: Final = TRACE_TTL_S
#: A trace point: recorded_at (epoch µs), latitude, longitude, heading, speed, accuracy; NaN
#: stands for None (LocationFix refuses NaN, so it is free to mean "absent").
_POINT: Final = records.RECORD

#: Relative and absolute margins by which the scanned box is made larger than the distance
#: it must cover, so that float rounding can never leave a qualifying driver outside.
_REACH_SLACK: Final = 1e-9
_DEGREE_SLACK: Final = 1e-9
#: No two points are farther apart; a larger radius would only grow the box forever.
_HALF_CIRCUMFERENCE_M: Final = math.pi * EARTH_RADIUS_M
#: Slots examined for staleness per new driver: reclaims stale slots twice as fast as new
#: drivers can take them, at no cost to the updates of known drivers.
_SWEEP_PER_NEW_DRIVER: Final = 2
#: How far the store's "now" may run ahead of its clock (the ingest path refuses fixes more
#: than 30 s ahead anyway); the clock is read only when a fix goes beyond it.
_AHEAD_OF_CLOCK_US: Final = 60_000_000

Hit = tuple[float, str, int]  # distance, driver id, slot


@lru_cache(maxsize=8)
def _columns_per_row(row_deg: float) -> array[int]:
    """How many columns each row of the grid has: as many as fit cells at least ``row_deg``
    degrees of latitude wide at the row's edge nearest the equator (at least one).

    Shared by every store with the same cell size (it is 320 KB for 250 m cells)."""
    rows = math.ceil(180.0 / row_deg)
    columns = array("i", bytes(4 * rows))
    for row in range(rows):
        south = row * row_deg - 90.0
        north = south + row_deg
        nearest_equator = 0.0 if south <= 0.0 <= north else min(abs(south), abs(north))
        columns[row] = max(1, int(360.0 * math.cos(math.radians(nearest_equator)) / row_deg))
    return columns


def _half_width_deg(reach_m: float, latitude: float) -> float:
    """The largest longitude difference of any point within ``reach_m`` of a point at
    ``latitude`` (the meridians tangent to the spherical cap); 360 when the cap holds a pole.
    """
    angle = reach_m / EARTH_RADIUS_M
    phi = math.radians(abs(latitude))
    if angle + phi >= math.pi / 2:
        return 360.0
    ratio = math.sin(angle) / math.cos(phi)
    if ratio >= 1.0:
        return 360.0
    return math.degrees(math.asin(ratio))


#: The planar key is a lower bound only up to the haversine's own rounding, which is
#: absolute (radians of latitudes near 1 rad subtracted: about 1e-9 m), so relative slack
#: cannot cover it at sub-centimetre distances: drivers at one point, asked from 1.6 cm
#: away, were pruned as farther than a tie. A micrometre more covers it.
_PRUNE_SLACK_M = 1e-6


def _lower_bound_scale(half_angle_max: float) -> float:
    """Metres per unit of planar key root that never exceed the haversine distance.

    With ``dy``, ``dx`` the latitude and (wrapped) longitude differences in degrees and ``c``
    a cosine no larger than that of either point's latitude, haversine gives

        sin²(d/2R) = sin²(Δφ/2) + cos φ₁ cos φ₂ sin²(Δλ/2) ≥ sin²(Δφ/2) + c² sin²(Δλ/2),

    and since ``sin x ≥ x (1 - x²/6)`` for x ≥ 0 and ``d/2R ≥ sin(d/2R)``, with both half
    angles at most ``W``: ``d ≥ M (1 - W²/6) √(dy² + c² dx²)``, M metres per degree. A
    further part in 10⁹ covers the rounding of the key itself.
    """
    w = min(half_angle_max, math.pi / 2)
    return METERS_PER_DEGREE_LAT * (1.0 - w * w / 6.0) * (1.0 - 1e-9)


class _Trace:
    """An open trip trace: packed points in arrival order, and when it expires."""

    __slots__ = ("expires_at", "points")

    def __init__(self, expires_at: float) -> None:
        self.expires_at = expires_at
        self.points = bytearray()


class _Grid:
    """Rows ``cell_m`` tall; in each row as many columns as keep cells at least ``cell_m``
    wide, so cells are about square at any latitude and rows near a pole have few cells.

    A cell's key is ``row * stride + column``: one int, hashed fast, no tuple per cell.
    """

    __slots__ = ("columns", "inverse_row_deg", "row_deg", "rows", "stride")

    def __init__(self, cell_m: float) -> None:
        if not cell_m > 0:
            raise ValueError(f"cell_m must be positive: {cell_m!r}")
        self.row_deg = cell_m / METERS_PER_DEGREE_LAT
        self.inverse_row_deg = 1.0 / self.row_deg
        self.columns = _columns_per_row(self.row_deg)
        self.rows = len(self.columns)
        self.stride = max(self.columns)

    def row(self, latitude: float) -> int:
        """The row of a latitude, clamped to the grid (rows are monotonic in latitude)."""
        row = math.floor((latitude + 90.0) * self.inverse_row_deg)
        return min(max(row, 0), self.rows - 1)

    def cell(self, latitude: float, longitude: float) -> int:
        """The key of the cell holding a point.

        :class:`_Box` computes its edges with the same expressions (``int`` is ``floor``
        here, the operands being positive), so a point and the box edges it lies between
        can never be rounded into different cells."""
        row = int((latitude + 90.0) * self.inverse_row_deg)
        if row >= self.rows:  # latitude 90
            row = self.rows - 1
        columns = self.columns[row]
        column = int((longitude + 180.0) * columns / 360.0)
        if column >= columns:  # longitude 180 is longitude -180
            column -= columns
        return row * self.stride + column


class _Box:
    """The cells scanned so far around one query point; :meth:`grow` widens it to a reach.

    After ``grow(reach)`` the box holds every point within ``reach`` of the query point: its
    rows span ``reach`` of latitude, and in each row it spans the largest longitude
    difference any point within ``reach`` can have (all of the row once the circle holds a
    pole). So once ``limit`` hits are at most ``reach`` away, nothing outside can beat them.

    Only occupied cells are returned: a long stretch of a row is looked up in the row's
    sorted list of occupied columns, so a wide search over empty country costs a bisection
    per row, not a dictionary miss per cell.

    The box also carries the constants of the planar lower bound for every point it can
    ever hold, computed once from the box for the whole search radius.
    """

    __slots__ = (
        "c2",
        "first_row",
        "grid",
        "inverse_scale",
        "latitude",
        "longitude",
        "occupied",
        "scanned_hi",
        "scanned_lo",
    )

    def __init__(
        self,
        grid: _Grid,
        occupied: dict[int, array[int]],
        latitude: float,
        longitude: float,
        radius: float,
    ) -> None:
        self.grid = grid
        self.occupied = occupied
        self.latitude = latitude
        self.longitude = longitude
        dlat, dlon = self._extent(radius)
        self.first_row = grid.row(latitude - dlat)
        last_row = grid.row(latitude + dlat)
        # Columns scanned so far per row, as an unwrapped range; lo > hi while none.
        self.scanned_lo = [1] * (last_row - self.first_row + 1)
        self.scanned_hi = [0] * (last_row - self.first_row + 1)
        # Planar key dy² + c²·dx² (degrees²) with c the smallest cosine of any row the box
        # can reach, and the largest half-angle between the query and any point in it.
        poleward = min(90.0, abs(latitude) + dlat + grid.row_deg + _DEGREE_SLACK)
        cos_band = max(0.0, math.cos(math.radians(poleward)))
        self.c2 = cos_band * cos_band
        widest_column = 360.0 / min(grid.columns[self.first_row], grid.columns[last_row])
        half_angle = math.radians(max(dlat + grid.row_deg, dlon + widest_column)) / 2
        self.inverse_scale = 1.0 / _lower_bound_scale(half_angle)

    def _extent(self, reach: float) -> tuple[float, float]:
        """Degrees of latitude and longitude, either way, that hold everything within
        ``reach`` of the query point, with a margin for rounding."""
        margin = reach * (1 + _REACH_SLACK) + 1e-6
        dlat = margin / METERS_PER_DEGREE_LAT + _DEGREE_SLACK
        dlon = _half_width_deg(margin, self.latitude) + _DEGREE_SLACK
        return dlat, dlon

    def grow(self, reach: float) -> list[int]:
        """Widen the box to ``reach`` (never less than before); the keys of the occupied
        cells it gained."""
        grid = self.grid
        dlat, dlon = self._extent(reach)
        west = self.longitude - dlon + 180.0
        east = self.longitude + dlon + 180.0
        keys: list[int] = []
        for row in range(grid.row(self.latitude - dlat), grid.row(self.latitude + dlat) + 1):
            i = row - self.first_row  # within the box of the whole radius: reach <= radius
            columns = grid.columns[row]
            lo, hi = self.scanned_lo[i], self.scanned_hi[i]
            if hi - lo + 1 >= columns:
                continue  # the whole row is scanned
            new_lo = math.floor(west * columns / 360.0)
            new_hi = math.floor(east * columns / 360.0)
            spans: tuple[tuple[int, int], ...]
            if dlon >= 180.0 or new_hi - new_lo + 1 >= columns:
                # The rest of the row, every column once.
                spans = ((0, columns - 1),) if hi < lo else ((hi + 1, lo + columns - 1),)
                new_lo, new_hi = 0, columns - 1
            elif hi < lo:
                spans = ((new_lo, new_hi),)
            else:  # both edges only move outwards: scan what lies beyond the old ones
                spans = ((new_lo, lo - 1), (hi + 1, new_hi))
            self.scanned_lo[i], self.scanned_hi[i] = new_lo, new_hi
            occupied = self.occupied.get(row)
            if occupied is not None:
                base = row * grid.stride
                for span in spans:
                    _occupied_keys(keys, occupied, base, columns, span)
        return keys


#: Spans of a row up to this many columns are looked up cell by cell (a dict miss is as
#: cheap as a bisection); longer ones through the row's sorted occupied columns.
_SHORT_SPAN: Final = 8


def _occupied_keys(
    keys: list[int], occupied: array[int], base: int, columns: int, span: tuple[int, int]
) -> None:
    """Append the keys of the occupied cells among columns ``first..last`` of a row (an
    unwrapped range, at most one lap: column ``c`` is column ``c % columns``)."""
    first, last = span
    if last - first < _SHORT_SPAN:
        keys.extend(base + c % columns for c in range(first, last + 1))
        return
    start = first % columns
    end = start + (last - first)
    spans: tuple[tuple[int, int], ...] = ((start, end),)
    if end >= columns:  # the span crosses the antimeridian
        spans = ((start, columns - 1), (0, end - columns))
    for lo, hi in spans:
        keys.extend(
            base + c for c in occupied[bisect_left(occupied, lo) : bisect_right(occupied, hi)]
        )


class InMemoryLocationStore:
    """Live driver positions in a latitude/longitude grid, plus open trip traces, in this
    process."""

    __slots__ = (
        "_accuracy",
        "_at",
        "_ceiling_us",
        "_cells",
        "_clock",
        "_evict_after_us",
        "_free",
        "_grid",
        "_heading",
        "_horizon_us",
        "_ids",
        "_lat",
        "_lon",
        "_max_radius_m",
        "_max_speed_mps",
        "_max_trace_points",
        "_newest_us",
        "_occupied",
        "_speed",
        "_sweep_at",
        "_trace_ttl_s",
        "_traces",
        "_where",
    )

    #: Followers in this process are fed by the caller through the in-process pub/sub.
    announces_positions = False

    async def follow(self, driver_id: str, *, for_s: float) -> None:
        """Nothing to do: this store does not announce (the caller publishes)."""

    def __init__(
        self,
        *,
        cell_m: float = 250.0,
        max_radius_m: float = 50_000,
        max_speed_mps: float | None = None,
        evict_after_s: float = 3600.0,
        trace_ttl_s: float = TRACE_TTL_S,
        max_trace_points: int = MAX_TRACE_POINTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``cell_m`` 250 puts a few drivers in a cell of a busy city, so the ten nearest
        are usually found in the first few cells, and makes a sparse suburb cost only a few
        dozen lookups; smaller cells cost memory (an array per occupied cell), larger ones
        make a crowded query look at more drivers. ``max_radius_m`` bounds the work one
        ``nearest`` call may do; a fix whose implied speed from the live one exceeds
        ``max_speed_mps`` is kept out of search.

        ``evict_after_s``: a driver whose newest fix is this far behind the newest fix in
        the store is gone (``current`` is None, ``nearest`` never returns it) and its memory
        is reclaimed lazily. The store's "now" is its newest accepted fix, capped at a
        minute past ``clock`` (epoch seconds) so that one phone with a clock far ahead
        cannot age everybody else out; it is not the host clock itself, so replayed or
        fixed-date data ages only relative to itself. A trace expires ``trace_ttl_s`` after
        it began, by ``clock``, and keeps at most ``max_trace_points`` points."""
        self._grid = _Grid(cell_m)
        self._max_speed_mps = max_speed_mps
        self._max_radius_m = max_radius_m
        self._clock = clock
        # Per-driver state lives in columns indexed by slot; freed slots are reused.
        self._ids: list[str | None] = []
        self._lat = array("d")
        self._lon = array("d")
        self._at = array("q")  # recorded_at, epoch µs
        self._heading = array("d")  # NaN when unknown, as speed and accuracy
        self._speed = array("d")
        self._accuracy = array("d")
        self._free = array("i")
        # Cell key -> the slots in it, as raw C ints (a list would need an int object per
        # driver). A driver id maps to its cell's array rather than to its slot, for the
        # same reason; its slot is found by scanning that short array.
        self._cells: dict[int, array[int]] = {}
        self._where: dict[str, array[int]] = {}
        # Row -> its occupied columns, sorted: lets a wide search skip empty country.
        self._occupied: dict[int, array[int]] = {}
        self._evict_after_us = round(evict_after_s * 1e6)
        self._newest_us = -(2**62)
        self._ceiling_us = -(2**62)
        self._horizon_us = -(2**62)
        self._sweep_at = 0
        self._trace_ttl_s = trace_ttl_s
        self._max_trace_points = max_trace_points
        # Insertion-ordered by begin time, so expired traces are always at the front.
        self._traces: dict[str, _Trace] = {}

    # ------------------------------------------------------------------ the port

    async def record(self, fix: LocationFix) -> Recorded:
        return self._record(fix)

    async def record_many(self, fixes: Sequence[LocationFix]) -> list[Recorded]:
        return [self._record(fix) for fix in fixes]

    async def trace_only(self, fix: LocationFix) -> None:
        if self._traces:
            self._append_to_trace(fix, to_us(fix.recorded_at))

    async def current(self, driver_id: str) -> LocationFix | None:
        slot = self._live_slot(driver_id)
        if slot is None:
            return None
        return LocationFix(
            driver_id=driver_id,
            latitude=self._lat[slot],
            longitude=self._lon[slot],
            recorded_at=from_us(self._at[slot]),
            heading=none_if_nan(self._heading[slot]),
            speed_mps=none_if_nan(self._speed[slot]),
            accuracy_m=none_if_nan(self._accuracy[slot]),
        )

    async def nearest(
        self,
        *,
        latitude: float,
        longitude: float,
        radius_m: float,
        limit: int,
        fresh_since: datetime,
    ) -> list[NearbyDriver]:
        if limit <= 0 or not radius_m >= 0:  # "not >=" also refuses NaN
            return []
        if not (-90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0):
            raise ValueError(f"query point out of range: {latitude!r}, {longitude!r}")
        radius = min(radius_m, self._max_radius_m, _HALF_CIRCUMFERENCE_M)
        since_us = max(to_us(fresh_since), self._horizon_us)
        hits = self._search(latitude, longitude, radius, limit, since_us)
        lat, lon, at = self._lat, self._lon, self._at
        return [
            NearbyDriver(
                driver_id=driver_id,
                latitude=lat[slot],
                longitude=lon[slot],
                distance_m=distance,
                recorded_at=from_us(at[slot]),
            )
            for distance, driver_id, slot in hits
        ]

    async def drivers_in_cells(
        self, cells: Collection[str], *, fresh_since: datetime
    ) -> dict[str, str]:
        return await drivers_in_cells_by_search(self.nearest, cells, fresh_since=fresh_since)

    async def forget(self, driver_id: str) -> None:
        slot = self._slot(driver_id)
        if slot is not None:
            self._evict(slot)

    async def begin_trace(self, driver_id: str) -> None:
        now = self._clock()
        traces = self._traces
        traces.pop(driver_id, None)  # re-inserted at the end: the dict stays in begin order
        while traces:
            oldest = next(iter(traces))
            if traces[oldest].expires_at > now:
                break
            del traces[oldest]
        traces[driver_id] = _Trace(now + self._trace_ttl_s)

    async def end_trace(self, driver_id: str) -> list[LocationFix]:
        trace = self._traces.pop(driver_id, None)
        if trace is None or trace.expires_at <= self._clock():
            return []
        return records.trace_points(driver_id, bytes(trace.points))

    async def ping(self) -> None:
        """Always reachable: the data lives in this process."""

    async def close(self) -> None:
        """Nothing to release; the index dies with the process."""

    # ------------------------------------------------------------------ slots

    def _slot(self, driver_id: str) -> int | None:
        members = self._where.get(driver_id)
        return None if members is None else self._find(members, driver_id)

    def _find(self, members: array[int], driver_id: str) -> int:
        """The driver's slot, found in its cell's short array."""
        ids = self._ids
        for slot in members:
            if ids[slot] == driver_id:
                return slot
        raise LookupError(f"{driver_id!r} is missing from its cell")  # a broken invariant

    def _live_slot(self, driver_id: str) -> int | None:
        """The driver's slot, unless the driver is gone (then its memory is reclaimed)."""
        slot = self._slot(driver_id)
        if slot is not None and self._at[slot] < self._horizon_us:
            self._evict(slot)
            return None
        return slot

    def _allocate(self, driver_id: str) -> int:
        """A slot for a new driver: a freed one if any, else the columns grow by one.

        Only here can memory grow, so this is where stale slots are reclaimed, a few per
        new driver, round the slot columns: every slot is looked at once per so many new
        drivers, and memory stays bounded even where no search ever looks."""
        ids, at, horizon = self._ids, self._at, self._horizon_us
        for _ in range(min(_SWEEP_PER_NEW_DRIVER, len(ids))):
            slot = self._sweep_at if self._sweep_at < len(ids) else 0
            self._sweep_at = slot + 1
            if ids[slot] is not None and at[slot] < horizon:
                self._evict(slot)
        if self._free:
            slot = self._free.pop()
            ids[slot] = driver_id
            return slot
        ids.append(driver_id)
        for column in (self._lat, self._lon, self._heading, self._speed, self._accuracy):
            column.append(math.nan)
        at.append(0)
        return len(ids) - 1

    def _place(self, driver_id: str, slot: int, cell: int) -> None:
        members = self._cells.get(cell)
        if members is None:
            members = self._cells[cell] = array("i")
            row, column = divmod(cell, self._grid.stride)
            occupied = self._occupied.get(row)
            if occupied is None:
                occupied = self._occupied[row] = array("i")
            insort(occupied, column)
        members.append(slot)
        self._where[driver_id] = members

    def _unplace(self, slot: int, members: array[int]) -> None:
        """Take the slot out of its cell (still at the slot's stored position)."""
        members.remove(slot)
        if not members:  # empty cells would pile up as drivers roam
            cell = self._grid.cell(self._lat[slot], self._lon[slot])
            del self._cells[cell]
            row, column = divmod(cell, self._grid.stride)
            occupied = self._occupied[row]
            occupied.remove(column)
            if not occupied:
                del self._occupied[row]

    def _evict(self, slot: int) -> None:
        """Drop a driver's live position and free its slot."""
        driver_id = self._ids[slot]
        if driver_id is None:
            return
        self._unplace(slot, self._where.pop(driver_id))
        self._ids[slot] = None
        self._free.append(slot)

    # ------------------------------------------------------------------ writes

    def _record(self, fix: LocationFix) -> Recorded:
        recorded_us = to_us(fix.recorded_at)
        if self._traces:
            self._append_to_trace(fix, recorded_us)
        members = self._where.get(fix.driver_id)
        if members is not None:
            slot = self._find(members, fix.driver_id)
            if self._at[slot] >= self._horizon_us:
                return self._update(fix, recorded_us, slot, members)
            self._evict(slot)  # gone already: the new fix starts afresh
        slot = self._allocate(fix.driver_id)
        self._place(fix.driver_id, slot, self._grid.cell(fix.latitude, fix.longitude))
        self._write(slot, fix, recorded_us)
        return Recorded.LIVE

    def _update(
        self, fix: LocationFix, recorded_us: int, slot: int, members: array[int]
    ) -> Recorded:
        """A known driver's new fix: kept out if older or implausible, else moved in."""
        old_us = self._at[slot]
        if old_us >= recorded_us:
            return Recorded.OLDER
        latitude, longitude = fix.latitude, fix.longitude
        if self._max_speed_mps is not None:
            meters = haversine_m(self._lat[slot], self._lon[slot], latitude, longitude)
            allowed = self._max_speed_mps * (recorded_us - old_us) / 1e6 + JUMP_SLACK_M
            if meters > allowed:
                return Recorded.IMPLAUSIBLE
        cell = self._grid.cell(latitude, longitude)
        if self._cells.get(cell) is not members:  # moved to another cell
            self._unplace(slot, members)
            self._place(fix.driver_id, slot, cell)
        self._write(slot, fix, recorded_us)
        return Recorded.LIVE

    def _write(self, slot: int, fix: LocationFix, recorded_us: int) -> None:
        self._lat[slot] = fix.latitude
        self._lon[slot] = fix.longitude
        self._at[slot] = recorded_us
        self._heading[slot] = math.nan if fix.heading is None else fix.heading
        self._speed[slot] = math.nan if fix.speed_mps is None else fix.speed_mps
        self._accuracy[slot] = math.nan if fix.accuracy_m is None else fix.accuracy_m
        if recorded_us > self._newest_us:
            self._advance(recorded_us)

    def _advance(self, recorded_us: int) -> None:
        """Move the store's "now" forward to a newer fix, but not more than a minute past
        the clock, which is read only when a fix goes beyond its last reading plus a minute
        (about once a minute, not on every write)."""
        if recorded_us > self._ceiling_us:
            self._ceiling_us = int(self._clock() * 1e6) + _AHEAD_OF_CLOCK_US
            recorded_us = min(recorded_us, self._ceiling_us)
            if recorded_us <= self._newest_us:
                return
        self._newest_us = recorded_us
        self._horizon_us = recorded_us - self._evict_after_us

    def _append_to_trace(self, fix: LocationFix, recorded_us: int) -> None:
        """Traces take every point, in any order (exact duplicates are dropped when the
        trace ends, as Redis does); an expired trace is dropped, a full one grows no more."""
        trace = self._traces.get(fix.driver_id)
        if trace is None:
            return
        if trace.expires_at <= self._clock():
            del self._traces[fix.driver_id]
            return
        if len(trace.points) >= self._max_trace_points * _POINT.size:
            return
        trace.points += _POINT.pack(
            recorded_us,
            fix.latitude,
            fix.longitude,
            nan_if_none(fix.heading),
            nan_if_none(fix.speed_mps),
            nan_if_none(fix.accuracy_m),
        )

    # ------------------------------------------------------------------ search

    def _search(  # noqa: PLR0912 - one loop, so that its locals stay fast
        self, latitude: float, longitude: float, radius: float, limit: int, since_us: int
    ) -> list[Hit]:
        """Grow the box around the query point; stop when it covers the radius, or earlier
        once ``limit`` hits are nearer than its reach.

        Each fresh driver in a new cell costs a planar key; only one whose key's lower
        bound is within ``tau`` (the radius, then the ``limit``-th best distance so far)
        costs a haversine."""
        box = _Box(self._grid, self._occupied, latitude, longitude, radius)
        c2, inverse_scale = box.c2, box.inverse_scale
        cells = self._cells
        lat_of, lon_of, at_of = self._lat, self._lon, self._at
        ids = cast(list[str], self._ids)  # every slot in a cell is taken
        horizon = self._horizon_us
        best: list[Hit] = []
        tau = radius
        threshold = ((tau + _PRUNE_SLACK_M) * inverse_scale) ** 2
        stale: list[int] = []
        growth = self._grid.row_deg * METERS_PER_DEGREE_LAT / 2
        reach = 0.0
        while True:
            # Grow by a quarter (overshooting into a crowd is what costs), but once the
            # limit is met nothing beyond tau can make the answer: go there, and stop.
            reach = min(radius, reach + max(growth, reach / 4)) if len(best) < limit else tau
            for key in box.grow(reach):
                members = cells.get(key)
                if members is None:
                    continue
                for slot in members:
                    at = at_of[slot]
                    if at < since_us:
                        if at < horizon:
                            stale.append(slot)
                        continue
                    dy = lat_of[slot] - latitude
                    dx = lon_of[slot] - longitude
                    if dx > 180.0:
                        dx -= 360.0
                    elif dx < -180.0:
                        dx += 360.0
                    if dy * dy + c2 * dx * dx > threshold:
                        continue  # provably farther than tau
                    distance = haversine_m(latitude, longitude, lat_of[slot], lon_of[slot])
                    if distance > tau:
                        continue
                    if len(best) < limit:  # unsorted until full: a large limit sorts once
                        best.append((distance, ids[slot], slot))
                        if len(best) < limit:
                            continue
                        best.sort()
                    else:
                        insort(best, (distance, ids[slot], slot))
                        best.pop()
                    tau = best[-1][0]
                    threshold = ((tau + _PRUNE_SLACK_M) * inverse_scale) ** 2
            if reach >= radius or (len(best) >= limit and tau <= reach):
                break
        for slot in stale:
            self._evict(slot)
        best.sort()
        return best
