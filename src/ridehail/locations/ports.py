"""What the rest of the system may ask of the live driver location store.

Two adapters implement :class:`DriverLocationStore`: an in-process H3 index (the embedded
default) and Redis (the production profile). Both keep exactly the same observable rules, so
the behavioural tests run unchanged against either.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import msgspec


class LocationFix(msgspec.Struct, frozen=True):
    """One GPS report from a driver's phone.

    Validated on construction so that no adapter has to defend itself against a NaN or an
    out-of-range coordinate (which would poison a spatial index rather than fail loudly).
    A frozen msgspec Struct rather than a frozen dataclass: made once per report, 10-17
    thousand times a second, it is built in a sixth of the time (timeit, 0.22 vs 1.38 µs).
    """

    driver_id: str
    latitude: float
    longitude: float
    recorded_at: datetime  # timezone-aware UTC
    heading: float | None = None
    speed_mps: float | None = None
    accuracy_m: float | None = None

    def __post_init__(self) -> None:
        # A comparison with NaN is false, so the range checks refuse NaN (and infinities).
        if not -90.0 <= self.latitude <= 90.0:
            raise ValueError(f"latitude out of range: {self.latitude!r}")
        if not -180.0 <= self.longitude <= 180.0:
            raise ValueError(f"longitude out of range: {self.longitude!r}")
        if self.recorded_at.tzinfo is None:
            raise ValueError("recorded_at must be timezone-aware")
        heading, speed, accuracy = self.heading, self.speed_mps, self.accuracy_m
        if heading is not None and not math.isfinite(heading):
            raise ValueError(f"heading must be finite: {heading!r}")
        if speed is not None and not math.isfinite(speed):
            raise ValueError(f"speed_mps must be finite: {speed!r}")
        if accuracy is not None and not math.isfinite(accuracy):
            raise ValueError(f"accuracy_m must be finite: {accuracy!r}")


#: Metres of GPS noise allowed on top of max speed times elapsed time when judging a jump, so
#: that two fixes taken a fraction of a second apart are never "implausible".
JUMP_SLACK_M = 50.0


class Recorded(StrEnum):
    """What became of a fix."""

    LIVE = "live"  # the driver's live position now: searchable and shown to followers
    OLDER = "older"  # not newer than the stored one (late or duplicate): trace only
    IMPLAUSIBLE = "implausible"  # implied speed from the live fix over the limit: trace only
    IMPRECISE = "imprecise"  # reported accuracy worse than the limit: trace only


@dataclass(frozen=True, slots=True)
class NearbyDriver:
    """A search hit: where the driver is, how far from the query point, and how fresh."""

    driver_id: str
    latitude: float
    longitude: float
    distance_m: float
    recorded_at: datetime


class DriverLocationStore(Protocol):
    """Live driver positions plus per-trip GPS traces.

    Rules shared by every adapter:

    * The live position only moves forward in time: a fix whose ``recorded_at`` is not newer
      than the stored one is ignored for the live position (phones retry and reorder).
    * While a trace is open for a driver, every fix is appended to it regardless of order;
      ``end_trace`` returns the points sorted by ``recorded_at`` with exact duplicates
      (same ``recorded_at`` and coordinates) removed.
    * ``forget`` removes the driver's live position entirely (search and ``current``); an
      open trace is left alone because the trip it belongs to may still be finishing.
    * Returned datetimes are timezone-aware UTC.

    ``announces_positions`` tells whether the store itself publishes the fixes that become
    live positions of *followed* drivers (see :meth:`follow`) to the real-time channel
    :func:`position_channel` (the Redis adapter does it inside its write script, saving the
    ingest path a round trip); when it is false the caller publishes.
    """

    announces_positions: bool

    def record(self, fix: LocationFix) -> Awaitable[Recorded]:
        """Trace ``fix`` (when a trace is open) and make it the live position, unless a
        newer-or-equal one is stored (OLDER) or reaching it from the live one would take a
        speed over the store's ``max_speed_mps`` (IMPLAUSIBLE).

        Awaitable rather than a coroutine so that a store may hand back a future it
        settles later (:class:`~ridehail.locations.coalesce.CoalescingStore` does)."""
        ...

    async def record_many(self, fixes: Sequence[LocationFix]) -> list[Recorded]:
        """The same as calling :meth:`record` for each fix in order, but batched."""
        ...

    async def follow(self, driver_id: str, *, for_s: float) -> None:
        """Someone watches this driver's position for the next ``for_s`` seconds (call again
        to keep watching). A store that announces positions announces only followed
        drivers', so pub/sub traffic grows with the watchers, not with the fleet; others
        ignore it."""
        ...

    async def trace_only(self, fix: LocationFix) -> None:
        """Add ``fix`` to the driver's open trace (if any) without touching the live one."""
        ...

    async def current(self, driver_id: str) -> LocationFix | None:
        """The live position, or ``None`` if unknown or forgotten."""
        ...

    async def nearest(
        self,
        *,
        latitude: float,
        longitude: float,
        radius_m: float,
        limit: int,
        fresh_since: datetime,
    ) -> list[NearbyDriver]:
        """Drivers within ``radius_m`` whose live fix is not older than ``fresh_since``,
        nearest first, at most ``limit``."""
        ...

    async def drivers_in_cells(
        self, cells: Collection[str], *, fresh_since: datetime
    ) -> dict[str, str]:
        """Every driver whose live fix is not older than ``fresh_since`` and lies in one of
        ``cells`` (H3 cells in hex, all of one resolution), mapped to that cell: supply per
        area for aggregates (surge), in one pass rather than a search per cell where the
        store can."""
        ...

    async def forget(self, driver_id: str) -> None:
        """Remove the driver from live search (the driver went offline)."""
        ...

    async def begin_trace(self, driver_id: str) -> None:
        """Start a trip trace, discarding any points of an earlier unfinished one."""
        ...

    async def end_trace(self, driver_id: str) -> list[LocationFix]:
        """Close the trace and return its points sorted by ``recorded_at``; ``[]`` if none."""
        ...

    async def ping(self) -> None:
        """Raise if the backing store is unreachable (used by the readiness probe)."""
        ...

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


def position_channel(driver_id: str) -> str:
    """The real-time channel on which a driver's live positions are pushed."""
    return f"driver:{driver_id}:position"


def position_message(fix: LocationFix) -> dict[str, object]:
    """What followers of a driver receive for each new live position."""
    return {
        "type": "driver.location",
        "driver_id": fix.driver_id,
        "latitude": fix.latitude,
        "longitude": fix.longitude,
        "heading": fix.heading,
        "recorded_at": fix.recorded_at.isoformat(),
    }
