"""Engine and unit of work. A request or a job opens one transaction and commits it once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ridehail.db.outbox import wrote_events

log = structlog.get_logger("ridehail.db")

READ_ONLY = "ridehail_read_only"
#: PostgreSQL NOTIFY channel: a transaction that wrote outbox events signals it on commit,
#: so relays in other processes publish at once instead of at their next poll.
OUTBOX_CHANNEL = "ridehail_outbox"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event (below) issue BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    """Writers take SQLite's write lock when they begin, not when they first write: a
    deferred transaction that reads and then writes fails with "database is locked" if
    another writer committed in between, where an immediate one simply waits its turn."""
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, pool_size: int = 20, pre_ping: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # A ping per checkout costs a round trip per transaction; without it a connection
        # broken by a database restart fails one transaction and is then discarded.
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
    )


class Database:
    """Owns the engine; hands out units of work (one session, one transaction)."""

    def __init__(self, url: str, *, pool_size: int = 20, pre_ping: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, pre_ping=pre_ping)
        self.dialect = self.engine.dialect.name
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._after_commit: list[Callable[[AsyncSession], None]] = []
        self._before_commit: list[Callable[[AsyncSession], Awaitable[None]]] = []
        self._notify = self.dialect == "postgresql"

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def before_commit(self, callback: Callable[[AsyncSession], Awaitable[None]]) -> None:
        """Run ``await callback(session)`` in every transaction just before it commits, as
        part of it (a domain reacting to another's staged events atomically)."""
        self._before_commit.append(callback)

    def on_commit(self, callback: Callable[[AsyncSession], None]) -> None:
        """Run ``callback(session)`` after every successful commit (e.g. nudge the relay)."""
        self._after_commit.append(callback)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed when the block exits cleanly, rolled back otherwise."""
        async with self._sessions() as session:
            try:
                yield session
                for hook in self._before_commit:
                    await hook(session)
                if self._notify and wrote_events(session):
                    # Delivered by PostgreSQL only if (and when) the transaction commits.
                    await session.execute(text(f"NOTIFY {OUTBOX_CHANNEL}"))
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            for callback in self._after_commit:
                callback(session)

    @asynccontextmanager
    async def read_only(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only; objects loaded in it remain usable afterwards."""
        async with self._sessions() as session:
            try:
                await session.connection(execution_options={READ_ONLY: True})
                yield session
            finally:
                # Detach what was read so it stays readable after the block (a rollback
                # would expire it), then end the transaction.
                session.expunge_all()
                await session.rollback()

    @asynccontextmanager
    async def listening(
        self, channel: str, callback: Callable[[], None]
    ) -> AsyncIterator[asyncio.Event]:
        """Call ``callback`` on every NOTIFY on ``channel`` while the block runs (PostgreSQL
        only). Holds one dedicated connection outside the pool; the event it yields is set
        if that connection is lost."""
        dsn = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn)
        lost = asyncio.Event()

        def on_notify(*_args: object) -> None:
            callback()

        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(channel, on_notify)
            yield lost
        finally:
            await conn.close()

    async def listen(self, channel: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` on every NOTIFY on ``channel``, and once on every (re)connect
        for whatever was sent while not listening; runs until cancelled, re-opening a lost
        connection after a second."""
        while True:
            try:
                async with self.listening(channel, callback) as lost:
                    callback()
                    await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listen_failed", channel=channel, error=str(exc))
            await asyncio.sleep(1.0)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
