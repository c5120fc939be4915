"""Benchmark 3: the ingest trade-off, one PostgreSQL row per driver vs Redis.

The same stream of 200,000 fixes from 50,000 drivers (4 rounds; in each round every driver
reports once, in shuffled order, a few tens of metres from the last fix), cut into batches of
1,000 (what a stream consumer or the batch endpoint hands the store) that 8 concurrent
workers take in turn:

(a) PostgreSQL: INSERT ... ON CONFLICT (driver_id) DO UPDATE ... WHERE the fix is newer,
    one transaction per batch through asyncpg executemany, 8 connections;
(b) RedisLocationStore.record_many per batch (a script call per 500 fixes: the rules, the
    state, the region GEO and ``seen`` sets, and a PUBLISH per new live position, as
    production configures it: its script calls on a connection of its own, pipelined), 8
    asyncio tasks; and the same store
    not announcing (what a consumer that publishes nothing would run);
(c) baselines: raw GEOADD of the same points, one pipeline per batch, 8 asyncio tasks on the
    same redis-py client; and the server's own ceiling, the same 200,000 GEOADD commands
    streamed by `redis-cli --pipe` (C client, no Python in the loop).

The fixes are dated up to the moment the stream is made and the store's clock stands at the
newest one, so no position counts as stale (drivers report every 4 s; the stale window is
30 s): the store does its steady-state work, not pruning.

    .venv/bin/python -m bench.ingest_store
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench import common
from ridehail.locations.ports import LocationFix
from ridehail.locations.redis_store import REGION_RESOLUTION, RedisLocationStore

FIXES = int(os.environ.get("BENCH_INGEST_FIXES", "200000"))
BATCH = int(os.environ.get("BENCH_INGEST_BATCH", "1000"))
WORKERS = 8
STEP_M = 40.0
#: Seconds between two reports of one driver.
REPORT_EVERY_S = 4.0
STALE_AFTER_S = 30.0
#: Drivers someone follows (their rider waiting or riding, or an admin): their positions
#: are announced. An assumed share for a busy hour, not a measured one; the all-followed
#: run bounds it.
FOLLOWED_SHARE = float(os.environ.get("BENCH_FOLLOWED_SHARE", "0.3"))

TABLE = "bench_driver_locations"
CREATE = f"""
CREATE TABLE {TABLE} (
    driver_id   text PRIMARY KEY,
    latitude    double precision NOT NULL,
    longitude   double precision NOT NULL,
    recorded_at timestamptz NOT NULL
)
"""
UPSERT = f"""
INSERT INTO {TABLE} (driver_id, latitude, longitude, recorded_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (driver_id) DO UPDATE
   SET latitude = EXCLUDED.latitude,
       longitude = EXCLUDED.longitude,
       recorded_at = EXCLUDED.recorded_at
 WHERE {TABLE}.recorded_at < EXCLUDED.recorded_at
"""


def fix_stream(count: int) -> list[LocationFix]:
    """Rounds over every driver in shuffled order, each fix newer than the last."""
    city = common.make_city()
    rng = random.Random(common.SEED + 2)
    lats, lons = list(city.lats), list(city.lons)
    drivers = len(city.ids)
    step = timedelta(seconds=REPORT_EVERY_S) / drivers
    base = datetime.now(UTC) - step * count
    fixes: list[LocationFix] = []
    order = list(range(drivers))
    while len(fixes) < count:
        rng.shuffle(order)
        for i in order[: count - len(fixes)]:
            angle = rng.uniform(0, 2 * math.pi)
            lats[i] += STEP_M * math.cos(angle) / 1000 / common.KM_PER_DEG_LAT
            lons[i] += STEP_M * math.sin(angle) / 1000 / common.KM_PER_DEG_LON
            fixes.append(
                LocationFix(
                    driver_id=city.ids[i],
                    latitude=lats[i],
                    longitude=lons[i],
                    recorded_at=base + step * len(fixes),
                )
            )
    return fixes


def batches(fixes: Sequence[LocationFix]) -> list[Sequence[LocationFix]]:
    return [fixes[i : i + BATCH] for i in range(0, len(fixes), BATCH)]


async def drive(work: list[Any], write: Callable[[int, Any], Awaitable[None]], what: str) -> float:
    """``WORKERS`` tasks take batches in turn; returns the wall time in seconds."""
    deadline = common.Deadline(240, what)
    cursor: Iterator[Any] = iter(work)

    async def worker(n: int) -> None:
        for batch in cursor:  # shared iterator: the list bounds the loop
            await write(n, batch)
            deadline.check()

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    return time.perf_counter() - start


def resp(*parts: str) -> bytes:
    """One command in the Redis protocol, for redis-cli --pipe."""
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def geoadd_pipe_file(fixes: Sequence[LocationFix], key: str, directory: str) -> str:
    path = os.path.join(directory, "geoadd.resp")
    with open(path, "wb") as out:
        for fix in fixes:
            out.write(resp("GEOADD", key, repr(fix.longitude), repr(fix.latitude), fix.driver_id))
    return path


def redis_cli_pipe(path: str, expected: int) -> float:
    """Stream the file with redis-cli --pipe; returns writes per second (wall clock)."""
    with open(path, "rb") as data:
        start = time.perf_counter()
        out = subprocess.run(
            [common.need("redis-cli"), "-h", "127.0.0.1", "-p", "6379", "--pipe"],
            stdin=data,
            capture_output=True,
            text=True,
            timeout=240,
            check=True,
        )
        seconds = time.perf_counter() - start
    if f"errors: 0, replies: {expected}" not in out.stdout:
        raise RuntimeError(f"redis-cli --pipe failed:\n{out.stdout}{out.stderr}")
    return expected / seconds


async def run() -> dict[str, Any]:
    began = common.started()
    fixes = fix_stream(FIXES)
    fix_batches = batches(fixes)
    # PostgreSQL rows, each batch sorted by driver id so that concurrent transactions lock
    # rows in one order (no deadlocks); the WHERE clause keeps the newest fix regardless.
    pg_batches = [
        sorted(
            ((f.driver_id, f.latitude, f.longitude, f.recorded_at) for f in batch),
            key=lambda row: row[0],
        )
        for batch in fix_batches
    ]
    drivers = len({f.driver_id for f in fixes})
    runs: dict[str, list[float]] = {
        "postgres": [],
        "redis_store": [],
        "redis_store_no_announce": [],
        "redis_store_all_followed": [],
        "raw_geoadd": [],
        "raw_geoadd_redis_cli": [],
    }
    tmp = tempfile.TemporaryDirectory(prefix="ridehail-bench-")
    retries = 0
    prefix = common.new_prefix()
    async with common.pg_database() as database, common.redis_client(prefix) as client:
        conns = [await asyncpg.connect(common.pg_dsn(database)) for _ in range(WORKERS)]
        stores: list[RedisLocationStore] = []
        try:
            await conns[0].execute(CREATE)
            newest = max(f.recorded_at for f in fixes).timestamp()
            store = RedisLocationStore(
                client,
                key_prefix=prefix,
                stale_after_s=STALE_AFTER_S,
                announce_prefix=f"{prefix}rt:",
                clock=lambda: newest,
                ingest_lane=True,
            )
            # Positions are announced only for followed drivers (a rider or an admin watches):
            # FOLLOWED_SHARE of them as deployed at a busy hour, and every one as the worst case.
            everyone = sorted({f.driver_id for f in fixes})
            loud_prefix = f"{prefix}loud:"
            loud_store = RedisLocationStore(
                client,
                key_prefix=loud_prefix,
                stale_after_s=STALE_AFTER_S,
                announce_prefix=f"{prefix}rt:",
                clock=lambda: newest,
                ingest_lane=True,
            )
            stores += [store, loud_store]

            async def follow() -> None:
                for driver_id in everyone[: round(len(everyone) * FOLLOWED_SHARE)]:
                    await store.follow(driver_id, for_s=86_400)
                for driver_id in everyone:
                    await loud_store.follow(driver_id, for_s=86_400)

            quiet_prefix = f"{prefix}quiet:"
            quiet_store = RedisLocationStore(
                client,
                key_prefix=quiet_prefix,
                stale_after_s=STALE_AFTER_S,
                clock=lambda: newest,
                ingest_lane=True,
            )
            stores.append(quiet_store)
            raw_key = f"{prefix}raw:geo"
            cli_key = f"{prefix}cli:geo"
            pipe_file = geoadd_pipe_file(fixes, cli_key, tmp.name)

            async def pg_write(n: int, rows: list[tuple[Any, ...]]) -> None:
                nonlocal retries
                for attempt in range(5):
                    try:
                        async with conns[n].transaction():
                            await conns[n].executemany(UPSERT, rows)
                        return
                    except asyncpg.DeadlockDetectedError:
                        retries += 1
                        if attempt == 4:
                            raise

            async def store_write(_n: int, batch: Sequence[LocationFix]) -> None:
                await store.record_many(batch)

            async def loud_store_write(_n: int, batch: Sequence[LocationFix]) -> None:
                await loud_store.record_many(batch)

            async def quiet_store_write(_n: int, batch: Sequence[LocationFix]) -> None:
                await quiet_store.record_many(batch)

            async def geoadd_write(_n: int, batch: Sequence[LocationFix]) -> None:
                async with client.pipeline(transaction=False) as pipe:
                    for fix in batch:
                        pipe.geoadd(raw_key, [fix.longitude, fix.latitude, fix.driver_id])
                    await pipe.execute()

            checks: dict[str, Any] = {}
            for round_no in range(common.REPEATS):
                await conns[0].execute(f"TRUNCATE {TABLE}")
                await common.delete_prefix(client, prefix)
                await follow()
                seconds = await drive(pg_batches, pg_write, "PostgreSQL upserts")
                runs["postgres"].append(len(fixes) / seconds)
                seconds = await drive(fix_batches, quiet_store_write, "record_many, no announce")
                runs["redis_store_no_announce"].append(len(fixes) / seconds)
                await common.delete_prefix(client, quiet_prefix)  # each store on its own
                seconds = await drive(fix_batches, loud_store_write, "record_many, all followed")
                runs["redis_store_all_followed"].append(len(fixes) / seconds)
                await common.delete_prefix(client, loud_prefix)
                seconds = await drive(fix_batches, store_write, "RedisLocationStore.record_many")
                runs["redis_store"].append(len(fixes) / seconds)
                seconds = await drive(fix_batches, geoadd_write, "raw GEOADD")
                runs["raw_geoadd"].append(len(fixes) / seconds)
                runs["raw_geoadd_redis_cli"].append(redis_cli_pipe(pipe_file, len(fixes)))
                print(
                    f"   round {round_no + 1}: "
                    + "  ".join(f"{k} {v[-1]:.0f} writes/s" for k, v in runs.items()),
                    flush=True,
                )
            # The last round's end state: one row / member per driver, the newest fix kept.
            last = {f.driver_id: f for f in fixes}
            sample = sorted(last)[:: max(1, len(last) // 500)]
            rows = await conns[0].fetch(
                f"SELECT driver_id, recorded_at FROM {TABLE} WHERE driver_id = ANY($1)", sample
            )
            stored = [await store.current(d) for d in sample]
            region_keys = [
                key async for key in client.scan_iter(match=f"{prefix}loc:{{*}}:geo", count=1000)
            ]
            members = [int(await client.zcard(key)) for key in region_keys]
            checks = {
                "postgres_rows": int(await conns[0].fetchval(f"SELECT count(*) FROM {TABLE}")),
                "redis_store_members": sum(members),
                "redis_store_regions": len(region_keys),
                "redis_store_largest_region": max(members, default=0),
                "raw_geo_members": int(await client.zcard(raw_key)),
                "redis_cli_geo_members": int(await client.zcard(cli_key)),
                "newest_fix_kept_postgres": f"{sum(r['recorded_at'] == last[r['driver_id']].recorded_at for r in rows)}/{len(sample)}",  # noqa: E501
                "newest_fix_kept_redis_store": f"{sum(s is not None and s == last[d] for d, s in zip(sample, stored, strict=True))}/{len(sample)}",  # noqa: E501
                "postgres_deadlock_retries": retries,
            }
            pg = await common.pg_facts()
            redis = await common.redis_facts(client)
        finally:
            for made in stores:
                await made.close()
            for conn in conns:
                await conn.close()
            tmp.cleanup()

    results = {
        "postgres": {
            "label": f"PostgreSQL upsert, batches of {BATCH} per transaction, "
            f"{WORKERS} connections",
            "writes_per_s": common.spread(runs["postgres"], 0),
        },
        "redis_store": {
            "label": f"RedisLocationStore.record_many, batches of {BATCH}, {WORKERS} tasks "
            f"(as deployed: positions announced for the {FOLLOWED_SHARE:.0%} of drivers "
            "someone follows)",
            "writes_per_s": common.spread(runs["redis_store"], 0),
        },
        "redis_store_no_announce": {
            "label": f"RedisLocationStore.record_many, batches of {BATCH}, {WORKERS} tasks, "
            "not announcing (no PUBLISH, no messages)",
            "writes_per_s": common.spread(runs["redis_store_no_announce"], 0),
        },
        "redis_store_all_followed": {
            "label": f"RedisLocationStore.record_many, batches of {BATCH}, {WORKERS} tasks, "
            "every driver followed (worst case: one PUBLISH per driver and batch)",
            "writes_per_s": common.spread(runs["redis_store_all_followed"], 0),
        },
        "raw_geoadd": {
            "label": f"baseline: pipelined GEOADD (redis-py), batches of {BATCH}, {WORKERS} tasks",
            "writes_per_s": common.spread(runs["raw_geoadd"], 0),
        },
        "raw_geoadd_redis_cli": {
            "label": "server ceiling: the same GEOADDs through redis-cli --pipe",
            "writes_per_s": common.spread(runs["raw_geoadd_redis_cli"], 0),
        },
    }
    for key in ("postgres", "redis_store", "redis_store_no_announce", "redis_store_all_followed"):
        ratios = [a / b for a, b in zip(runs[key], runs["raw_geoadd"], strict=True)]
        results[key]["ratio_to_raw_geoadd"] = common.spread(ratios, 3)
    part = {
        "settings": {
            "followed_share": FOLLOWED_SHARE,
            "fixes": len(fixes),
            "drivers": drivers,
            "batch": BATCH,
            "workers": WORKERS,
            "repeats": common.REPEATS,
            "report_every_s": REPORT_EVERY_S,
            "stale_after_s": STALE_AFTER_S,
            "region_resolution": REGION_RESOLUTION,
            "postgres": pg,
            "redis": redis,
        },
        "results": results,
        "checks": checks,
    }
    common.write_part("ingest_store", began, part)
    return part


def main() -> None:
    common.exit_cleanly_on_sigterm()
    common.banner("3. ingest trade-off: PostgreSQL row per driver vs Redis")
    part = asyncio.run(run())
    print(json.dumps(part["checks"]))
    for key, value in part["results"].items():
        print(f"   {key:12s} median {value['writes_per_s']['median']:9.0f} writes/s")


if __name__ == "__main__":
    main()
