"""Stored responses of requests sent with an ``Idempotency-Key`` (API.md, "Idempotency").

One row per (caller, key): claimed when the first request starts (``in_progress``), holding
its response once it ends (``done``), kept 24 hours. The claim is an INSERT that only one of
any number of concurrent requests wins; the others see the row and answer 409 (running),
422 (another body) or the stored response (a retry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Index, Integer, LargeBinary, String, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from ridehail.db.base import Base, UTCDateTime, upsert_into

#: How long a stored response is replayed.
RETENTION = timedelta(hours=24)
#: A claim whose request never finished (its process died) is taken over after this long.
ABANDONED_AFTER = timedelta(seconds=60)

IN_PROGRESS = "in_progress"
DONE = "done"


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    caller: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: SHA-256 of method, path and body: a retry must be the same request.
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(12))
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)


@dataclass(frozen=True, slots=True)
class Stored:
    fingerprint: str
    state: str
    status: int | None
    content_type: str | None
    body: bytes | None


async def claim(
    session: AsyncSession, *, caller: str, key: str, fingerprint: str, now: datetime
) -> Stored | None:
    """Claim (caller, key) for a request about to run: None if this request won it (run it),
    else what is stored. An expired record, or a claim abandoned by a dead process, is
    taken over."""
    values = {
        "caller": caller,
        "key": key,
        "fingerprint": fingerprint,
        "state": IN_PROGRESS,
        "created_at": now,
        "expires_at": now + RETENTION,
    }
    won = await session.execute(
        upsert_into(session, IdempotencyRecord).values(values).on_conflict_do_nothing()
    )
    if won.rowcount:  # type: ignore[attr-defined]
        return None
    taken_over = await session.execute(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.caller == caller,
            IdempotencyRecord.key == key,
            (IdempotencyRecord.expires_at <= now)
            | (
                (IdempotencyRecord.state == IN_PROGRESS)
                & (IdempotencyRecord.created_at <= now - ABANDONED_AFTER)
            ),
        )
        .values(status=None, content_type=None, body=None, **values)
    )
    if taken_over.rowcount:  # type: ignore[attr-defined]
        return None
    row = (
        await session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.caller == caller, IdempotencyRecord.key == key
            )
        )
    ).scalar_one()
    return Stored(row.fingerprint, row.state, row.status, row.content_type, row.body)


async def complete(
    session: AsyncSession,
    *,
    caller: str,
    key: str,
    status: int,
    content_type: str | None,
    body: bytes,
) -> None:
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.caller == caller, IdempotencyRecord.key == key)
        .values(state=DONE, status=status, content_type=content_type, body=body)
    )


async def release(session: AsyncSession, *, caller: str, key: str) -> None:
    """Forget a claim whose request failed on our side (5xx), so a retry runs again."""
    await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.caller == caller, IdempotencyRecord.key == key
        )
    )


async def prune(session: AsyncSession, *, now: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
