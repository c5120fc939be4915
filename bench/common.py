"""Shared helpers: statistics, the synthetic city, machine facts, own Redis keys and
PostgreSQL databases (created per run, removed afterwards), result files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")

#: How often every measurement is repeated; the median is reported with the min-max spread.
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))

# ---------------------------------------------------------------- the synthetic city

#: City centre (Helsinki) and extent: 39 km east-west by 25 km north-south.
CENTRE_LAT = 60.17
CENTRE_LON = 24.94
WIDTH_KM = 39.0
HEIGHT_KM = 25.0
KM_PER_DEG_LAT = 111.32
KM_PER_DEG_LON = KM_PER_DEG_LAT * math.cos(math.radians(CENTRE_LAT))
HALF_LAT = HEIGHT_KM / 2 / KM_PER_DEG_LAT
HALF_LON = WIDTH_KM / 2 / KM_PER_DEG_LON
#: Share of drivers (and of query points) around hotspots; the rest are uniform.
HOTSPOT_SHARE = 0.4
#: Hotspots as (km east of centre, km north of centre, sigma km).
HOTSPOTS = ((0.0, 0.0, 1.5), (-9.0, 4.0, 1.0), (7.0, 6.0, 1.0), (4.0, -6.0, 1.2))
DRIVERS = 50_000
SEED = 20_240_611

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


@dataclass(frozen=True, slots=True)
class City:
    ids: list[str]
    lats: list[float]
    lons: list[float]


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def city_point(rng: random.Random) -> tuple[float, float]:
    """One point of the city's mixture: uniform over the box, or near a hotspot."""
    if rng.random() < HOTSPOT_SHARE:
        east, north, sigma = rng.choice(HOTSPOTS)
        lat = CENTRE_LAT + rng.gauss(north, sigma) / KM_PER_DEG_LAT
        lon = CENTRE_LON + rng.gauss(east, sigma) / KM_PER_DEG_LON
    else:
        lat = CENTRE_LAT + rng.uniform(-HALF_LAT, HALF_LAT)
        lon = CENTRE_LON + rng.uniform(-HALF_LON, HALF_LON)
    return (
        _clamp(lat, CENTRE_LAT - HALF_LAT, CENTRE_LAT + HALF_LAT),
        _clamp(lon, CENTRE_LON - HALF_LON, CENTRE_LON + HALF_LON),
    )


def driver_ids(count: int, rng: random.Random) -> list[str]:
    """Ids shaped like the real ones (``drv_`` + 26 Crockford base32 characters)."""
    return ["drv_" + "".join(rng.choices(_CROCKFORD, k=26)) for _ in range(count)]


def make_city(count: int = DRIVERS, seed: int = SEED) -> City:
    rng = random.Random(seed)
    ids = driver_ids(count, rng)
    points = [city_point(rng) for _ in range(count)]
    return City(ids=ids, lats=[p[0] for p in points], lons=[p[1] for p in points])


def query_points(count: int, seed: int = SEED + 1) -> list[tuple[float, float]]:
    """Where riders ask from: the same mixture as the drivers, another seed."""
    rng = random.Random(seed)
    return [city_point(rng) for _ in range(count)]


# ---------------------------------------------------------------- statistics


def spread(values: Sequence[float], digits: int = 1) -> dict[str, Any]:
    """Median, min, max and every run, rounded for a small JSON file."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Deadline:
    """Every load loop is bounded in count and in time; this is the time bound."""

    def __init__(self, seconds: float, what: str) -> None:
        self.at = time.monotonic() + seconds
        self.what = what

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise TimeoutError(f"{self.what} did not finish in time")


async def in_batches(
    items: Sequence[T],
    load: Callable[[list[T]], Awaitable[object]],
    size: int = 1000,
    tasks: int = 8,
) -> None:
    """Set-up loading (not measured): ``items`` in chunks, ``tasks`` chunks at a time."""
    chunks = [list(items[i : i + size]) for i in range(0, len(items), size)]
    cursor = iter(chunks)
    deadline = Deadline(300, "loading")

    async def worker() -> None:
        for chunk in cursor:  # shared iterator: the list bounds the loop
            await load(chunk)
            deadline.check()

    await asyncio.gather(*(worker() for _ in range(tasks)))


# ---------------------------------------------------------------- machine facts


def _run(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def machine_facts() -> dict[str, Any]:
    src_dirty = bool(_run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"]))
    return {
        "nproc": int(_run(["nproc"]) or 0),
        "arch": _run(["uname", "-m"]),
        "kernel": _run(["uname", "-r"]),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "commit": _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "src_uncommitted_changes": src_dirty,
    }


# ---------------------------------------------------------------- processes and ports


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_like_ridehail(app: str, description: str, default_port: int) -> None:
    """Serve the ASGI app ``module:attribute`` from the command line (``--host``,
    ``--port``) with the same ``uvicorn.run`` arguments as `ridehail serve`
    (src/ridehail/cli.py), so that reference servers differ from it only in the app."""
    import argparse

    import uvicorn

    from ridehail.cli import UVICORN_OPTIONS

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, workers=1, **UVICORN_OPTIONS)


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SystemExit(f"{tool} is not installed (bench/run.sh installs it)")
    return path


def exit_cleanly_on_sigterm() -> None:
    """SIGTERM becomes SystemExit, so `finally` blocks drop databases and keys."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# ---------------------------------------------------------------- Redis


def new_prefix() -> str:
    return f"ridehail_bench_{secrets.token_hex(4)}:"


@contextlib.asynccontextmanager
async def redis_client(prefix: str) -> AsyncIterator[Any]:
    """A redis-py asyncio client (as the app builds it); every key under ``prefix`` is
    deleted on the way out, whatever happened. Never FLUSHALL."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()


async def delete_prefix(client: Any, prefix: str) -> int:
    assert prefix.startswith("ridehail_bench_"), prefix
    deleted = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += await client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


# ---------------------------------------------------------------- PostgreSQL


def pg_dsn(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def sqlalchemy_pg_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


@contextlib.asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A fresh database ``ridehail_bench_<random>``, dropped afterwards."""
    import asyncpg

    name = f"ridehail_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield name
    finally:
        admin = await asyncpg.connect(pg_dsn("postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def pg_facts() -> dict[str, str]:
    import asyncpg

    conn = await asyncpg.connect(pg_dsn("postgres"))
    try:
        facts = {"version": str(await conn.fetchval("SHOW server_version"))}
        for name in ("synchronous_commit", "fsync", "shared_buffers"):
            facts[name] = str(await conn.fetchval(f"SHOW {name}"))
        return facts
    finally:
        await conn.close()


async def redis_facts(client: Any) -> dict[str, str]:
    info = await client.info("server")
    persistence = await client.info("persistence")
    return {
        "version": str(info.get("redis_version")),
        "aof_enabled": str(persistence.get("aof_enabled")),
    }


# ---------------------------------------------------------------- results


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def started() -> dict[str, Any]:
    """When a benchmark started, how busy the machine was then (1-minute load average),
    which code it measured and on which CPU."""
    facts = machine_facts()
    return {
        "started_at": now_iso(),
        "load_average_at_start": load_average(),
        "commit": facts["commit"],
        "src_uncommitted_changes": facts["src_uncommitted_changes"],
        "cpu_model": facts["cpu"],
    }


def write_part(name: str, start: dict[str, Any], data: dict[str, Any]) -> Path:
    """One benchmark's result, merged into latest.json and the docs by bench.report."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.tmp"
    data = {**start, "finished_at": now_iso(), **data}
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        print(f"   {label}: {time.monotonic() - start:.1f} s", flush=True)
