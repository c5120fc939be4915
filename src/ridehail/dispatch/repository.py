"""Every query of the dispatch domain."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.dispatch.models import Offer, Search

PENDING = "pending"


async def get_search(session: AsyncSession, ride_id: str) -> Search | None:
    return await session.get(Search, ride_id)


async def lock_searches(
    session: AsyncSession, ride_ids: Collection[str], *, skip_locked: bool = False
) -> set[str]:
    """Lock the searches of ``ride_ids`` in ride-id order (one global order, so two
    transactions locking several searches never wait on each other in a cycle). Returns
    the ids locked; with ``skip_locked``, searches busy elsewhere are left out."""
    if not ride_ids:
        return set()
    stmt = select(Search.ride_id).where(Search.ride_id.in_(sorted(ride_ids)))
    stmt = stmt.order_by(Search.ride_id).with_for_update(skip_locked=skip_locked)
    return set((await session.execute(stmt)).scalars())


async def existing_searches(session: AsyncSession, ride_ids: Collection[str]) -> set[str]:
    if not ride_ids:
        return set()
    stmt = select(Search.ride_id).where(Search.ride_id.in_(list(ride_ids)))
    return set((await session.execute(stmt)).scalars())


async def claim_due_search(session: AsyncSession, now: datetime) -> Search | None:
    """The most overdue active search, locked for this transaction. SKIP LOCKED lets many
    dispatchers share the table as a work queue (PostgreSQL); SQLite has one writer anyway."""
    stmt = (
        select(Search)
        .where(Search.state == "active", Search.next_check_at <= now)
        .order_by(Search.next_check_at)
        .limit(1)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    result = await session.execute(stmt)
    return result.scalar_one_or_none()


async def pending_offers_for_ride(session: AsyncSession, ride_id: str) -> list[Offer]:
    result = await session.execute(
        select(Offer).where(Offer.ride_id == ride_id, Offer.status == PENDING)
    )
    return list(result.scalars())


async def drivers_offered_ride(session: AsyncSession, ride_id: str) -> set[str]:
    result = await session.execute(select(Offer.driver_id).where(Offer.ride_id == ride_id))
    return set(result.scalars())


async def drivers_with_pending_offers(
    session: AsyncSession, driver_ids: Collection[str], now: datetime
) -> set[str]:
    if not driver_ids:
        return set()
    result = await session.execute(
        select(Offer.driver_id).where(
            Offer.driver_id.in_(list(driver_ids)),
            Offer.status == PENDING,
            Offer.expires_at > now,
        )
    )
    return set(result.scalars())


async def open_offers_for_driver(
    session: AsyncSession, driver_id: str, now: datetime
) -> list[Offer]:
    result = await session.execute(
        select(Offer)
        .where(Offer.driver_id == driver_id, Offer.status == PENDING, Offer.expires_at > now)
        .order_by(Offer.created_at)
    )
    return list(result.scalars())


async def respond(
    session: AsyncSession, *, ride_id: str, driver_id: str, status: str, now: datetime
) -> bool:
    """Move the driver's open offer for the ride to ``status``; False if none was open.
    Conditional on the row, so a response races safely with expiry and withdrawal."""
    result = await session.execute(
        update(Offer)
        .where(
            Offer.ride_id == ride_id,
            Offer.driver_id == driver_id,
            Offer.status == PENDING,
            Offer.expires_at > now,
        )
        .values(status=status, responded_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def rides_with_overdue_offers(session: AsyncSession, now: datetime) -> set[str]:
    result = await session.execute(
        select(Offer.ride_id).where(Offer.status == PENDING, Offer.expires_at <= now).distinct()
    )
    return set(result.scalars())


async def expire_offers(session: AsyncSession, ride_ids: Collection[str], now: datetime) -> int:
    """Mark the overdue pending offers of ``ride_ids`` expired."""
    if not ride_ids:
        return 0
    result = await session.execute(
        update(Offer)
        .where(
            Offer.ride_id.in_(list(ride_ids)),
            Offer.status == PENDING,
            Offer.expires_at <= now,
        )
        .values(status="expired")
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def withdraw_offers(
    session: AsyncSession, *, ride_id: str | None = None, driver_id: str | None = None
) -> int:
    stmt = update(Offer).where(Offer.status == PENDING)
    if ride_id is not None:
        stmt = stmt.where(Offer.ride_id == ride_id)
    if driver_id is not None:
        stmt = stmt.where(Offer.driver_id == driver_id)
    result = await session.execute(
        stmt.values(status="withdrawn").execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def wake_searches(session: AsyncSession, ride_ids: Collection[str], now: datetime) -> None:
    if not ride_ids:
        return
    await session.execute(
        update(Search)
        .where(Search.ride_id.in_(list(ride_ids)), Search.state == "active")
        .values(next_check_at=now)
        .execution_options(synchronize_session=False)
    )
