"""Relational storage shared by every domain: engine, session, unit of work, outbox."""

from ridehail.db.base import Base, UTCDateTime, is_postgresql, upsert_into
from ridehail.db.engine import Database
from ridehail.db.outbox import OutboxEvent, add_event, staged_events

__all__ = [
    "Base",
    "Database",
    "OutboxEvent",
    "UTCDateTime",
    "add_event",
    "is_postgresql",
    "staged_events",
    "upsert_into",
]
