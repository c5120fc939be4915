from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ridehail.app import create_app
from ridehail.db.migrate import upgrade
from tests import profiles
from tests.api.client import Api

PROFILES = ["embedded", "production"]


@pytest.fixture(scope="session")
def pg_database(postgres_url: str) -> Iterator[str]:
    """One migrated PostgreSQL database for the session's API tests (sync, so that a
    profile-dependent fixture can ask for it lazily from inside the event loop)."""
    url = profiles.run_blocking(profiles.create_database(postgres_url))
    yield url
    profiles.run_blocking(profiles.drop_database(postgres_url, url))


@pytest.fixture(params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


AppFactory = Callable[..., Any]


@pytest.fixture
async def make_api(
    request: pytest.FixtureRequest, profile: str, tmp_path: Path, redis_url: str
) -> AsyncIterator[AppFactory]:
    """``async with make_api(**settings) as api``: a started app on this test's profile."""
    prefix = f"rhtest:{uuid.uuid4().hex[:12]}:"
    if profile == "production":
        database_url = request.getfixturevalue("pg_database")
        await profiles.truncate_all(database_url)
        redis: str | None = redis_url
    else:
        database_url = f"sqlite+aiosqlite:///{tmp_path}/ridehail.db"
        await asyncio.to_thread(upgrade, database_url)
        redis = None

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Api]:
        settings = profiles.settings_for(
            database_url=database_url, redis_url=redis, key_prefix=prefix, **overrides
        )
        app = create_app(settings, access_log=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield Api(client, app)

    yield factory
    if redis is not None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(redis)
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def api(make_api: AppFactory) -> AsyncIterator[Api]:
    async with make_api() as client:
        yield client


@pytest.fixture
def app_of(api: Api) -> FastAPI:
    return api.app
