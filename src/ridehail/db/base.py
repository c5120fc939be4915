from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, MetaData
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from ridehail.kernel.clock import as_utc

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are always aware UTC in Python, whichever database stores them.

    PostgreSQL keeps `timestamptz`; SQLite keeps naive UTC text, which still compares
    correctly in SQL because every value is written in the same zone and format.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value)


def is_postgresql(session: AsyncSession) -> bool:
    """Whether ``session`` talks to PostgreSQL (else the embedded SQLite)."""
    return session.bind is not None and session.bind.dialect.name == "postgresql"


def upsert_into(session: AsyncSession, table: Any) -> Any:
    """An INSERT into ``table`` that supports ON CONFLICT (``on_conflict_do_nothing`` /
    ``on_conflict_do_update``), in the dialect of ``session``'s database."""
    return (pg_insert if is_postgresql(session) else sqlite_insert)(table)
