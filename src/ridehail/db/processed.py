"""Consumer-side idempotency: each consumer records the event ids it has applied, in the
same transaction as the effects, so a redelivered event changes nothing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import PrimaryKeyConstraint, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from ridehail.db.base import Base, UTCDateTime, upsert_into
from ridehail.kernel.clock import utcnow


class ProcessedEvent(Base):
    __tablename__ = "messaging_processed_events"

    consumer: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(40))
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (PrimaryKeyConstraint("consumer", "event_id"),)


async def first_time(session: AsyncSession, *, consumer: str, event_id: str) -> bool:
    """Record that ``consumer`` handles ``event_id``; False if it already did."""
    stmt = (
        upsert_into(session, ProcessedEvent)
        .values(consumer=consumer, event_id=event_id, processed_at=utcnow())
        .on_conflict_do_nothing()
    )
    result = await session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]
