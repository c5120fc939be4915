"""Relational storage shared by every domain: engine, session, unit of work, outbox."""

from ridehail.db.base import (
    IN_LIST_MAX,
    Base,
    UTCDateTime,
    in_slices,
    is_postgresql,
    one_of,
    upsert_into,
    values_among,
)
from ridehail.db.engine import Database
from ridehail.db.outbox import OutboxEvent, add_event, staged_events

__all__ = [
    "IN_LIST_MAX",
    "Base",
    "Database",
    "OutboxEvent",
    "UTCDateTime",
    "add_event",
    "in_slices",
    "is_postgresql",
    "one_of",
    "staged_events",
    "upsert_into",
    "values_among",
]
