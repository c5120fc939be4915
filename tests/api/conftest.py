from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn

from ridehail.app import create_app
from ridehail.db.migrate import upgrade
from ridehail.settings import Settings
from tests import profiles
from tests.api.client import Api

PROFILES = ["embedded", "production"]

AppFactory = Callable[..., AbstractAsyncContextManager[Api]]


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


@dataclass(frozen=True)
class Backend:
    database_url: str
    redis_url: str | None
    key_prefix: str
    #: The test's own var/ (JWT secret file, the sandbox card processor's record, the
    #: email/SMS log), so no test writes into the checkout or sees another's files.
    var_dir: Path

    def settings(self, **overrides: Any) -> Settings:
        return profiles.settings_for(
            database_url=self.database_url,
            redis_url=self.redis_url,
            key_prefix=self.key_prefix,
            **{"var_dir": self.var_dir, **overrides},
        )


@pytest.fixture
async def backend(
    request: pytest.FixtureRequest, profile: str, tmp_path: Path, redis_url: str
) -> AsyncIterator[Backend]:
    """This test's stores: a fresh SQLite file, or the session's PostgreSQL database emptied
    plus a Redis key prefix of its own (deleted afterwards)."""
    prefix = f"rhtest:{uuid.uuid4().hex[:12]}:"
    if profile == "production":
        database_url = request.getfixturevalue("pg_database")
        await profiles.truncate_all(database_url)
        yield Backend(database_url, redis_url, prefix, tmp_path / "var")
        client = aioredis.from_url(redis_url)
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    else:
        database_url = f"sqlite+aiosqlite:///{tmp_path}/ridehail.db"
        await asyncio.to_thread(upgrade, database_url)
        yield Backend(database_url, None, prefix, tmp_path / "var")


@pytest.fixture
def make_api(backend: Backend) -> AppFactory:
    """``async with make_api(**settings) as api``: a started app behind an ASGI client."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Api]:
        app = create_app(backend.settings(**overrides), access_log=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield Api(client, app)

    return factory


@pytest.fixture
def make_live_api(backend: Backend) -> AppFactory:
    """Like ``make_api`` but served by uvicorn on a real socket (WebSockets need one)."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Api]:
        app = create_app(backend.settings(**overrides), access_log=False)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                api = Api(client, app)
                api.ws_url = f"ws://127.0.0.1:{port}"
                yield api
        finally:
            server.should_exit = True
            await task

    return factory


@pytest.fixture
async def api(make_api: AppFactory) -> AsyncIterator[Api]:
    async with make_api() as client:
        yield client
