"""The migrations build exactly the schema the models describe, on both databases, and
step down and up again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from ridehail.db.migrate import alembic_config, upgrade
from ridehail.models import metadata
from tests.profiles import create_database, drop_database


async def _differences(url: str) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()


async def _check(url: str) -> None:
    assert await _differences(url) == []
    await asyncio.to_thread(command.downgrade, alembic_config(url), "base")
    await asyncio.to_thread(upgrade, url)
    assert await _differences(url) == []


async def test_postgresql_schema_matches_the_models(postgres_url: str) -> None:
    url = await create_database(postgres_url)  # migrated to head
    try:
        await _check(url)
    finally:
        await drop_database(postgres_url, url)


async def test_sqlite_schema_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
    await asyncio.to_thread(upgrade, url)
    await _check(url)
