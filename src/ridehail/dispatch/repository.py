"""Every query of the dispatch domain."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.db import is_postgresql, one_of, upsert_into, values_among
from ridehail.dispatch.models import Candidate, DriverState, Offer, Search

PENDING = "pending"
#: Answers that count towards a driver's acceptance rate (withdrawn offers do not).
ANSWERED = ("accepted", "declined", "expired")


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
    locked: set[str] = set()
    # Sorted before slicing: on SQLite the slices lock in order too.
    for among in one_of(session, Search.ride_id, sorted(ride_ids)):
        stmt = select(Search.ride_id).where(among).order_by(Search.ride_id)
        stmt = stmt.with_for_update(skip_locked=skip_locked)
        locked.update((await session.execute(stmt)).scalars())
    return locked


async def existing_searches(session: AsyncSession, ride_ids: Collection[str]) -> set[str]:
    return await values_among(session, Search.ride_id, ride_ids)


async def active_searches(session: AsyncSession, ride_ids: Collection[str]) -> set[str]:
    return await values_among(session, Search.ride_id, ride_ids, Search.state == "active")


async def claim_due_searches(session: AsyncSession, now: datetime, limit: int) -> list[Search]:
    """Up to ``limit`` due active searches, most overdue first, locked for this transaction.
    SKIP LOCKED lets many dispatchers share the table as a work queue (PostgreSQL); SQLite
    has one writer anyway."""
    stmt = (
        select(Search)
        .where(Search.state == "active", Search.next_check_at <= now)
        .order_by(Search.next_check_at)
        .limit(limit)
    )
    if is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    result = await session.execute(stmt)
    return list(result.scalars())


async def offer_history(
    session: AsyncSession, driver_ids: Collection[str]
) -> tuple[set[str], dict[str, tuple[int, int]]]:
    """Of ``driver_ids``: who holds an open offer (pending, even if overdue: the database
    refuses them another until it is marked expired), and each one's (accepted, answered)
    offer counts."""
    rows: list[Any] = []
    for among in one_of(session, Offer.driver_id, driver_ids):
        result = await session.execute(
            select(Offer.driver_id, Offer.status, func.count())
            .where(among)
            .group_by(Offer.driver_id, Offer.status)
        )
        rows.extend(result.all())
    holding: set[str] = set()
    counts: dict[str, tuple[int, int]] = {}
    for driver_id, status, n in rows:
        if status == PENDING:
            holding.add(driver_id)
        elif status in ANSWERED:
            accepted, answered = counts.get(driver_id, (0, 0))
            counts[driver_id] = (accepted + (n if status == "accepted" else 0), answered + n)
    return holding, counts


async def offered_pairs(session: AsyncSession, ride_ids: Collection[str]) -> set[tuple[str, str]]:
    """(ride, driver) pairs that already had an offer: a ride is never offered twice to one
    driver (not after a decline, an expiry or the driver giving the ride back)."""
    pairs: set[tuple[str, str]] = set()
    for among in one_of(session, Offer.ride_id, ride_ids):
        result = await session.execute(select(Offer.ride_id, Offer.driver_id).where(among))
        pairs.update((a, b) for a, b in result.all())
    return pairs


async def last_trip_ends(session: AsyncSession, driver_ids: Collection[str]) -> dict[str, datetime]:
    ends: dict[str, datetime] = {}
    for among in one_of(session, DriverState.driver_id, driver_ids):
        result = await session.execute(
            select(DriverState.driver_id, DriverState.last_trip_ended_at).where(among)
        )
        ends.update((driver_id, at) for driver_id, at in result.all())
    return ends


async def record_trip_end(session: AsyncSession, *, driver_id: str, at: datetime) -> None:
    stmt = upsert_into(session, DriverState).values(driver_id=driver_id, last_trip_ended_at=at)
    stmt = stmt.on_conflict_do_update(
        index_elements=[DriverState.driver_id], set_={"last_trip_ended_at": at}
    )
    await session.execute(stmt)


async def insert_offers(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert offers, skipping any the database refuses (the driver holds an open offer made
    meanwhile by another dispatcher, or already had this ride). Rows go in driver order, so
    two dispatchers inserting for the same drivers wait on each other instead of
    deadlocking. Returns the ids inserted."""
    if not rows:
        return set()
    ordered = sorted(rows, key=lambda r: (r["driver_id"], r["ride_id"]))
    stmt = upsert_into(session, Offer).values(ordered).on_conflict_do_nothing().returning(Offer.id)
    result = await session.execute(stmt)
    return set(result.scalars())


async def insert_searches(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """New searches; any that exists already is left alone."""
    if rows:
        await session.execute(
            upsert_into(session, Search).values(list(rows)).on_conflict_do_nothing()
        )


async def add_candidates(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    # Core executemany, not the ORM's bulk path: the log is write-only, and a round may log
    # hundreds of rows.
    if rows:
        await session.execute(cast(Table, Candidate.__table__).insert(), list(rows))


async def prune_candidates(session: AsyncSession, *, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` of the oldest dispatch log rows written before ``before``;
    returns how many. Rows are numbered in the order written, so the old ones are the first
    ids: the query walks the primary key from the start and stops at the first young row
    (it never scans the young part of the log, however large)."""
    oldest = select(Candidate.id, Candidate.considered_at).order_by(Candidate.id).limit(limit)
    rows = (await session.execute(oldest)).all()
    # Stop at the first young row: a row logged out of order (two dispatchers) waits for
    # the next pass rather than the whole log being searched for it.
    cut = next((i for i, row in enumerate(rows) if row.considered_at >= before), len(rows))
    old = [row.id for row in rows[:cut]]
    if not old:
        return 0
    await session.execute(
        delete(Candidate).where(Candidate.id.in_(old)).execution_options(synchronize_session=False)
    )
    return len(old)


async def candidates_for_ride(session: AsyncSession, ride_id: str) -> list[Candidate]:
    result = await session.execute(
        select(Candidate).where(Candidate.ride_id == ride_id).order_by(Candidate.id)
    )
    return list(result.scalars())


async def offers_for_ride(session: AsyncSession, ride_id: str) -> list[Offer]:
    result = await session.execute(
        select(Offer).where(Offer.ride_id == ride_id).order_by(Offer.created_at)
    )
    return list(result.scalars())


async def open_offers_for_rides(
    session: AsyncSession, ride_ids: Collection[str], now: datetime
) -> dict[str, list[Offer]]:
    """The pending, unexpired offers of each of ``ride_ids``."""
    found: dict[str, list[Offer]] = {}
    for among in one_of(session, Offer.ride_id, ride_ids):
        result = await session.execute(
            select(Offer).where(among, Offer.status == PENDING, Offer.expires_at > now)
        )
        for offer in result.scalars():
            found.setdefault(offer.ride_id, []).append(offer)
    return found


async def drivers_offered_ride(session: AsyncSession, ride_id: str) -> set[str]:
    result = await session.execute(select(Offer.driver_id).where(Offer.ride_id == ride_id))
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
    expired = 0
    for among in one_of(session, Offer.ride_id, ride_ids):
        result = await session.execute(
            update(Offer)
            .where(among, Offer.status == PENDING, Offer.expires_at <= now)
            .values(status="expired")
            .execution_options(synchronize_session=False)
        )
        expired += int(result.rowcount)  # type: ignore[attr-defined]
    return expired


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
    for among in one_of(session, Search.ride_id, ride_ids):
        await session.execute(
            update(Search)
            .where(among, Search.state == "active")
            .values(next_check_at=now)
            .execution_options(synchronize_session=False)
        )
