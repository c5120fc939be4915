"""Benchmark 8: the city-scale run. The design point (50,000 drivers, one position each per
4 s, 1,000 ride requests per minute) driven by `ridehail simulate` in real time (time scale
1) against the production profile laid out as in benchmark 7c: `ridehail serve --role api
--workers 2` + `ridehail worker dispatch`, `payments` and `notifications`, PostgreSQL and
Redis, all on this machine. The fleet and the demand are split across
``BENCH_SCALE_PARTS`` simulator processes (`--part K/N`), merged afterwards with
`ridehail.simulator.metrics.merge_parts` into one run and summarized with
`ridehail.simulator.report.summarize`.

Not as shipped, to make set-up feasible: the servers run with cheap password hashing
(``RIDEHAIL_ARGON2_TIME_COST=1``, ``RIDEHAIL_ARGON2_MEMORY_KIB=1024``), the rate limit off
(``RIDEHAIL_RATE_LIMIT_PER_MINUTE=0``: the simulators sign everybody up from one address)
and ``RIDEHAIL_LOG_LEVEL=WARNING`` (the settings `ridehail.simulator.server.server_env`
gives a time-scale-1 run). Sign-ups and going online happen before the simulators' clocks
start and are not part of the 10 minutes.

While it runs, every ``SAMPLE_S`` seconds: CPU of every process group (the API process
tree, each worker, each simulator, all PostgreSQL processes, Redis) from /proc, and from
the API's ``/metrics`` the location fixes counted by outcome. Everything is bounded by
``BENCH_SCALE_CAP_S`` of wall time: a run that has not finished by then is stopped and
recorded as such, with the samples taken so far.

    .venv/bin/python -m bench.city_scale                         # the design point
    BENCH_SCALE_DRIVERS=10000 BENCH_SCALE_PER_MIN=200 .venv/bin/python -m bench.city_scale
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import common
from bench.city_sim import (
    ADMIN,
    CpuMeter,
    layout_processes,
    prepare_database,
    production_env,
    running,
    summary_of,
    tree,
)

DRIVERS = int(os.environ.get("BENCH_SCALE_DRIVERS", "50000"))
PER_MIN = float(os.environ.get("BENCH_SCALE_PER_MIN", "1000"))
MINUTES = float(os.environ.get("BENCH_SCALE_MINUTES", "10"))
PARTS = int(os.environ.get("BENCH_SCALE_PARTS", "4"))
REPORT_EVERY_S = float(os.environ.get("BENCH_SCALE_REPORT_EVERY_S", "4"))
#: Rider accounts across the fleet (one ride at a time each).
RIDERS = int(os.environ.get("BENCH_SCALE_RIDERS", str(max(1000, int(PER_MIN * 20)))))
#: The morning peak is at 8:00; starting just before it keeps the rate near the peak.
START_HOUR = float(os.environ.get("BENCH_SCALE_START_HOUR", "7.92"))
SEED = int(os.environ.get("BENCH_SCALE_SEED", "11"))
CAP_S = float(os.environ.get("BENCH_SCALE_CAP_S", "2400"))
SAMPLE_S = 10.0
API = "serve --role api --workers 2"
DESIGN = DRIVERS == 50_000 and PER_MIN == 1000


def _metric_sum(text: str, name: str) -> dict[str, float]:
    """``name``'s samples by their label string (prometheus text format)."""
    found: dict[str, float] = {}
    for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? ([0-9.eE+-]+)$", text, re.MULTILINE):
        found[m.group(1) or ""] = found.get(m.group(1) or "", 0.0) + float(m.group(2))
    return found


async def _fixes(client: httpx.AsyncClient) -> dict[str, float] | None:
    try:
        answer = await client.get("/metrics", timeout=5)
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    by = _metric_sum(answer.text, "ridehail_location_fixes_total")
    return {re.sub(r'.*outcome="([^"]*)".*', r"\1", k) or "all": v for k, v in by.items()}


async def _pg_counts(database: str) -> dict[str, int] | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(common.pg_dsn(database), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        users = await conn.fetchval("SELECT count(*) FROM accounts_users")
        rides = await conn.fetch("SELECT status, count(*) AS n FROM rides_rides GROUP BY status")
        offers = await conn.fetchval("SELECT count(*) FROM dispatch_offers")
        return {
            "users": int(users),
            "offers": int(offers),
            **{f"rides_{r['status']}": int(r["n"]) for r in rides},
        }
    finally:
        await conn.close()


class Sampler:
    """Every SAMPLE_S: CPU per group over the interval (cores), fixes counted by the API,
    rows in the database."""

    def __init__(self, meter: CpuMeter, url: str, database: str) -> None:
        self.meter = meter
        self.url = url
        self.database = database
        self.samples: list[dict[str, Any]] = []
        self.began = time.monotonic()
        #: Every pid seen in the API's process tree: more than at the start means uvicorn's
        #: supervisor replaced a worker (it kills one that misses its health check).
        self.api_pids_seen: set[int] = set()

    async def loop(self) -> None:
        previous: dict[str, float] = {}
        last = time.monotonic()
        async with httpx.AsyncClient(base_url=self.url) as client:
            while True:
                await asyncio.sleep(SAMPLE_S)
                self.meter.sample()
                now = time.monotonic()
                used: dict[str, float] = {}
                for pid, label in self.meter.group.items():
                    used[label] = (
                        used.get(label, 0.0) + self.meter.last[pid] - self.meter.first[pid]
                    )
                interval = now - last
                cores = {
                    k: round((v - previous.get(k, 0.0)) / interval, 2) for k, v in used.items()
                }
                previous, last = used, now
                api_pids = set(tree(self.meter.roots[API][0])) if API in self.meter.roots else set()
                self.api_pids_seen |= api_pids
                sample = {
                    "t_s": round(now - self.began, 1),
                    "api_processes": len(api_pids),
                    "api_processes_started_so_far": len(self.api_pids_seen),
                    "cores": cores,
                    "fixes": await _fixes(client),
                    "db": await _pg_counts(self.database),
                    "load_average": common.load_average(),
                }
                self.samples.append(sample)
                print(f"   t={sample['t_s']:.0f}s {json.dumps(sample)}", flush=True)


def _merge(outs: list[Path]) -> dict[str, Any] | None:
    from ridehail.simulator.metrics import merge_parts

    parts = []
    for out in outs:
        path = out / "metrics.json"
        if path.exists():
            data = json.loads(path.read_text())
            parts.append(data[0] if isinstance(data, list) else data)
    if not parts:
        return None
    return merge_parts(parts) if len(parts) > 1 else parts[0]


async def run() -> dict[str, Any]:
    began = common.started()
    label = (
        "design point"
        if DESIGN
        else f"scaled down: {DRIVERS:,} drivers, {PER_MIN:,.0f} requests/min (not the design point)"
    )
    common.banner(f"8. city scale ({label}), {PARTS} simulator processes, {MINUTES:g} min")
    result: dict[str, Any] = {
        "settings": {
            "label": label,
            "design_point": DESIGN,
            "drivers": DRIVERS,
            "riders": RIDERS,
            "requests_per_min_at_peak": PER_MIN,
            "minutes": MINUTES,
            "report_every_s": REPORT_EVERY_S,
            "simulator_processes": PARTS,
            "start_hour": START_HOUR,
            "seed": SEED,
            "cap_s": CAP_S,
            "time_scale": 1.0,
            "server_settings_not_as_shipped": {
                "RIDEHAIL_ARGON2_TIME_COST": 1,
                "RIDEHAIL_ARGON2_MEMORY_KIB": 1024,
                "RIDEHAIL_RATE_LIMIT_PER_MINUTE": 0,
                "RIDEHAIL_LOG_LEVEL": "WARNING",
            },
            "machine": common.machine_facts(),
            "limits": {
                "open_files_per_process": int(common._run(["sh", "-c", "ulimit -n"]) or 0),
                "ephemeral_ports": common._run(
                    ["cat", "/proc/sys/net/ipv4/ip_local_port_range"]
                ).split(),
            },
        }
    }
    start = time.monotonic()
    prefix = common.new_prefix()
    async with common.pg_database() as database, common.redis_client(prefix) as redis:
        result["settings"]["redis"] = await common.redis_facts(redis)
        result["settings"]["postgres"] = await common.pg_facts()
        with tempfile.TemporaryDirectory(prefix="ridehail-scale-") as name:
            tmp = Path(name)
            var_dir = tmp / "var"
            var_dir.mkdir()
            env = production_env(var_dir, database, prefix, secrets.token_urlsafe(48), 1.0)
            prepare_database(env)
            port = common.free_port()
            url = f"http://127.0.0.1:{port}"
            processes = layout_processes("api_workers", port, tmp)
            with running(processes, env, url):
                result.update(await _drive(processes, url, database, tmp))
            result["server_log_tail"] = {
                p.name: p.log.read_text(errors="replace")[-1500:] for p in processes
            }
    result["wall_s"] = round(time.monotonic() - start, 1)
    path = common.write_part("city_scale", began, result)
    print(f"   wrote {path.relative_to(common.ROOT)} ({result['wall_s']} s)")
    return result


async def _drive(processes: list[Any], url: str, database: str, tmp: Path) -> dict[str, Any]:
    meter = CpuMeter(
        roots={p.name: [p.proc.pid] for p in processes if p.proc is not None},
        names={"postgresql (all processes)": "postgres", "redis-server": "redis-server"},
    )
    meter.start()
    sampler = Sampler(meter, url, database)
    sampling = asyncio.ensure_future(sampler.loop())
    outs = [tmp / f"part{k}" for k in range(1, PARTS + 1)]
    sims: list[asyncio.subprocess.Process] = []
    for k, out in enumerate(outs, start=1):
        out.mkdir()
        args = [
            "simulate", "--url", url, "--drivers", str(DRIVERS), "--riders", str(RIDERS),
            "--part", f"{k}/{PARTS}", "--time-scale", "1", "--minutes", str(MINUTES),
            "--seed", str(SEED), "--peak-per-min", str(PER_MIN), "--start-hour", str(START_HOUR),
            "--report-every", str(REPORT_EVERY_S), "--out", str(out), "--no-live",
        ]  # fmt: skip
        if k == 1:
            args += ["--admin-email", ADMIN[0], "--admin-password", ADMIN[1]]
        with (out / "simulate.log").open("wb") as sink:
            sims.append(
                await asyncio.create_subprocess_exec(
                    common.PYTHON,
                    "-m",
                    "bench.simulate_logged",
                    *args,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    cwd=common.ROOT,
                )
            )
        meter.roots[f"simulator {k}"] = [sims[-1].pid]
    print(f"   {PARTS} simulators started: ridehail {' '.join(args)}", flush=True)
    finished = True
    try:
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in sims)), timeout=CAP_S)
    except TimeoutError:
        finished = False
        print(f"   not finished after {CAP_S:.0f} s: stopping the simulators", flush=True)
    finally:
        for sim in sims:
            if sim.returncode is None:
                for pid in reversed(tree(sim.pid)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, 15)
        for sim in sims:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sim.wait(), timeout=30)
            if sim.returncode is None:
                sim.kill()
                await sim.wait()
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
    cpu = await meter.stop()
    merged = _merge(outs)
    tails = {
        f"simulator {k}": (out / "simulate.log").read_text(errors="replace")[-1500:]
        for k, out in enumerate(outs, start=1)
    }
    measured: dict[str, Any] = {
        "finished": finished,
        "simulator_exit_codes": [s.returncode for s in sims],
        "parts_with_metrics": sum((o / "metrics.json").exists() for o in outs),
        "cpu": cpu,
        "samples": sampler.samples,
        "simulator_log_tail": tails,
    }
    if merged is not None:
        s = summary_of(merged)
        frames = (merged.get("latency_ms") or {}).get("WS location frame", {}).get("count") or 0
        s["location_frames_sent"] = frames
        s["location_frames_per_s"] = (
            round(frames / merged["wall_s"], 1) if merged["wall_s"] else None
        )
        timeline = merged.get("timeline") or []
        s["drivers_online_max"] = max((b.get("drivers_online", 0) for b in timeline), default=0)
        for key in ("streams_dropped", "streams_reopened", "skipped_location_reports"):
            if key in merged:
                s[key] = merged[key]
        measured["run"] = s
    return measured


def main() -> None:
    common.exit_cleanly_on_sigterm()
    asyncio.run(run())


if __name__ == "__main__":
    main()
