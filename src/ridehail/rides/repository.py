"""Every query of the rides domain."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.db import one_of, values_among
from ridehail.kernel.errors import Conflict
from ridehail.rides.domain import DRIVER_ACTIVE, RideStatus
from ridehail.rides.models import Ride


async def add(session: AsyncSession, ride: Ride) -> Ride:
    session.add(ride)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("you already have a ride in progress") from exc
    return ride


async def get(session: AsyncSession, ride_id: str) -> Ride | None:
    return await session.get(Ride, ride_id, populate_existing=True)


async def get_many(session: AsyncSession, ride_ids: Collection[str]) -> dict[str, Ride]:
    found: dict[str, Ride] = {}
    for among in one_of(session, Ride.id, ride_ids):
        result = await session.execute(
            select(Ride).where(among).execution_options(populate_existing=True)
        )
        found.update((ride.id, ride) for ride in result.scalars())
    return found


async def searching_since_before(session: AsyncSession, before: datetime, limit: int) -> list[str]:
    result = await session.execute(
        select(Ride.id)
        .where(Ride.status == RideStatus.SEARCHING.value, Ride.updated_at < before)
        .order_by(Ride.updated_at)
        .limit(limit)
    )
    return list(result.scalars())


async def get_for_update(session: AsyncSession, ride_id: str) -> Ride | None:
    result = await session.execute(
        select(Ride)
        .where(Ride.id == ride_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def transition(
    session: AsyncSession,
    *,
    ride_id: str,
    expected: RideStatus,
    values: dict[str, Any],
    driver_id: str | None = None,
) -> bool:
    """Apply ``values`` only if the ride is still in ``expected`` (and, when given, still
    belongs to ``driver_id``). The guard lives in the UPDATE's WHERE clause, so of two
    concurrent transitions from one status exactly one updates the row; the other updates
    nothing. Returns whether this call won."""
    stmt = update(Ride).where(Ride.id == ride_id, Ride.status == expected.value)
    if driver_id is not None:
        stmt = stmt.where(Ride.driver_id == driver_id)
    try:
        result = await session.execute(
            stmt.values(**values).execution_options(synchronize_session=False)
        )
    except IntegrityError as exc:
        raise Conflict("the driver already has an active ride") from exc
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def list_rides(
    session: AsyncSession,
    *,
    rider_id: str | None,
    driver_id: str | None,
    status: RideStatus | None,
    before_id: str | None,
    limit: int,
) -> list[Ride]:
    """Newest first (ids sort by creation time), keyset-paginated by id."""
    stmt = select(Ride)
    if rider_id is not None:
        stmt = stmt.where(Ride.rider_id == rider_id)
    if driver_id is not None:
        stmt = stmt.where(Ride.driver_id == driver_id)
    if status is not None:
        stmt = stmt.where(Ride.status == status.value)
    if before_id is not None:
        stmt = stmt.where(Ride.id < before_id)
    result = await session.execute(stmt.order_by(Ride.id.desc()).limit(limit))
    return list(result.scalars())


async def drivers_with_active_rides(session: AsyncSession, driver_ids: Collection[str]) -> set[str]:
    """Those of ``driver_ids`` (any number) on a ride now."""
    on_a_ride = Ride.status.in_([s.value for s in DRIVER_ACTIVE])
    return await values_among(session, Ride.driver_id, driver_ids, on_a_ride)


async def pickup_demand(session: AsyncSession, since: datetime) -> dict[str, int]:
    """Rides requested since ``since``, counted by the pickup cell they were priced in."""
    result = await session.execute(
        select(Ride.pickup_cell, func.count())
        .where(Ride.created_at >= since, Ride.pickup_cell.is_not(None))
        .group_by(Ride.pickup_cell)
    )
    return {cell: int(n) for cell, n in result.all() if cell is not None}
