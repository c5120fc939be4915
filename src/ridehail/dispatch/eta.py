"""Pickup-time estimates: the port dispatch ranks by, and its default adapter.

The default needs no map: the straight-line distance times a detour factor (streets are not
straight; 1.3 is a common rule of thumb for road over crow-fly distance in cities, assumed,
not measured here), divided by an assumed speed for the hour of the day in the city's own
time zone (slower in the morning and evening peaks). A road-network provider (routing
over a street graph) plugs in through the same port, answering many pairs per call so that
it can batch its work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from ridehail.kernel.geo import haversine_m

#: A (latitude, longitude) pair in degrees.
Point = tuple[float, float]

#: Assumed door-to-door speeds in km/h by local hour (a plausible city profile, not fitted
#: to data): free-flowing at night, slowest in the morning (7-9) and evening (16-19) peaks.
DEFAULT_SPEEDS_KMH: tuple[float, ...] = (
    38, 40, 40, 40, 38, 34,  # 00-05
    28, 20, 18, 22, 26, 26,  # 06-11
    25, 25, 25, 24, 21, 19,  # 12-17
    19, 23, 28, 30, 33, 35,  # 18-23
)  # fmt: skip


class EtaProvider(Protocol):
    """Estimated driving time in seconds from each ``origin`` to its ``destination``."""

    async def travel_times_s(
        self, pairs: Sequence[tuple[Point, Point]], *, at: datetime
    ) -> list[float]: ...


@dataclass(frozen=True, slots=True)
class StraightLineEta:
    detour_factor: float = 1.3
    speeds_kmh: tuple[float, ...] = DEFAULT_SPEEDS_KMH
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def __post_init__(self) -> None:
        if len(self.speeds_kmh) != 24 or min(self.speeds_kmh) <= 0:
            raise ValueError("speeds_kmh needs 24 positive hourly speeds")
        if self.detour_factor < 1:
            raise ValueError("detour_factor must be at least 1")

    def speed_mps(self, at: datetime) -> float:
        return self.speeds_kmh[at.astimezone(self.timezone).hour] / 3.6

    def seconds_for(self, distance_m: float, *, at: datetime) -> float:
        return distance_m * self.detour_factor / self.speed_mps(at)

    async def travel_times_s(
        self, pairs: Sequence[tuple[Point, Point]], *, at: datetime
    ) -> list[float]:
        factor = self.detour_factor / self.speed_mps(at)
        return [haversine_m(a[0], a[1], b[0], b[1]) * factor for a, b in pairs]
