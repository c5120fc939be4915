"""Benchmark 5: soak. 50,000 simulated drivers, one location report each per 4 s (12,500
requests/s offered), for 5 minutes, against `ridehail serve --role api --workers 2` on
PostgreSQL + Redis, as shipped (access log at INFO).

The load is wrk with bench/soak.lua: paced send slots (not as-fast-as-possible), drivers
taking turns so that each reports every 4 s, each report 40 m on from the last. The run is
cut into 30 s wrk segments back to back, so that drift over the five minutes shows. The
50,000 drivers' tokens are minted with the server's secret (signing 50,000 drivers up
through the API is not what this measures; the location path needs no database row).

Reported: requests answered, errors (non-2xx, socket errors, timeouts: must be 0), achieved
vs offered rate, latency percentiles per segment and overall (wrk, from send to answer),
CPU of the API processes, of Redis and of wrk (in cores: CPU seconds per second), Redis
memory, and a check that every driver's last report is stored and fresh.

    .venv/bin/python -m bench.soak          # BENCH_SOAK_S=60 for a short run
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.ingest_http import Target, cpu_seconds, ridehail_env, start, stop, tail, wait_ready
from bench.ingest_http import upgrade_database as migrate
from ridehail.accounts.security import Tokens
from ridehail.kernel.auth import Principal, Role
from ridehail.settings import Settings

DRIVERS = int(os.environ.get("BENCH_SOAK_DRIVERS", "50000"))
CYCLE_S = float(os.environ.get("BENCH_SOAK_CYCLE_S", "4"))
DURATION_S = int(os.environ.get("BENCH_SOAK_S", "300"))
SEGMENT_S = int(os.environ.get("BENCH_SOAK_SEGMENT_S", "30"))
CONNECTIONS = int(os.environ.get("BENCH_SOAK_CONNECTIONS", "1000"))
THREADS = 2
WORKERS = 2
LUA = common.ROOT / "bench" / "soak.lua"


def mint_tokens(secret: str, count: int) -> list[str]:
    """``driver_id token`` lines, signed as the server signs them."""
    defaults = Settings(jwt_secret=secret)
    tokens = Tokens(
        secret=secret,
        issuer=defaults.jwt_issuer,
        audience=defaults.jwt_audience,
        ttl_s=24 * 3600,
    )
    lines = []
    for n in range(count):
        driver_id = f"drv_soak{n:06d}"
        lines.append(f"{driver_id} {tokens.issue(Principal(driver_id, Role.DRIVER))}")
    return lines


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's supervisor and its worker processes)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found.extend(process_tree(int(child)))
    return found


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in process_tree(pid):
        try:
            total += cpu_seconds(member)
        except FileNotFoundError:
            continue
    return total


async def redis_cpu_seconds(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def raise_open_files_limit() -> None:
    """wrk and the server each hold a socket per connection."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(CONNECTIONS * 4, 8192)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


async def segment(target: Target, drivers_file: Path, rate: float, seconds: int) -> dict[str, Any]:
    cmd = [
        common.need("wrk"),
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(LUA),
        target.url,
        "--",
        str(drivers_file),
        str(rate),
        str(THREADS),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = out.decode()
    line = next((x for x in text.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{text}\n{err.decode()}")
    result: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["wrk_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


async def check_stored(prefix: str, ids: list[str], since_s: float) -> dict[str, int]:
    """Every driver's live position is in the store and came from the last cycle or two."""
    import redis.asyncio as aioredis

    from ridehail.locations.redis_store import RedisLocationStore

    client = aioredis.from_url(common.REDIS_URL)
    try:
        store = RedisLocationStore(client, key_prefix=prefix)
        missing = stale = 0
        horizon = time.time() - since_s
        for driver_id in ids:
            fix = await store.current(driver_id)
            if fix is None:
                missing += 1
            elif fix.recorded_at.timestamp() < horizon:
                stale += 1
        return {"checked": len(ids), "missing": missing, "older_than_horizon": stale}
    finally:
        await client.aclose()


async def run() -> dict[str, Any]:
    common.need("wrk")
    raise_open_files_limit()
    began = common.started()
    prefix = common.new_prefix()
    rate = DRIVERS / CYCLE_S
    secret = secrets.token_urlsafe(48)
    async with common.pg_database() as database, common.redis_client(prefix) as redis:
        migrate(database, prefix)
        with tempfile.TemporaryDirectory(prefix="ridehail-soak-") as tmp_name:
            tmp = Path(tmp_name)
            lines = await asyncio.to_thread(mint_tokens, secret, DRIVERS)
            drivers_file = tmp / "drivers.txt"
            drivers_file.write_text("".join(f"{line}\n" for line in lines))
            env = ridehail_env(
                database_url=common.sqlalchemy_pg_url(database),
                redis_url=common.REDIS_URL,
                redis_key_prefix=prefix,
                jwt_secret=secret,
                log_level="INFO",
            )
            serve = str(Path(common.PYTHON).parent / "ridehail")
            target = Target(
                "soak",
                f"ridehail serve --role api --workers {WORKERS}",
                [serve, "serve", "--role", "api", "--workers", str(WORKERS)],
                env,
            )
            segments: list[dict[str, Any]] = []
            try:
                start(target, tmp)
                wait_ready(target, "/readyz")
                assert target.proc is not None
                memory_before = int((await redis.info("memory"))["used_memory"])
                server_cpu = tree_cpu_seconds(target.proc.pid)
                redis_cpu = await redis_cpu_seconds(redis)
                clock = time.monotonic()
                remaining = DURATION_S
                while remaining > 0:
                    seconds = min(SEGMENT_S, remaining)
                    result = await segment(target, drivers_file, rate, seconds)
                    segments.append(result)
                    remaining -= seconds
                    print(
                        f"   {len(segments):2d}: {result['rps']:8.0f} req/s"
                        f"  p50 {result['p50_us'] / 1000:6.2f} ms"
                        f"  p99 {result['p99_us'] / 1000:7.2f} ms"
                        f"  errors {result['non_2xx'] + result['socket_errors']}"
                        f"  timeouts {result['timeouts']}",
                        flush=True,
                    )
                elapsed = time.monotonic() - clock
                server_cpu = tree_cpu_seconds(target.proc.pid) - server_cpu
                redis_cpu = await redis_cpu_seconds(redis) - redis_cpu
                memory_after = int((await redis.info("memory"))["used_memory"])
                sample = [line.split()[0] for line in lines[:: max(1, DRIVERS // 2000)]]
                stored = await check_stored(prefix, sample, since_s=3 * CYCLE_S + SEGMENT_S)
                server_log = tail(target, 10**9)
            finally:
                stop(target)
    requests = sum(s["requests"] for s in segments)
    errors = sum(s["non_2xx"] + s["socket_errors"] + s["timeouts"] for s in segments)
    part = {
        "settings": {
            "drivers": DRIVERS,
            "cycle_s": CYCLE_S,
            "offered_rate_per_s": rate,
            "duration_s": DURATION_S,
            "segment_s": SEGMENT_S,
            "connections": CONNECTIONS,
            "server": target.label + " (production profile, PostgreSQL + Redis, log INFO)",
            "load": f"wrk -t{THREADS} -c{CONNECTIONS} -s bench/soak.lua, {SEGMENT_S} s segments",
        },
        "requests": requests,
        "errors": errors,
        "achieved_rate_per_s": requests / elapsed,
        "segments": [
            {
                "rps": round(s["rps"]),
                "p50_ms": s["p50_us"] / 1000,
                "p99_ms": s["p99_us"] / 1000,
                "max_ms": s["max_us"] / 1000,
                "errors": s["non_2xx"] + s["socket_errors"] + s["timeouts"],
            }
            for s in segments
        ],
        "latency_ms": {
            "p50_median_of_segments": common.spread([s["p50_us"] / 1000 for s in segments], 2),
            "p99_median_of_segments": common.spread([s["p99_us"] / 1000 for s in segments], 2),
            "p99_worst_segment": max(s["p99_us"] for s in segments) / 1000,
            "max": max(s["max_us"] for s in segments) / 1000,
        },
        "cpu_cores": {
            "api_processes": server_cpu / elapsed,
            "redis": redis_cpu / elapsed,
            "wrk": sum(s["wrk_cpu_s"] for s in segments) / elapsed,
        },
        "redis_used_memory_bytes": {"before": memory_before, "after": memory_after},
        "stored_check": stored,
        "server_log_tracebacks": server_log.count("Traceback"),
    }
    common.write_part("soak", began, part)
    return part


def main() -> None:
    common.exit_cleanly_on_sigterm()
    common.banner(
        f"5. soak: {DRIVERS} drivers, one report per {CYCLE_S:g} s, {DURATION_S} s, "
        f"{WORKERS} API processes"
    )
    part = asyncio.run(run())
    print(
        f"   {part['requests']} requests, {part['errors']} errors, "
        f"{part['achieved_rate_per_s']:.0f}/s of {part['settings']['offered_rate_per_s']:.0f}/s"
        f" offered; CPU cores {json.dumps({k: round(v, 2) for k, v in part['cpu_cores'].items()})}"
    )
    print(f"   stored: {json.dumps(part['stored_check'])}")


if __name__ == "__main__":
    main()
