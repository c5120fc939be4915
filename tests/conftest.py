from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from ridehail.logging import configure as configure_logging
from tests import backends

# As the entry points do; structlog's default would render rich tracebacks with locals.
configure_logging(level="INFO")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return backends.redis_url()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return backends.database_url()


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"rhtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
