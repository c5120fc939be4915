"""Location use cases: ingest rules, nearby search, trip distance."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from prometheus_client import Counter

from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import InvalidRequest
from ridehail.kernel.geo import denoised_path_length_m
from ridehail.locations.ports import (
    DriverLocationStore,
    LocationFix,
    NearbyDriver,
    Recorded,
    position_channel,
    position_message,
)
from ridehail.messaging import PubSub
from ridehail.tally import DEFERRED

FIXES = Counter(
    "ridehail_location_fixes_total", "Location fixes by what became of them", ["outcome"]
)
#: One child per outcome, looked up once (a label lookup costs more than the increment).
_FIXES_BY_OUTCOME = {outcome: FIXES.labels(outcome.value) for outcome in Recorded}

#: A device clock may run a little ahead; more than this and the point is refused.
MAX_CLOCK_SKEW = timedelta(seconds=30)


def _imprecise(fix: LocationFix, max_accuracy_m: float | None) -> bool:
    return (
        max_accuracy_m is not None
        and fix.accuracy_m is not None
        and fix.accuracy_m > max_accuracy_m
    )


def _refuse_future(fixes: Sequence[LocationFix], now: datetime) -> None:
    latest = now + MAX_CLOCK_SKEW
    if any(f.recorded_at > latest for f in fixes):
        raise InvalidRequest("recorded_at is in the future")


async def ingest(
    store: DriverLocationStore,
    fix: LocationFix,
    *,
    feed: PubSub | None = None,
    now: datetime | None = None,
    max_accuracy_m: float | None = None,
) -> Recorded:
    """Store one fix by the rules for messy GPS data, and push it to whoever follows the
    driver live if it became the live position.

    A fix too far in the future is refused; one less accurate than ``max_accuracy_m`` only
    joins the trip trace; the store keeps older fixes and implausible jumps out of the
    live position (see :class:`Recorded`)."""
    now = now or utcnow()
    if fix.recorded_at > now + MAX_CLOCK_SKEW:
        raise InvalidRequest("recorded_at is in the future")
    if _imprecise(fix, max_accuracy_m):
        await store.trace_only(fix)
        outcome = Recorded.IMPRECISE
    else:
        outcome = await store.record(fix)
    DEFERRED.inc(_FIXES_BY_OUTCOME[outcome])
    if outcome is Recorded.LIVE and feed is not None and not store.announces_positions:
        channel = position_channel(fix.driver_id)
        if feed.may_have_listeners(channel):
            await feed.publish(channel, position_message(fix))
    return outcome


async def ingest_many(
    store: DriverLocationStore,
    fixes: Sequence[LocationFix],
    *,
    feed: PubSub | None = None,
    now: datetime | None = None,
    max_accuracy_m: float | None = None,
) -> list[Recorded]:
    """A batch of buffered fixes of one driver: all or nothing, each by the rules of
    :func:`ingest`, in time order; followers are sent the newest one that went live."""
    now = now or utcnow()
    _refuse_future(fixes, now)
    ordered = sorted(fixes, key=lambda f: f.recorded_at)
    imprecise = [_imprecise(f, max_accuracy_m) for f in ordered]
    for fix, blurry in zip(ordered, imprecise, strict=True):
        if blurry:
            await store.trace_only(fix)
    precise = [f for f, blurry in zip(ordered, imprecise, strict=True) if not blurry]
    recorded = iter(await store.record_many(precise))
    outcomes = [Recorded.IMPRECISE if blurry else next(recorded) for blurry in imprecise]
    for outcome in outcomes:
        DEFERRED.inc(_FIXES_BY_OUTCOME[outcome])
    live = [f for f, o in zip(ordered, outcomes, strict=True) if o is Recorded.LIVE]
    if feed is not None and live and not store.announces_positions:
        await feed.publish(position_channel(live[-1].driver_id), position_message(live[-1]))
    return outcomes


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
