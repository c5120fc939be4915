"""Benchmark 2: nearest 10 drivers within 2 km among 50,000 in a 39 x 25 km city.

(a) InMemoryLocationStore.nearest called in-process, one query at a time;
(b) RedisLocationStore.nearest with 32 concurrent asyncio tasks;
(c) baselines on a plain Redis GEO key holding the same 50,000 members:
    GEOSEARCH ... BYRADIUS 2 km ASC COUNT 10 from a Python asyncio loop (same client, same
    32 tasks, same random points) and from redis-benchmark (C client, one fixed point).

Before timing, the in-memory answers for CHECK_SAMPLE of the points are compared with a
brute-force scan of all 50,000 fixes (ids, order and distances, exactly: nearest first by
``haversine_m``, ties by id, within the radius, fresh only, at most 10); the Redis store's
ids and order with the same scan; and the two stores with each other.

Targets for (a): p99 service time at most TARGET_P99_US, and more queries per second than
either GEOSEARCH baseline measured in the same run.

    .venv/bin/python -m bench.nearest
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import common
from ridehail.kernel.geo import haversine_m
from ridehail.locations.memory import InMemoryLocationStore
from ridehail.locations.ports import LocationFix
from ridehail.locations.redis_store import RedisLocationStore

QUERIES = int(os.environ.get("BENCH_NEAREST_QUERIES", "2000"))
TASKS = int(os.environ.get("BENCH_NEAREST_TASKS", "32"))
RADIUS_M = 2_000.0
LIMIT = 10
DENSITY_SAMPLE = 500
CHECK_SAMPLE = 200
#: The in-process store's p99 service time must not exceed this.
TARGET_P99_US = 2_000.0


def city_fixes(recorded_at: datetime) -> list[LocationFix]:
    city = common.make_city()
    return [
        LocationFix(driver_id=i, latitude=lat, longitude=lon, recorded_at=recorded_at)
        for i, lat, lon in zip(city.ids, city.lats, city.lons, strict=True)
    ]


async def geo_members(client: Any, pattern: str) -> int:
    """Members of every GEO sorted set whose key matches ``pattern`` (the store's own key
    layout is its business)."""
    members = 0
    async for key in client.scan_iter(match=pattern, count=1000):
        if await client.type(key) in (b"zset", "zset"):
            members += int(await client.zcard(key))
    return members


def brute_force(
    fixes: list[LocationFix], lat: float, lon: float, fresh_since: datetime
) -> list[tuple[float, str]]:
    """The exact answer by scanning every fix: nearest first by haversine, ties by id."""
    hits = [
        (haversine_m(lat, lon, fix.latitude, fix.longitude), fix.driver_id)
        for fix in fixes
        if fix.recorded_at >= fresh_since
    ]
    return sorted(hit for hit in hits if hit[0] <= RADIUS_M)[:LIMIT]


async def in_memory(
    store: InMemoryLocationStore, points: list[tuple[float, float]], fresh_since: datetime
) -> dict[str, Any]:
    """One query at a time; per-query service time from perf_counter_ns."""
    deadline = common.Deadline(300, "in-memory nearest")
    times: list[int] = []
    short = 0
    clock = time.perf_counter_ns
    start = clock()
    for n, (lat, lon) in enumerate(points):
        t0 = clock()
        hits = await store.nearest(
            latitude=lat, longitude=lon, radius_m=RADIUS_M, limit=LIMIT, fresh_since=fresh_since
        )
        times.append(clock() - t0)
        short += len(hits) < LIMIT
        if n % 1000 == 0:
            deadline.check()
    return latency_summary(times, (clock() - start) / 1e9, short)


def latency_summary(times_ns: list[int], wall_s: float, short: int) -> dict[str, Any]:
    """Queries per second over the wall time, and the p50/p99 of the per-query times."""
    times_ns.sort()
    return {
        "qps": len(times_ns) / wall_s,
        "p50_us": common.percentile(times_ns, 50) / 1000,
        "p99_us": common.percentile(times_ns, 99) / 1000,
        "short_answers": short,
    }


async def concurrent(
    query: Callable[[float, float], Awaitable[int]], points: list[tuple[float, float]]
) -> dict[str, Any]:
    """``TASKS`` tasks share the points; each query's latency includes queueing."""
    deadline = common.Deadline(300, "concurrent nearest")
    times: list[int] = []
    short = 0
    cursor = iter(points)
    clock = time.perf_counter_ns

    async def worker() -> None:
        nonlocal short
        for lat, lon in cursor:  # shared iterator: the list bounds the loop
            t0 = clock()
            found = await query(lat, lon)
            times.append(clock() - t0)
            short += found < LIMIT
            if len(times) % 1000 == 0:
                deadline.check()

    start = clock()
    await asyncio.gather(*(worker() for _ in range(TASKS)))
    return latency_summary(times, (clock() - start) / 1e9, short)


def redis_benchmark(key: str, lat: float, lon: float) -> dict[str, Any]:
    cmd = [
        common.need("redis-benchmark"),
        "-h",
        "127.0.0.1",
        "-p",
        "6379",
        "-n",
        str(QUERIES),
        "-c",
        str(TASKS),
        "--csv",
        "GEOSEARCH",
        key,
        "FROMLONLAT",
        repr(lon),
        repr(lat),
        "BYRADIUS",
        "2",
        "km",
        "ASC",
        "COUNT",
        str(LIMIT),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    if not rows:
        raise RuntimeError(f"redis-benchmark printed nothing usable:\n{out.stdout}{out.stderr}")
    row = rows[-1]
    return {
        "qps": float(row["rps"]),
        "p50_us": float(row["p50_latency_ms"]) * 1000,
        "p99_us": float(row["p99_latency_ms"]) * 1000,
    }


def summarize(runs: list[dict[str, Any]], label: str) -> dict[str, Any]:
    out = {
        "label": label,
        "queries_per_s": common.spread([r["qps"] for r in runs], 0),
        "p50_us": common.spread([r["p50_us"] for r in runs], 1),
        "p99_us": common.spread([r["p99_us"] for r in runs], 1),
    }
    if "short_answers" in runs[0]:
        out["answers_with_fewer_than_10"] = sum(r["short_answers"] for r in runs)
    return out


async def run() -> dict[str, Any]:
    common.need("redis-benchmark")
    began = common.started()
    recorded_at = datetime.now(UTC)
    fresh_since = recorded_at - timedelta(seconds=30)  # fixed: all 50,000 stay fresh
    fixes = city_fixes(recorded_at)
    points = common.query_points(QUERIES)

    memory = InMemoryLocationStore()
    await memory.record_many(fixes)

    # How crowded the query points are: every fresh driver within 2 km, on a sample.
    within = []
    for lat, lon in points[:DENSITY_SAMPLE]:
        hits = await memory.nearest(
            latitude=lat, longitude=lon, radius_m=RADIUS_M, limit=10**6, fresh_since=fresh_since
        )
        within.append(len(hits))

    prefix = common.new_prefix()
    async with common.redis_client(prefix) as client:
        # Nothing may go stale and be pruned during the read-only phase (minutes long).
        redis_store = RedisLocationStore(client, key_prefix=prefix, stale_after_s=24 * 3600)
        raw_key = f"{prefix}raw:geo"

        async def load(batch: list[LocationFix]) -> None:
            await redis_store.record_many(batch)
            members: list[Any] = []
            for fix in batch:
                members += [fix.longitude, fix.latitude, fix.driver_id]
            await client.geoadd(raw_key, members)

        await common.in_batches(fixes, load)
        loaded = (
            await geo_members(client, f"{prefix}loc:{{*}}:geo"),
            int(await client.zcard(raw_key)),
        )

        # Both stores must give the exact answer; checked on a sample of the points.
        agree = memory_exact = redis_exact = 0
        for lat, lon in points[:CHECK_SAMPLE]:
            kwargs: dict[str, Any] = {
                "latitude": lat,
                "longitude": lon,
                "radius_m": RADIUS_M,
                "limit": LIMIT,
                "fresh_since": fresh_since,
            }
            expected = brute_force(fixes, lat, lon, fresh_since)
            a = [(h.distance_m, h.driver_id) for h in await memory.nearest(**kwargs)]
            b = [h.driver_id for h in await redis_store.nearest(**kwargs)]
            memory_exact += a == expected
            redis_exact += b == [driver_id for _, driver_id in expected]
            agree += [driver_id for _, driver_id in a] == b

        async def store_query(lat: float, lon: float) -> int:
            hits = await redis_store.nearest(
                latitude=lat,
                longitude=lon,
                radius_m=RADIUS_M,
                limit=LIMIT,
                fresh_since=fresh_since,
            )
            return len(hits)

        async def raw_query(lat: float, lon: float) -> int:
            reply = await client.geosearch(
                raw_key,
                longitude=lon,
                latitude=lat,
                radius=2,
                unit="km",
                sort="ASC",
                count=LIMIT,
            )
            return len(reply)

        centre_within = len(
            await memory.nearest(
                latitude=common.CENTRE_LAT,
                longitude=common.CENTRE_LON,
                radius_m=RADIUS_M,
                limit=10**6,
                fresh_since=fresh_since,
            )
        )
        runs: dict[str, list[dict[str, Any]]] = {
            "in_memory": [],
            "redis_store": [],
            "raw_geosearch_python": [],
            "raw_geosearch_redis_benchmark": [],
        }
        await concurrent(raw_query, points[:500])  # warm up connections
        for round_no in range(common.REPEATS):
            runs["in_memory"].append(await in_memory(memory, points, fresh_since))
            runs["redis_store"].append(await concurrent(store_query, points))
            runs["raw_geosearch_python"].append(await concurrent(raw_query, points))
            runs["raw_geosearch_redis_benchmark"].append(
                redis_benchmark(raw_key, common.CENTRE_LAT, common.CENTRE_LON)
            )
            print(
                f"   round {round_no + 1}: "
                + "  ".join(f"{k} {v[-1]['qps']:.0f} q/s" for k, v in runs.items()),
                flush=True,
            )
        redis = await common.redis_facts(client)

    results = {
        "in_memory": summarize(runs["in_memory"], "InMemoryLocationStore.nearest, in-process"),
        "redis_store": summarize(
            runs["redis_store"], f"RedisLocationStore.nearest, {TASKS} asyncio tasks"
        ),
        "raw_geosearch_python": summarize(
            runs["raw_geosearch_python"],
            f"baseline: raw GEOSEARCH, redis-py, {TASKS} asyncio tasks, random points",
        ),
        "raw_geosearch_redis_benchmark": summarize(
            runs["raw_geosearch_redis_benchmark"],
            f"baseline: raw GEOSEARCH, redis-benchmark -c {TASKS}, fixed point (city centre)",
        ),
    }
    base = runs["raw_geosearch_python"]
    for key in ("in_memory", "redis_store"):
        ratios = [r["qps"] / b["qps"] for r, b in zip(runs[key], base, strict=True)]
        results[key]["ratio_to_raw_geosearch_python"] = common.spread(ratios, 3)
    c_client = runs["raw_geosearch_redis_benchmark"]
    ratios = [r["qps"] / b["qps"] for r, b in zip(runs["in_memory"], c_client, strict=True)]
    results["in_memory"]["ratio_to_raw_geosearch_redis_benchmark"] = common.spread(ratios, 3)
    in_memory_p99 = results["in_memory"]["p99_us"]["median"]
    in_memory_qps = results["in_memory"]["queries_per_s"]["median"]
    targets = {
        "in_memory_p99_us_max": TARGET_P99_US,
        "in_memory_p99_met": in_memory_p99 <= TARGET_P99_US,
        "in_memory_faster_than_raw_geosearch_python": in_memory_qps
        > results["raw_geosearch_python"]["queries_per_s"]["median"],
        "in_memory_faster_than_raw_geosearch_redis_benchmark": in_memory_qps
        > results["raw_geosearch_redis_benchmark"]["queries_per_s"]["median"],
    }
    part = {
        "settings": {
            "drivers": common.DRIVERS,
            "queries_per_run": QUERIES,
            "radius_m": RADIUS_M,
            "limit": LIMIT,
            "concurrent_tasks": TASKS,
            "repeats": common.REPEATS,
            "redis": redis,
        },
        "city": {
            "drivers_within_2km_mean": round(statistics.fmean(within), 1),
            "drivers_within_2km_median": statistics.median(within),
            "drivers_within_2km_min": min(within),
            "drivers_within_2km_max": max(within),
            "drivers_within_2km_sample": len(within),
            "drivers_within_2km_of_centre": centre_within,
        },
        "checks": {
            "redis_members_loaded_store_raw": list(loaded),
            "same_top10_in_memory_vs_redis": f"{agree}/{CHECK_SAMPLE}",
            "in_memory_exact_vs_brute_force": f"{memory_exact}/{CHECK_SAMPLE}",
            "redis_store_same_ids_and_order_as_brute_force": f"{redis_exact}/{CHECK_SAMPLE}",
        },
        "targets": targets,
        "results": results,
    }
    common.write_part("nearest", began, part)
    return part


def main() -> None:
    common.exit_cleanly_on_sigterm()
    common.banner("2. nearest 10 within 2 km among 50,000 drivers")
    part = asyncio.run(run())
    print(json.dumps(part["city"]))
    print(json.dumps(part["checks"]))
    print(json.dumps(part["targets"]))
    for key, value in part["results"].items():
        print(f"   {key:30s} median {value['queries_per_s']['median']:9.0f} q/s")


if __name__ == "__main__":
    main()
