"""The double-entry ledger: append-only transactions whose entries sum to zero per currency.

Nothing here updates or deletes a row (on PostgreSQL a trigger refuses it, see migration
0006); a correction is a new transaction. Each transaction has a unique ``reference`` (the
capture of a payment, a refund), so one cause can never be posted twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.kernel.ids import new_id
from ridehail.payments.domain import (
    PLATFORM_COMMISSION,
    ZERO,
    Posting,
    check_balanced,
    driver_account,
)
from ridehail.payments.models import LedgerEntry, LedgerTransaction


async def post(
    session: AsyncSession,
    *,
    reference: str,
    kind: str,
    postings: Sequence[Posting],
    at: datetime,
    payment_id: str | None = None,
    ride_id: str | None = None,
    driver_id: str | None = None,
    method: str | None = None,
) -> LedgerTransaction:
    """Append one balanced transaction (checked here, before anything is written)."""
    check_balanced(list(postings))
    txn = LedgerTransaction(
        id=new_id("ltx"),
        reference=reference,
        kind=kind,
        payment_id=payment_id,
        ride_id=ride_id,
        driver_id=driver_id,
        method=method,
        posted_at=at,
    )
    session.add(txn)
    await session.flush()  # the unique reference refuses a second posting of one cause
    session.add_all(
        LedgerEntry(
            transaction_id=txn.id,
            account=p.account,
            amount=p.amount,
            currency=p.currency,
            line=p.line,
        )
        for p in postings
    )
    await session.flush()
    return txn


@dataclass(frozen=True, slots=True)
class EarningLine:
    """What one ride (or fee) earned a driver."""

    ride_id: str | None
    payment_id: str | None
    kind: str
    method: str | None
    currency: str
    gross: Decimal
    commission: Decimal
    net: Decimal
    cash_collected: Decimal
    posted_at: datetime


async def driver_earnings(
    session: AsyncSession, *, driver_id: str, start: datetime, end: datetime
) -> list[EarningLine]:
    """The driver's earning transactions posted in [start, end), oldest first: their net
    (what they earned), the platform's commission on it, gross = net + commission, and the
    cash they collected themselves (already in their pocket)."""
    txns = list(
        (
            await session.execute(
                select(LedgerTransaction)
                .where(
                    LedgerTransaction.driver_id == driver_id,
                    LedgerTransaction.posted_at >= start,
                    LedgerTransaction.posted_at < end,
                )
                .order_by(LedgerTransaction.posted_at, LedgerTransaction.id)
            )
        ).scalars()
    )
    entries = await _entries_of(session, [t.id for t in txns])
    account = driver_account(driver_id)
    lines = []
    for txn in txns:
        mine = entries.get(txn.id, [])
        if not any(e.account == account for e in mine):
            continue
        net = -sum((e.amount for e in mine if e.account == account and e.line == "earning"), ZERO)
        commission = -sum((e.amount for e in mine if e.account == PLATFORM_COMMISSION), ZERO)
        cash = sum(
            (e.amount for e in mine if e.account == account and e.line == "cash_collected"), ZERO
        )
        lines.append(
            EarningLine(
                ride_id=txn.ride_id,
                payment_id=txn.payment_id,
                kind=txn.kind,
                method=txn.method,
                currency=mine[0].currency,
                gross=net + commission,
                commission=commission,
                net=net,
                cash_collected=cash,
                posted_at=txn.posted_at,
            )
        )
    return lines


@dataclass(slots=True)
class DailyPayable:
    day: date
    driver_id: str
    currency: str
    net_payable: Decimal = ZERO
    transactions: int = 0
    ids: set[str] = field(default_factory=set)


async def daily_payables(
    session: AsyncSession, *, start: datetime, end: datetime, zone: tzinfo
) -> list[DailyPayable]:
    """Per day (in ``zone``) and driver: what the platform owes the driver from the
    transactions posted that day (negative: the driver owes, e.g. commission on cash)."""
    rows = await session.execute(
        select(
            LedgerTransaction.id,
            LedgerTransaction.posted_at,
            LedgerTransaction.driver_id,
            LedgerEntry,
        )
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(
            LedgerTransaction.driver_id.is_not(None),
            LedgerTransaction.posted_at >= start,
            LedgerTransaction.posted_at < end,
        )
    )
    by_key: dict[tuple[date, str, str], DailyPayable] = {}
    for txn_id, posted_at, driver_id, entry in rows:
        if driver_id is None or entry.account != driver_account(driver_id):
            continue
        day = posted_at.astimezone(zone).date()
        key = (day, driver_id, entry.currency)
        item = by_key.setdefault(key, DailyPayable(day, driver_id, entry.currency))
        item.net_payable -= entry.amount  # credits (negative) are owed to the driver
        item.ids.add(txn_id)
    for item in by_key.values():
        item.transactions = len(item.ids)
    return sorted(by_key.values(), key=lambda p: (p.day, p.driver_id, p.currency))


async def _entries_of(
    session: AsyncSession, txn_ids: Sequence[str]
) -> dict[str, list[LedgerEntry]]:
    found: dict[str, list[LedgerEntry]] = defaultdict(list)
    if not txn_ids:
        return found
    rows = await session.execute(
        select(LedgerEntry)
        .where(LedgerEntry.transaction_id.in_(list(txn_ids)))
        .order_by(LedgerEntry.id)
    )
    for entry in rows.scalars():
        found[entry.transaction_id].append(entry)
    return found


async def entries_for(session: AsyncSession, *, reference: str) -> list[LedgerEntry]:
    txn = (
        await session.execute(
            select(LedgerTransaction).where(LedgerTransaction.reference == reference)
        )
    ).scalar_one_or_none()
    if txn is None:
        return []
    return (await _entries_of(session, [txn.id]))[txn.id]
