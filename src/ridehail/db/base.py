from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, DateTime, MetaData, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute
from sqlalchemy.types import TypeDecorator

from ridehail.kernel.clock import as_utc

T = TypeVar("T")

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


#: Values bound in one IN list at most. A statement takes at most 32,767 bind parameters
#: on asyncpg (PostgreSQL's protocol) and 32,766 on SQLite; a city's worth of driver ids
#: (the surge updater's supply, say) is more.
IN_LIST_MAX = 10_000


def in_slices(values: Iterable[T], size: int = IN_LIST_MAX) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size``, for one IN query each."""
    it = iter(values)
    while piece := list(islice(it, size)):
        yield piece


def one_of(
    session: AsyncSession,
    column: InstrumentedAttribute[Any] | ColumnElement[Any],
    values: Iterable[Any],
) -> Iterator[ColumnElement[bool]]:
    """Conditions "``column`` is one of ``values``" (any number), one per statement to run:
    on PostgreSQL one ``= ANY(array)`` with the values as a single array parameter (an IN
    list of 10,000 took tens of milliseconds of the event loop to render and bind, and
    PostgreSQL as long again to parse); elsewhere IN lists of at most IN_LIST_MAX."""
    listed = list(values)
    if not listed:
        return
    if is_postgresql(session):
        yield column == any_(bindparam(None, listed, type_=ARRAY(column.type)))
        return
    for piece in in_slices(listed):
        yield column.in_(piece)


async def values_among(
    session: AsyncSession,
    column: InstrumentedAttribute[Any],
    values: Iterable[Any],
    *where: ColumnElement[bool],
) -> set[Any]:
    """The distinct values of ``column`` that are among ``values`` (any number, see
    :func:`one_of`) in rows meeting every condition of ``where``."""
    found: set[Any] = set()
    for among in one_of(session, column, values):
        found.update((await session.execute(select(column).where(among, *where))).scalars())
    return found
