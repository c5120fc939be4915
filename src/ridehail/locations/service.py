"""Location use cases: ingest rules, nearby search, trip distance."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import InvalidRequest
from ridehail.kernel.geo import denoised_path_length_m
from ridehail.locations.ports import DriverLocationStore, LocationFix, NearbyDriver
from ridehail.messaging import PubSub

#: A device clock may run a little ahead; more than this and the point is refused.
MAX_CLOCK_SKEW = timedelta(seconds=30)


def position_channel(driver_id: str) -> str:
    return f"driver:{driver_id}:position"


def position_message(fix: LocationFix) -> dict[str, object]:
    return {
        "type": "driver.location",
        "driver_id": fix.driver_id,
        "latitude": fix.latitude,
        "longitude": fix.longitude,
        "heading": fix.heading,
        "recorded_at": fix.recorded_at.isoformat(),
    }


async def ingest(
    store: DriverLocationStore,
    fix: LocationFix,
    *,
    feed: PubSub | None = None,
    now: datetime | None = None,
) -> None:
    """Validate and store one fix, then push it to whoever follows this driver live."""
    now = now or utcnow()
    if fix.recorded_at > now + MAX_CLOCK_SKEW:
        raise InvalidRequest("recorded_at is in the future")
    await store.record(fix)
    if feed is not None:
        await feed.publish(position_channel(fix.driver_id), position_message(fix))


async def ingest_many(
    store: DriverLocationStore,
    fixes: Sequence[LocationFix],
    *,
    feed: PubSub | None = None,
    now: datetime | None = None,
) -> None:
    """A batch of buffered fixes of one driver: all or nothing. Each follows the rules of a
    single fix (the newest becomes the live position; older ones only join an open trace);
    followers are sent the newest one only."""
    now = now or utcnow()
    if any(f.recorded_at > now + MAX_CLOCK_SKEW for f in fixes):
        raise InvalidRequest("a recorded_at in the batch is in the future")
    await store.record_many(fixes)
    if feed is not None and fixes:
        newest = max(fixes, key=lambda f: f.recorded_at)
        await feed.publish(position_channel(newest.driver_id), position_message(newest))


async def nearby(
    store: DriverLocationStore,
    *,
    latitude: float,
    longitude: float,
    radius_m: float,
    limit: int,
    stale_after_s: float,
) -> list[NearbyDriver]:
    fresh_since = utcnow() - timedelta(seconds=stale_after_s)
    return await store.nearest(
        latitude=latitude,
        longitude=longitude,
        radius_m=radius_m,
        limit=limit,
        fresh_since=fresh_since,
    )


def trace_distance_m(
    points: Sequence[LocationFix], *, since: datetime | None = None
) -> float | None:
    """Distance covered by a trip trace, or None when it has too few points to tell.

    With ``since`` (the trip's start), the trace runs from the last fix taken at or before
    it (where the driver was when the trip began) through every later fix; fixes from
    before that, delivered late, are not part of the trip.
    """
    ordered = sorted(points, key=lambda p: p.recorded_at)
    if since is not None:
        before = [p for p in ordered if p.recorded_at <= since]
        ordered = before[-1:] + [p for p in ordered if p.recorded_at > since]
    if len(ordered) < 2:
        return None
    return denoised_path_length_m([(p.latitude, p.longitude, p.accuracy_m) for p in ordered])
