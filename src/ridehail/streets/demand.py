"""Where and when people want rides: demand by time of day and trip ends drawn around the
city's hotspots. Deterministic for a seed; pure (no I/O), for the simulator and its tests.

The daily shape is a base rate plus a morning and an evening peak (Gaussian bumps at 08:00
and 17:30 local time): the two-peak commuter profile seen in taxi and ride-hailing trip
records. The numbers are parameters, not fitted to any data set.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ridehail.kernel.geo import haversine_m, offset
from ridehail.streets.city import City
from ridehail.streets.graph import Point


@dataclass(frozen=True, slots=True)
class DemandProfile:
    """Ride requests per minute over the day (``hour`` is local time, 0-24)."""

    peak_per_min: float = 1_000.0
    #: The off-peak level as a share of the peak.
    base_share: float = 0.25
    morning_peak_h: float = 8.0
    evening_peak_h: float = 17.5
    peak_width_h: float = 1.5
    #: Overnight (0-5 h) demand falls to this share of the base.
    night_share: float = 0.3

    def __post_init__(self) -> None:
        if self.peak_per_min <= 0 or not 0 < self.base_share <= 1:
            raise ValueError("peak_per_min must be positive and base_share in (0, 1]")

    def rate_per_min(self, hour: float) -> float:
        hour %= 24.0
        bump = max(
            math.exp(-(((hour - peak) / self.peak_width_h) ** 2) / 2)
            for peak in (self.morning_peak_h, self.evening_peak_h)
        )
        night = self.night_share if hour < 5.0 else 1.0
        share = self.base_share * night + (1 - self.base_share) * bump
        return self.peak_per_min * min(1.0, share)

    def arrivals(self, rng: random.Random, *, start_h: float, minutes: float) -> list[float]:
        """Request times (seconds from ``start_h``) of a non-homogeneous Poisson process
        with this rate, by thinning (Lewis and Shedler)."""
        if minutes <= 0:
            return []
        ceiling = self.peak_per_min / 60.0  # per second; the rate never exceeds the peak
        times: list[float] = []
        t = 0.0
        horizon = minutes * 60.0
        while True:
            t += rng.expovariate(ceiling)
            if t >= horizon:
                return times
            rate = self.rate_per_min(start_h + t / 3600.0) / 60.0
            if rng.random() * ceiling <= rate:
                times.append(t)


@dataclass(frozen=True)
class TripSampler:
    """Trip ends: around a hotspot (chosen by weight) with ``hotspot_share`` probability,
    else anywhere in the city; trips shorter than ``min_trip_m`` are drawn again."""

    city: City
    hotspot_share: float = 0.6
    min_trip_m: float = 800.0
    max_trip_m: float = 25_000.0

    def point(self, rng: random.Random) -> Point:
        city = self.city
        if city.hotspots and rng.random() < self.hotspot_share:
            spots = city.hotspots
            spot = rng.choices(spots, weights=[s.weight for s in spots])[0]
            north, east = rng.gauss(0, spot.spread_m), rng.gauss(0, spot.spread_m)
            lat, lon = offset(*spot.point, north_m=north, east_m=east)
        else:
            lat, lon = offset(
                *city.center,
                north_m=rng.uniform(-city.height_m / 2, city.height_m / 2),
                east_m=rng.uniform(-city.width_m / 2, city.width_m / 2),
            )
        return self._inside(lat, lon)

    def _inside(self, lat: float, lon: float) -> Point:
        (south, west), (north, east) = self.city.bounds
        return min(max(lat, south), north), min(max(lon, west), east)

    def trip(self, rng: random.Random) -> tuple[Point, Point]:
        for _ in range(100):
            a, b = self.point(rng), self.point(rng)
            if self.min_trip_m <= haversine_m(*a, *b) <= self.max_trip_m:
                return a, b
        raise RuntimeError("could not draw a trip within the length limits")  # pragma: no cover
