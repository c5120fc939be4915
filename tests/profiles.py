"""Building a ridehail app on either profile for a test."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

from ridehail.db.migrate import upgrade
from ridehail.settings import Settings

T = TypeVar("T")

FAST_SETTINGS: dict[str, Any] = {
    "jwt_secret": "test-secret-with-enough-entropy-0123456789",
    "argon2_time_cost": 1,
    "argon2_memory_kib": 64,
    "dispatch_tick_s": 0.05,
    "relay_poll_s": 0.05,
    "dispatch_offer_ttl_s": 5.0,
    "dispatch_search_timeout_s": 20.0,
    "dispatch_retry_interval_s": 0.2,
    # Walk-through tests compress a trip into milliseconds; the speed rule has its own
    # tests at the real limit (tests/integration/test_location_rules.py).
    "location_max_speed_kmh": 1_000_000.0,
}


def settings_for(
    *, database_url: str, redis_url: str | None, key_prefix: str, **overrides: Any
) -> Settings:
    values = {**FAST_SETTINGS, **overrides}
    return Settings(
        database_url=database_url, redis_url=redis_url, redis_key_prefix=key_prefix, **values
    )


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def create_database(admin_url: str) -> str:
    """A new, migrated PostgreSQL database for this test session; returns its URL."""
    name = f"ridehail_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, url)
    return url


async def drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def truncate_all(url: str) -> None:
    """Empty every table. Connections a previous test left behind are ended first, and a
    lock timeout turns any remaining wait into an error instead of a hang."""
    from ridehail.models import metadata

    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        await conn.execute("SET lock_timeout = '10s'")
        await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a private event loop in another thread (usable from
    synchronous code that is itself called from inside a running loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
