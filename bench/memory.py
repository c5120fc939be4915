"""Benchmark 4: memory per tracked driver, in process and in Redis.

In process: a fresh interpreter builds 50,000 fixes, then measures with tracemalloc what an
InMemoryLocationStore holds after record_many of all of them, minus the empty store (the id
strings are allocated before and reported separately: the store keeps a reference to them).
tracemalloc counts the bytes Python asks its allocators for (objects, array buffers, dict
tables), not the allocators' own overhead; as a cross-check that does include it, another
fresh interpreter per kind of fix reports its resident set growth over the same
record_many (page-granular and noisier, one run each).
Redis: MEMORY USAGE (SAMPLES 0, every element) of the store's keys after record_many of the
same fixes (every key under ``<prefix>loc:``, whatever the layout: sorted sets count as the
GEO part, hashes as the fix part, trace lists are left out), and the INFO used_memory delta;
baseline, a plain GEO key with the same members.
Both with position-only fixes and with heading, speed and accuracy.

    .venv/bin/python -m bench.memory
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tracemalloc
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from bench import common
from ridehail.locations.memory import InMemoryLocationStore
from ridehail.locations.ports import LocationFix
from ridehail.locations.redis_store import RedisLocationStore


def fixes(extras: bool) -> list[LocationFix]:
    city = common.make_city()
    now = datetime.now(UTC)
    return [
        LocationFix(
            driver_id=driver_id,
            latitude=lat,
            longitude=lon,
            recorded_at=now,
            heading=90.0 if extras else None,
            speed_mps=8.5 if extras else None,
            accuracy_m=6.0 if extras else None,
        )
        for driver_id, lat, lon in zip(city.ids, city.lats, city.lons, strict=True)
    ]


def finish(coro: Coroutine[Any, Any, object]) -> None:
    """Run a coroutine that never awaits (the in-memory store's methods) without a loop,
    so that no event-loop object lands in the measurement."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("the coroutine awaited")


def in_process_child() -> None:
    """Runs in its own interpreter; prints one JSON object."""
    out: dict[str, Any] = {}
    for extras in (False, True):
        batch = fixes(extras)
        per_driver = []
        for _ in range(common.REPEATS):
            gc.collect()
            tracemalloc.start()
            store = InMemoryLocationStore()
            gc.collect()
            empty = tracemalloc.get_traced_memory()[0]
            finish(store.record_many(batch))
            gc.collect()
            loaded = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            per_driver.append((loaded - empty) / len(batch))
            del store
        key = "with_extras" if extras else "position_only"
        out[key] = per_driver
    ids = common.make_city().ids
    out["id_string_bytes"] = statistics.fmean(sys.getsizeof(i) for i in ids)
    print(json.dumps(out))


def resident_bytes() -> int:
    """This process's resident set size (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_child(extras: bool) -> None:
    """Runs in its own interpreter; prints the resident set growth per driver."""
    batch = fixes(extras)
    gc.collect()
    store = InMemoryLocationStore()
    before = resident_bytes()
    finish(store.record_many(batch))
    gc.collect()
    print(json.dumps((resident_bytes() - before) / len(batch)))


def in_a_child(*args: str) -> Any:
    child = subprocess.run(
        [common.PYTHON, "-m", "bench.memory", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=common.ROOT,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


async def redis_part(drivers: int) -> dict[str, Any]:
    prefix = common.new_prefix()
    results: dict[str, dict[str, list[float]]] = {}
    async with common.redis_client(prefix) as client:
        # Nothing may go stale and be pruned while it is measured.
        store = RedisLocationStore(client, key_prefix=prefix, stale_after_s=24 * 3600)
        raw_key = f"{prefix}raw:geo"

        async def used() -> int:
            """used_memory once UNLINK's background freeing has finished (bounded wait)."""
            for _ in range(100):
                info = await client.info("memory")
                if int(info.get("lazyfree_pending_objects", 0)) == 0:
                    break
                await asyncio.sleep(0.05)
            return int(info["used_memory"])

        async def usage(key: str | bytes) -> int:
            return int(await client.memory_usage(key, samples=0) or 0)

        async def store_usage() -> tuple[int, int]:
            """Bytes of the store's searchable part (the regions' GEO and ``seen`` sorted
            sets) and of its per-driver state (strings), whatever the exact key names:
            every key under ``<prefix>loc:``, classified by type."""
            regions = states = 0
            async for key in client.scan_iter(match=f"{prefix}loc:*", count=1000):
                kind = await client.type(key)
                if kind in (b"zset", "zset"):
                    regions += await usage(key)
                elif kind in (b"string", "string", b"hash", "hash"):
                    states += await usage(key)
            return regions, states

        async def geoadd(chunk: list[LocationFix]) -> None:
            members: list[Any] = []
            for fix in chunk:
                members += [fix.longitude, fix.latitude, fix.driver_id]
            await client.geoadd(raw_key, members)

        for extras in (False, True):
            batch = fixes(extras)
            name = "with_extras" if extras else "position_only"
            rows: dict[str, list[float]] = {"geo": [], "hash": [], "total": [], "used_delta": []}
            raw: dict[str, list[float]] = {"geo": [], "used_delta": []}
            for _ in range(common.REPEATS):
                await common.delete_prefix(client, prefix)
                before = await used()
                await common.in_batches(batch, store.record_many)
                after = await used()
                geo, hsh = await store_usage()
                rows["geo"].append(geo / drivers)
                rows["hash"].append(hsh / drivers)
                rows["total"].append((geo + hsh) / drivers)
                rows["used_delta"].append((after - before) / drivers)
                await common.delete_prefix(client, prefix)
                before = await used()
                await common.in_batches(batch, geoadd)
                after = await used()
                raw["geo"].append(await usage(raw_key) / drivers)
                raw["used_delta"].append((after - before) / drivers)
            results[f"redis_store_{name}"] = rows
            if not extras:
                results["raw_geo"] = raw
        results["_facts"] = {"redis": await common.redis_facts(client)}  # type: ignore[dict-item]
    return results


def run() -> dict[str, Any]:
    began = common.started()
    local = in_a_child("--in-process-child")
    rss = {name: in_a_child("--rss-child", name) for name in ("position_only", "with_extras")}
    drivers = common.DRIVERS
    redis = asyncio.run(redis_part(drivers))
    facts = redis.pop("_facts")
    ids = local["id_string_bytes"]
    results: dict[str, Any] = {}
    for name in ("position_only", "with_extras"):
        results[f"in_memory_{name}"] = {
            "label": f"InMemoryLocationStore, {name.replace('_', ' ')}",
            "store_bytes_per_driver": common.spread(local[name], 1),
            "with_id_string_bytes_per_driver": common.spread([v + ids for v in local[name]], 1),
            "rss_delta_bytes_per_driver": round(rss[name], 1),
        }
        rows = redis[f"redis_store_{name}"]
        results[f"redis_store_{name}"] = {
            "label": f"RedisLocationStore (region sets + driver state), {name.replace('_', ' ')}",
            "memory_usage_bytes_per_driver": common.spread(rows["total"], 1),
            "geo_key_bytes_per_driver": common.spread(rows["geo"], 1),
            "fix_hash_bytes_per_driver": common.spread(rows["hash"], 1),
            "used_memory_delta_bytes_per_driver": common.spread(rows["used_delta"], 1),
        }
    results["raw_geo"] = {
        "label": "baseline: plain Redis GEO key, same members",
        "memory_usage_bytes_per_driver": common.spread(redis["raw_geo"]["geo"], 1),
        "used_memory_delta_bytes_per_driver": common.spread(redis["raw_geo"]["used_delta"], 1),
    }
    part = {
        "settings": {
            "drivers": drivers,
            "repeats": common.REPEATS,
            "id_string_bytes": round(ids, 1),
            **facts,
        },
        "results": results,
    }
    common.write_part("memory", began, part)
    return part


def main() -> None:
    if "--in-process-child" in sys.argv:
        in_process_child()
        return
    if "--rss-child" in sys.argv:
        rss_child(extras=sys.argv[-1] == "with_extras")
        return
    common.exit_cleanly_on_sigterm()
    common.banner("4. memory per tracked driver")
    part = run()
    for key, value in part["results"].items():
        first = next(v for k, v in value.items() if k != "label")
        print(f"   {key:28s} {first['median']:8.1f} bytes/driver")


if __name__ == "__main__":
    main()
