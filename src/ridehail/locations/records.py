"""The 48-byte fix record both stores keep: in the in-process index's traces, and in Redis
for driver states and traces.

``<qddddd``: recorded_at as epoch microseconds, latitude, longitude, heading, speed,
accuracy; NaN stands for an absent optional value (``LocationFix`` refuses NaN, so it is
free to mean None). Floats are stored as they are, so coordinates read back bit for bit.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta
from typing import Final

from ridehail.locations.ports import LocationFix

RECORD: Final = struct.Struct("<qddddd")
#: The leading bytes that identify a point: its time and coordinates.
IDENTITY: Final = struct.calcsize("<qdd")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """Exact microseconds since the epoch: an int compares faster and packs smaller."""
    return (moment - _EPOCH) // _ONE_US


def from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def encode(fix: LocationFix, recorded_us: int | None = None) -> bytes:
    """The record of ``fix`` (``recorded_us`` when the caller has it already)."""
    return RECORD.pack(
        to_us(fix.recorded_at) if recorded_us is None else recorded_us,
        fix.latitude,
        fix.longitude,
        nan_if_none(fix.heading),
        nan_if_none(fix.speed_mps),
        nan_if_none(fix.accuracy_m),
    )


def decode(driver_id: str, record: bytes) -> LocationFix:
    micros, lat, lon, heading, speed, accuracy = RECORD.unpack_from(record)
    return LocationFix(
        driver_id=driver_id,
        latitude=lat,
        longitude=lon,
        recorded_at=from_us(micros),
        heading=none_if_nan(heading),
        speed_mps=none_if_nan(speed),
        accuracy_m=none_if_nan(accuracy),
    )


def trace_points(driver_id: str, blob: bytes) -> list[LocationFix]:
    """The points of a trace (records one after another, in arrival order) sorted by time,
    exact duplicates (same time and place) dropped - the first to arrive wins - and points
    taken at the same instant kept in arrival order. Deduplication happens here rather than
    on ingest so that ingest never reads the trace; a torn tail is ignored rather than
    failing the trip."""
    size = RECORD.size
    seen: set[bytes] = set()
    points: list[LocationFix] = []
    for start in range(0, len(blob) - size + 1, size):
        record = blob[start : start + size]
        identity = record[:IDENTITY]
        if identity in seen:
            continue
        seen.add(identity)
        points.append(decode(driver_id, record))
    points.sort(key=lambda point: point.recorded_at)
    return points
