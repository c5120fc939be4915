"""The transactional outbox: events written in the same transaction as the change they
describe, published to the event bus afterwards by the relay."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from ridehail.contracts import IntegrationEvent
from ridehail.db.base import Base, UTCDateTime
from ridehail.kernel.clock import utcnow

OUTBOX_FLAG = "ridehail.outbox.written"
STAGED = "ridehail.outbox.staged"


class OutboxEvent(Base):
    __tablename__ = "outbox_events"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    topic: Mapped[str] = mapped_column(String(100))
    aggregate_id: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index(
            "ix_outbox_events_unpublished",
            "seq",
            postgresql_where=published_at.is_(None),
            sqlite_where=published_at.is_(None),
        ),
    )


def add_event(session: AsyncSession, event: IntegrationEvent) -> None:
    """Stage ``event`` in the caller's transaction; it is published only if that commits."""
    session.add(
        OutboxEvent(
            event_id=event.event_id,
            topic=event.topic,
            aggregate_id=event.aggregate_id,
            payload=event.to_payload(),
            created_at=utcnow(),
        )
    )
    session.info[OUTBOX_FLAG] = True
    session.info.setdefault(STAGED, []).append(event)


def wrote_events(session: AsyncSession) -> bool:
    return bool(session.info.get(OUTBOX_FLAG))


def staged_events(session: AsyncSession) -> list[IntegrationEvent]:
    """The events this transaction has written so far (for before-commit reactions)."""
    return list(session.info.get(STAGED, ()))
