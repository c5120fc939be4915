"""Geodesy on a spherical Earth: good to about 0.5 % for city distances, which is enough for
matching and fares (fares use the sum of many short legs, where the error is smaller still)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import h3

EARTH_RADIUS_M = 6_371_008.8
METERS_PER_DEGREE_LAT = math.pi * EARTH_RADIUS_M / 180.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in degrees."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def path_length_m(points: Iterable[tuple[float, float]]) -> float:
    """Length of a polyline of (lat, lon) points."""
    total = 0.0
    prev: tuple[float, float] | None = None
    for point in points:
        if prev is not None:
            total += haversine_m(prev[0], prev[1], point[0], point[1])
        prev = point
    return total


def denoised_path_length_m(
    points: Sequence[tuple[float, float, float | None]], *, default_accuracy_m: float = 10.0
) -> float:
    """Length of a GPS trace of (lat, lon, accuracy_m) points that ignores jitter.

    A point closer to the last kept point than the larger of their reported accuracies is
    treated as noise around a standing position and skipped, so a parked car reporting
    wandering fixes adds no distance. The last point is always counted so a trip's end is
    never cut short.
    """
    if len(points) < 2:
        return 0.0
    total = 0.0
    kept_lat, kept_lon, kept_acc = points[0]
    last_index = len(points) - 1
    for index, (lat, lon, acc) in enumerate(points[1:], start=1):
        step = haversine_m(kept_lat, kept_lon, lat, lon)
        tolerance = max(kept_acc or default_accuracy_m, acc or default_accuracy_m)
        if step < tolerance and index != last_index:
            continue
        total += step
        kept_lat, kept_lon, kept_acc = lat, lon, acc
    return total


def offset(lat: float, lon: float, *, north_m: float, east_m: float) -> tuple[float, float]:
    """The point ``north_m`` and ``east_m`` metres from (lat, lon); for short offsets."""
    new_lat = lat + north_m / METERS_PER_DEGREE_LAT
    new_lon = lon + east_m / (METERS_PER_DEGREE_LAT * max(1e-9, math.cos(math.radians(lat))))
    new_lon = (new_lon + 180.0) % 360.0 - 180.0
    return new_lat, new_lon


def coarsen(lat: float, lon: float, *, cell_m: float = 100.0) -> tuple[float, float]:
    """Snap a point to the centre of a grid cell about ``cell_m`` wide (privacy for riders)."""
    step_lat = cell_m / METERS_PER_DEGREE_LAT
    snapped_lat = (math.floor(lat / step_lat) + 0.5) * step_lat
    step_lon = cell_m / (METERS_PER_DEGREE_LAT * max(0.01, math.cos(math.radians(snapped_lat))))
    snapped_lon = (math.floor(lon / step_lon) + 0.5) * step_lon
    snapped_lon = (snapped_lon + 180.0) % 360.0 - 180.0
    return round(snapped_lat, 6), round(snapped_lon, 6)


def cell_reach_m(cell: str) -> float:
    """A radius around an H3 cell's centre (``cell`` in hex) that holds the whole cell: its
    farthest vertex, and a metre and a per cent more (the boundary between vertices is a
    geodesic, which may bulge past the chord by a little)."""
    lat, lon = h3.cell_to_latlng(cell)
    farthest = max(haversine_m(lat, lon, vlat, vlon) for vlat, vlon in h3.cell_to_boundary(cell))
    return farthest * 1.01 + 1.0
