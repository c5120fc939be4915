"""Benchmark 6: dispatch latency end to end. 50,000 available drivers in the store, rides
requested at 10,000 a minute (ten times the design peak) for 60 s; for every ride, the time
from its `POST /api/v1/rides` answer (202) to the first offer pushed to a driver.

Per strategy (sequential, batch with its window, broadcast) a fresh `ridehail serve` (one
uvicorn process, role `all`: the API, the outbox relay and the dispatcher share it) on the
production profile, with its own PostgreSQL database and Redis key prefix, as shipped (log
INFO) except for the strategy and ``RIDEHAIL_LOCATION_STALE_AFTER_S`` (raised to 1,800 s so
that the seeded positions stay fresh for the whole run without a second load on the machine).

Set-up, not measured: the drivers' and riders' rows are bulk-inserted with COPY (signing
60,000 people up through the API would hash 60,000 passwords; nobody logs in here, so the
password hash is a placeholder that matches no password); the drivers are available and
active, 4 seats, went available up to an hour ago. Their positions (benchmark 2's city,
`common.make_city`) go into Redis through `RedisLocationStore.record_many` with the server's
key prefix and region resolution. The riders' access tokens are minted by
`ridehail.accounts.Tokens` with the server's secret.

Measured: a separate subscriber process PSUBSCRIBEs (redis-py asyncio) to every driver's
offer channel (``<prefix>rt:driver:*:offers``, where the dispatcher publishes after the
offer commits) before any ride is requested, and stamps each message on arrival
(``time.monotonic``: CLOCK_MONOTONIC, one clock for every process of the machine). The
load generator (this process, uvloop, a minimal keep-alive HTTP/1.1 client: httpx cost more
CPU per request than the server and fell seconds behind the schedule) sends each ride at its
slot of a fixed schedule (open loop: a slow answer does not delay the next request), each
from a different rider, pickup and drop-off from the city's mixture, and stamps each 202 on
arrival. Latency = first offer push for the ride - its 202. A ride without an offer by the
end of the drain counts as infinitely late in the percentiles.

Baselines in the same run: the 202 time itself; Redis PUBLISH -> message through the same
subscriber (a probe every 0.2 s, unloaded and under the load); 20 rides requested one at a
time on the unloaded server before the load. Where the time went comes from the database
afterwards: per ride, the outbox row's published_at (set by the relay right after XADD),
the search's created_at (the dispatch handler took the event) and the first offer's
created_at (the start of the round that made it), mapped onto the monotonic clock; and how
many rides passed each of those points per second during the load. From the server's
`/metrics`, before and after the load: ``ridehail_dispatch_round_seconds`` and
``ridehail_dispatch_steps_total``. CPU (from /proc and Redis INFO) of the server, of every
PostgreSQL process, of Redis, of the load generator and subscriber, and of the rest of the
machine (other jobs on a shared machine).

    .venv/bin/python -m bench.dispatch_latency     # BENCH_DISPATCH_SECONDS=15 to try it
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import common
from bench.ingest_http import (
    CLK_TCK,
    Target,
    cpu_seconds,
    ridehail_env,
    start,
    stop,
    tail,
    wait_ready,
)
from bench.ingest_http import upgrade_database as migrate

DRIVERS = int(os.environ.get("BENCH_DISPATCH_DRIVERS", str(common.DRIVERS)))
RIDES_PER_MIN = float(os.environ.get("BENCH_DISPATCH_RIDES_PER_MIN", "10000"))
SECONDS = float(os.environ.get("BENCH_DISPATCH_SECONDS", "60"))
#: Also measured: sequential at the design peak (1,000 rides/min); 0 leaves it out.
DESIGN_PEAK_PER_MIN = float(os.environ.get("BENCH_DISPATCH_PEAK_PER_MIN", "1000"))
DESIGN_PEAK_RUN = f"sequential at the design peak ({DESIGN_PEAK_PER_MIN:,.0f} rides/min)"
STRATEGIES = tuple(
    s.strip()
    for s in os.environ.get("BENCH_DISPATCH_STRATEGIES", "sequential,batch,broadcast").split(",")
    if s.strip()
)
BATCH_WINDOW_S = float(os.environ.get("BENCH_DISPATCH_BATCH_WINDOW_S", "2"))
#: After the last request, how long rides still without an offer are waited for.
DRAIN_S = float(os.environ.get("BENCH_DISPATCH_DRAIN_S", "30"))
#: Positions count as fresh this long (the server's RIDEHAIL_LOCATION_STALE_AFTER_S).
STALE_AFTER_S = 1800.0
#: "Got an offer at all" means within this long of the 202.
WITHIN_S = 5.0
#: Unloaded baseline: rides requested one at a time before the load, this far apart.
IDLE_RIDES = 20
IDLE_GAP_S = 0.5
PROBE_EVERY_S = 0.2
TARGET_P99_MS = 50.0
SEGMENT_S = 10.0
HTTP_CONNECTIONS = 512
OFFERS_TOPIC = "rides.requested"
PROBE_DRIVER = "drv_benchprobe"


# ---------------------------------------------------------------- the subscriber process


async def _subscribe(pattern: str, out: Path) -> None:
    """PSUBSCRIBE to ``pattern``; stamp every message on arrival; on EOF of stdin, write
    each ride's first offer, the offer count and the probes to ``out``."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(common.REDIS_URL)
    pubsub = client.pubsub()
    await pubsub.psubscribe(pattern)
    got: list[tuple[float, bytes]] = []
    stop_at = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wait_for_eof() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop_at.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()

    async def read() -> None:
        clock = time.monotonic
        append = got.append
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message["type"] == "pmessage":
                append((clock(), message["data"]))

    reader = asyncio.create_task(read())
    print("ready", flush=True)
    await stop_at.wait()
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await client.aclose()
    _write_pushes(got, out)


def _write_pushes(got: list[tuple[float, bytes]], out: Path) -> None:
    first: dict[str, float] = {}
    probes: dict[str, float] = {}
    offers = 0
    for at, data in got:
        body = json.loads(data)
        if body.get("type") == "probe":
            probes[str(body["n"])] = at
        elif body.get("type") == "offer":
            offers += 1
            first.setdefault(body["ride_id"], at)
    out.write_text(json.dumps({"first_offer": first, "offers": offers, "probes": probes}))


@dataclass
class Subscriber:
    proc: asyncio.subprocess.Process
    out: Path

    @classmethod
    async def start(cls, pattern: str, out: Path) -> Subscriber:
        proc = await asyncio.create_subprocess_exec(
            common.PYTHON,
            "-m",
            "bench.dispatch_latency",
            "subscribe",
            pattern,
            str(out),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=common.ROOT,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        if line.strip() != b"ready":
            raise RuntimeError(f"subscriber did not start: {line!r}")
        return cls(proc, out)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    async def finish(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await asyncio.wait_for(self.proc.wait(), timeout=60)
        if self.proc.returncode != 0:
            raise RuntimeError(f"subscriber exited with {self.proc.returncode}")
        result: dict[str, Any] = json.loads(self.out.read_text())
        return result

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


# ---------------------------------------------------------------- seeding (not measured)


@dataclass
class People:
    driver_ids: list[str]
    rider_tokens: list[str] = field(default_factory=list)


async def seed(database: str, prefix: str, secret: str, riders: int) -> People:
    """Drivers and riders by COPY; drivers' positions through the location store."""
    import asyncpg
    import redis.asyncio as aioredis

    from ridehail.accounts import Tokens
    from ridehail.kernel.auth import Principal, Role
    from ridehail.kernel.ids import new_id
    from ridehail.locations.ports import LocationFix
    from ridehail.locations.redis_store import RedisLocationStore
    from ridehail.settings import Settings

    defaults = Settings(jwt_secret=secret)
    city = common.make_city(DRIVERS)
    rng = random.Random(common.SEED + 60)
    now = datetime.now(UTC)
    hash_placeholder = "bench-seeded:no-password"
    rider_ids = [new_id("rdr") for _ in range(riders)]
    accounts = [
        (d, "driver", f"{d}@bench.invalid", hash_placeholder, f"Driver {n}", None, now)
        for n, d in enumerate(city.ids)
    ] + [
        (r, "rider", f"{r}@bench.invalid", hash_placeholder, f"Rider {n}", None, now)
        for n, r in enumerate(rider_ids)
    ]
    drivers = [
        (
            d,
            f"Driver {n}",
            f"B-{n}",
            "Skoda",
            "Octavia",
            f"BEN-{n}",
            None,
            4,
            True,
            "available",
            now - timedelta(seconds=rng.uniform(0, 3600)),
            now,
        )
        for n, d in enumerate(city.ids)
    ]
    conn = await asyncpg.connect(common.pg_dsn(database))
    try:
        await conn.copy_records_to_table(
            "accounts_users",
            records=accounts,
            columns=["id", "role", "email", "password_hash", "name", "phone", "created_at"],
        )
        await conn.copy_records_to_table(
            "drivers_drivers",
            records=drivers,
            columns=[
                "id",
                "name",
                "license_number",
                "vehicle_make",
                "vehicle_model",
                "vehicle_plate",
                "vehicle_color",
                "vehicle_seats",
                "is_active",
                "availability",
                "availability_changed_at",
                "created_at",
            ],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    client = aioredis.from_url(common.REDIS_URL)
    try:
        store = RedisLocationStore(
            client,
            key_prefix=prefix,
            stale_after_s=STALE_AFTER_S,
            region_resolution=defaults.location_region_resolution,
            driver_ttl_s=defaults.location_driver_ttl_s,
        )
        fixes = [
            LocationFix(driver_id=d, latitude=lat, longitude=lon, recorded_at=now)
            for d, lat, lon in zip(city.ids, city.lats, city.lons, strict=True)
        ]
        outcomes = Counter(str(o) for o in await store.record_many(fixes))
    finally:
        await client.aclose()
    if outcomes["live"] != DRIVERS:
        raise RuntimeError(f"seeding positions: {dict(outcomes)}")
    tokens = Tokens(
        secret=secret,
        issuer=defaults.jwt_issuer,
        audience=defaults.jwt_audience,
        ttl_s=24 * 3600,
    )
    people = People(driver_ids=city.ids)
    people.rider_tokens = [tokens.issue(Principal(r, Role.RIDER)) for r in rider_ids]
    return people


# ---------------------------------------------------------------- load


@dataclass(slots=True)
class Sent:
    scheduled: float
    sent: float = math.nan
    answered: float = math.nan
    status: str = ""
    ride_id: str | None = None


def trips(count: int, seed: int) -> list[dict[str, float]]:
    pickups = common.query_points(count, seed=seed)
    dropoffs = common.query_points(count, seed=seed + 1)
    return [
        {
            "start_latitude": p[0],
            "start_longitude": p[1],
            "end_latitude": d[0],
            "end_longitude": d[1],
        }
        for p, d in zip(pickups, dropoffs, strict=True)
    ]


class RideClient:
    """A minimal HTTP/1.1 client for one request shape: POST a JSON body, read a
    Content-Length answer, keep the connection for the next request. httpx spent about
    10 ms of CPU per request here under this load (and fell seconds behind its schedule),
    more than the server; this spends a small fraction of that. Connections idle longer
    than uvicorn's keep-alive (5 s) are not reused, so a request never meets a connection
    the server has just closed."""

    IDLE_REUSE_S = 3.0

    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self._host = host
        self._port = port
        self._idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(max_connections)
        self.opened = 0

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self._idle:
            used, reader, writer = self._idle.pop()
            if now - used < self.IDLE_REUSE_S:
                return reader, writer
            writer.close()
        self.opened += 1
        return await asyncio.open_connection(self._host, self._port)

    async def post(self, path: str, body: bytes, token: str) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {self._host}:{self._port}\r\n"
            f"content-type: application/json\r\nauthorization: Bearer {token}\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        async with self._slots:
            reader, writer = await self._connection()
            try:
                writer.write(head + body)
                raw = await reader.readuntil(b"\r\n\r\n")
                status = int(raw[9:12])
                lower = raw.lower()
                at = lower.index(b"content-length:") + len(b"content-length:")
                length = int(lower[at : lower.index(b"\r\n", at)])
                answer = await reader.readexactly(length)
            except BaseException:
                writer.close()
                raise
            if b"connection: close" in lower:
                writer.close()
            else:
                self._idle.append((time.monotonic(), reader, writer))
            return status, answer

    async def close(self) -> None:
        for _used, _reader, writer in self._idle:
            writer.close()
        self._idle.clear()


async def request_rides(
    client: RideClient,
    tokens: Sequence[str],
    bodies: Sequence[dict[str, float]],
    rate: float,
) -> tuple[list[Sent], float]:
    """POST one ride per slot of a fixed schedule (``rate`` per second), not waiting for
    answers; returns every request and the time from the first slot to the last send."""
    records = [Sent(scheduled=0.0) for _ in tokens]
    payloads = [json.dumps(b).encode() for b in bodies]
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        record = records[i]
        record.sent = time.monotonic()
        try:
            status, answer = await client.post("/api/v1/rides", payloads[i], tokens[i])
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            record.answered = time.monotonic()
            record.status = type(exc).__name__
            return
        record.answered = time.monotonic()
        record.status = str(status)
        if status == 202:
            record.ride_id = json.loads(answer)["ride_id"]

    began = time.monotonic() + 0.05
    deadline = common.Deadline(len(tokens) / rate + 60, "request schedule")
    for i in range(len(tokens)):
        at = began + i / rate
        records[i].scheduled = at
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        deadline.check()
    spent = time.monotonic() - began
    if tasks:
        await asyncio.wait(tasks, timeout=120)
    return records, spent


async def probe(
    redis: Any, channel: str, every_s: float, stop_at: asyncio.Event
) -> dict[str, float]:
    """PUBLISH a probe every ``every_s`` until ``stop_at``; the send time of each."""
    sent: dict[str, float] = {}
    while not stop_at.is_set():
        key = secrets.token_hex(6)
        sent[key] = time.monotonic()
        await redis.publish(channel, json.dumps({"type": "probe", "n": key}))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_at.wait(), timeout=every_s)
    return sent


# ---------------------------------------------------------------- statistics


def quantiles(values: Sequence[float], missing: int = 0) -> dict[str, Any]:
    """p50/p90/p99/max in ms of ``values`` (seconds) plus ``missing`` infinitely late
    ones; a percentile that falls on a missing one is None."""
    ordered = sorted(values) + [math.inf] * missing
    if not ordered:
        return {"n": 0}

    def ms(value: float) -> float | None:
        return None if math.isinf(value) else round(value * 1000, 2)

    return {
        "n": len(ordered),
        "p50": ms(common.percentile(ordered, 50)),
        "p90": ms(common.percentile(ordered, 90)),
        "p99": ms(common.percentile(ordered, 99)),
        "max": ms(ordered[-1]),
        "mean": round(statistics.fmean(values) * 1000, 2) if values and not missing else None,
    }


def clock_offset() -> float:
    """time.time() - time.monotonic(), the median of a few readings: maps the server's
    wall-clock timestamps onto the monotonic clock the pushes are stamped with."""
    readings = []
    for _ in range(9):
        a = time.monotonic()
        wall = time.time()
        b = time.monotonic()
        readings.append(wall - (a + b) / 2)
    return statistics.median(readings)


@dataclass
class Metrics:
    """The server's dispatch and POST /rides series, for one strategy, at one moment."""

    round_count: float = 0.0
    round_sum_s: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    offers: float = 0.0
    expired: float = 0.0
    post_count: float = 0.0
    post_sum_s: float = 0.0

    @classmethod
    def parse(cls, text: str, strategy: str) -> Metrics:
        from prometheus_client.parser import text_string_to_metric_families

        m = cls()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels, name, value = sample.labels, sample.name, sample.value
                if family.name == "ridehail_dispatch_round_seconds":
                    if labels.get("strategy") != strategy:
                        continue
                    if name.endswith("_bucket"):
                        m.buckets[float(labels["le"])] = value
                    elif name.endswith("_count"):
                        m.round_count = value
                    elif name.endswith("_sum"):
                        m.round_sum_s = value
                elif family.name == "ridehail_dispatch_steps" and name.endswith("_total"):
                    if labels.get("strategy") == strategy:
                        m.steps[labels["outcome"]] = value
                elif family.name == "ridehail_dispatch_offers" and name.endswith("_total"):
                    m.offers += value
                elif family.name == "ridehail_dispatch_offers_expired" and name.endswith("_total"):
                    m.expired += value
                elif (
                    family.name == "ridehail_http_request_duration_seconds"
                    and labels.get("method") == "POST"
                    and labels.get("route") == "/api/v1/rides"
                ):
                    if name.endswith("_count"):
                        m.post_count = value
                    elif name.endswith("_sum"):
                        m.post_sum_s = value
        return m

    def minus(self, other: Metrics) -> Metrics:
        return Metrics(
            round_count=self.round_count - other.round_count,
            round_sum_s=self.round_sum_s - other.round_sum_s,
            buckets={k: v - other.buckets.get(k, 0.0) for k, v in self.buckets.items()},
            steps={k: v - other.steps.get(k, 0.0) for k, v in self.steps.items()},
            offers=self.offers - other.offers,
            expired=self.expired - other.expired,
            post_count=self.post_count - other.post_count,
            post_sum_s=self.post_sum_s - other.post_sum_s,
        )

    def summary(self, seconds: float) -> dict[str, Any]:
        count = self.round_count
        ordered = sorted(self.buckets.items())

        def bound(q: float) -> float | None:
            """Upper bound (ms) of the bucket holding the q-th percentile round."""
            for le, cumulative in ordered:
                if count and cumulative >= q / 100 * count:
                    return None if math.isinf(le) else le * 1000
            return None

        return {
            "seconds": round(seconds, 1),
            "rounds": int(count),
            "rounds_per_s": round(count / seconds, 1) if seconds > 0 else None,
            "round_mean_ms": round(self.round_sum_s / count * 1000, 1) if count else None,
            "in_rounds_share": round(self.round_sum_s / seconds, 3) if seconds > 0 else None,
            "round_p50_bucket_le_ms": bound(50),
            "round_p99_bucket_le_ms": bound(99),
            "round_buckets_le_ms": {
                ("+Inf" if math.isinf(le) else f"{le * 1000:g}"): int(c) for le, c in ordered
            },
            "steps_by_outcome": {k: int(v) for k, v in sorted(self.steps.items())},
            "offers": int(self.offers),
            "offers_expired": int(self.expired),
            "post_rides": int(self.post_count),
            "post_rides_server_mean_ms": (
                round(self.post_sum_s / self.post_count * 1000, 1) if self.post_count else None
            ),
        }


async def scrape(url: str, strategy: str) -> Metrics:
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        return Metrics.parse((await client.get("/metrics")).text, strategy)


def postgres_cpu_seconds() -> float:
    """CPU of every PostgreSQL process on the machine (the server is shared)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            total += cpu_seconds(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields)
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def cpu_pressure_s() -> float:
    """Seconds in which some runnable task waited for a CPU (PSI), 0 where unsupported."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return 0.0
    return int(line.rsplit("total=", 1)[1]) / 1e6


async def redis_cpu_seconds(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass
class CpuMeter:
    """CPU seconds of everything on the machine that takes part, and of the machine."""

    server_pid: int
    subscriber: Subscriber
    redis: Any

    async def read(self) -> dict[str, float]:
        return {
            "server_process": cpu_seconds(self.server_pid),
            "postgresql_all_processes": postgres_cpu_seconds(),
            "redis": await redis_cpu_seconds(self.redis),
            "load_generator": time.process_time(),
            "subscriber": self.subscriber.cpu_seconds(),
            "machine": machine_busy_seconds(),
            "cpu_pressure": cpu_pressure_s(),
            "wall": time.monotonic(),
        }

    @staticmethod
    def cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """Cores used in between (CPU seconds per second); "other_processes" is the rest of
        the machine (other people's jobs on a shared machine); "cpu_pressure" the share of
        the time some runnable task waited for a CPU."""
        wall = after["wall"] - before["wall"]
        used = {k: (after[k] - before[k]) / wall for k in after if k != "wall"}
        ours = sum(v for k, v in used.items() if k not in ("machine", "cpu_pressure"))
        used["other_processes"] = max(0.0, used["machine"] - ours)
        return {k: round(v, 2) for k, v in used.items()}


# ---------------------------------------------------------------- one strategy


async def path_times(
    database: str, ride_ids: list[str]
) -> tuple[dict[str, dict[str, float]], list[float]]:
    """Per ride, the server's wall-clock stamps along the path (epoch seconds); and when
    every offer (first or not) was made."""
    import asyncpg

    conn = await asyncpg.connect(common.pg_dsn(database))
    try:
        rows = await conn.fetch(
            """
            SELECT r.id, r.created_at AS ride_at, o.published_at, s.created_at AS search_at,
                   (SELECT min(f.created_at) FROM dispatch_offers f WHERE f.ride_id = r.id)
                       AS offer_at
              FROM rides_rides r
              JOIN outbox_events o ON o.aggregate_id = r.id AND o.topic = $2
              LEFT JOIN dispatch_searches s ON s.ride_id = r.id
             WHERE r.id = ANY($1::text[])
            """,
            ride_ids,
            OFFERS_TOPIC,
        )
        offers = await conn.fetch("SELECT created_at FROM dispatch_offers")
    finally:
        await conn.close()
    stamps = {
        row["id"]: {
            k: row[k].timestamp()
            for k in ("ride_at", "published_at", "search_at", "offer_at")
            if row[k] is not None
        }
        for row in rows
    }
    return stamps, [row["created_at"].timestamp() for row in offers]


async def pg_transactions(database: str) -> tuple[int, int]:
    """Transactions the database has committed and rolled back so far (pg_stat_database;
    the pool's pre-ping on every checkout is a transaction rolled back)."""
    import asyncpg

    conn = await asyncpg.connect(common.pg_dsn(database))
    try:
        row = await conn.fetchrow(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1",
            database,
        )
    finally:
        await conn.close()
    return int(row["xact_commit"]), int(row["xact_rollback"])


async def rides_with_offers(database: str) -> set[str]:
    import asyncpg

    conn = await asyncpg.connect(common.pg_dsn(database))
    try:
        rows = await conn.fetch("SELECT DISTINCT ride_id FROM dispatch_offers")
    finally:
        await conn.close()
    return {r["ride_id"] for r in rows}


STAGES = (
    ("202 received -> event published (outbox relay)", "answered", "published_at"),
    ("event published -> search opened (stream consumer)", "published_at", "search_at"),
    ("search opened -> round began (dispatcher queue)", "search_at", "offer_at"),
    ("round began -> offer push received (round, commit, PUBLISH)", "offer_at", "pushed"),
)


def breakdown(
    sent: list[Sent],
    first: dict[str, float],
    stamps: dict[str, dict[str, float]],
    offset: float,
) -> dict[str, Any]:
    """Where each offered ride's time went, stage by stage (monotonic seconds)."""
    per_stage: dict[str, list[float]] = {label: [] for label, _a, _b in STAGES}
    server_post: list[float] = []
    for record in sent:
        ride = record.ride_id
        if ride is None or ride not in first or ride not in stamps:
            continue
        at = {k: v - offset for k, v in stamps[ride].items()}
        at["answered"] = record.answered
        at["pushed"] = first[ride]
        if not all(k in at for _l, a, b in STAGES for k in (a, b)):
            continue
        for label, a, b in STAGES:
            per_stage[label].append(at[b] - at[a])
        server_post.append(record.answered - at["ride_at"])
    return {
        "rides": len(server_post),
        "stages": {label: quantiles(v) for label, v in per_stage.items()},
        "ride_row_to_202_received": quantiles(server_post),
    }


def stage_rates(
    sent: list[Sent],
    first: dict[str, float],
    stamps: dict[str, dict[str, float]],
    offers_at: list[float],
    offset: float,
    window: tuple[float, float],
) -> dict[str, float]:
    """How many rides passed each point of the path per second while the load ran: a
    stage slower than the arrivals queues them up (its rate stays below the POST rate)."""
    low, high = window
    seconds = high - low

    def rate(times: list[float]) -> float:
        return round(sum(1 for t in times if low <= t < high) / seconds, 1)

    def server(key: str) -> list[float]:
        return [v[key] - offset for v in stamps.values() if key in v]

    return {
        "seconds": round(seconds, 1),
        "posts_sent": rate([r.sent for r in sent]),
        "answered_202": rate([r.answered for r in sent if r.ride_id is not None]),
        "events_relayed": rate(server("published_at")),
        "searches_opened": rate(server("search_at")),
        "first_offers_made": rate(server("offer_at")),
        "first_offers_pushed": rate(list(first.values())),
        "offers_made_all": rate([t - offset for t in offers_at]),
    }


def segments(sent: list[Sent], first: dict[str, float], began: float) -> list[dict[str, Any]]:
    """Offer latency by when the ride was requested, SEGMENT_S at a time."""
    groups: dict[int, list[Sent]] = {}
    for record in sent:
        if record.ride_id is not None:
            groups.setdefault(int((record.scheduled - began) // SEGMENT_S), []).append(record)
    out = []
    for n in sorted(groups):
        rides = groups[n]
        got = [first[r.ride_id] - r.answered for r in rides if r.ride_id in first]
        out.append(
            {
                "from_s": n * SEGMENT_S,
                "rides": len(rides),
                **{
                    k: v
                    for k, v in quantiles(got, missing=len(rides) - len(got)).items()
                    if k in ("p50", "p99", "max")
                },
            }
        )
    return out


def offer_latency(sent: list[Sent], first: dict[str, float]) -> dict[str, Any]:
    accepted = [r for r in sent if r.ride_id is not None]
    got = [first[r.ride_id] - r.answered for r in accepted if r.ride_id in first]
    stats = quantiles(got, missing=len(accepted) - len(got))
    stats["offered"] = len(got)
    stats["offered_within_5s"] = sum(1 for v in got if v <= WITHIN_S)
    stats["no_offer"] = len(accepted) - len(got)
    stats["mean_of_offered"] = round(statistics.fmean(got) * 1000, 2) if got else None
    stats["offered_only"] = quantiles(got)
    return stats


def post_summary(sent: list[Sent], spent: float) -> dict[str, Any]:
    statuses = Counter(r.status for r in sent)
    answered = [r.answered - r.sent for r in sent if r.status == "202"]
    lag = [r.sent - r.scheduled for r in sent]
    return {
        "requests": len(sent),
        "accepted_202": statuses.get("202", 0),
        "failed": len(sent) - statuses.get("202", 0),
        "failures": {k: v for k, v in statuses.items() if k != "202"},
        "achieved_rate_per_s": round(len(sent) / spent, 1) if spent > 0 else None,
        "send_lag_behind_schedule_ms": quantiles(lag),
        "response_202_ms": quantiles(answered),
    }


async def run_strategy(
    strategy: str, tmp: Path, rides_per_min: float = RIDES_PER_MIN
) -> dict[str, Any]:
    rate = rides_per_min / 60
    load_rides = round(rate * SECONDS)
    prefix = common.new_prefix()
    secret = secrets.token_urlsafe(48)
    window = BATCH_WINDOW_S if strategy == "batch" else None
    async with common.pg_database() as database, common.redis_client(prefix) as redis:
        migrate(database, prefix)
        with common.timed(f"seeded {DRIVERS} drivers and {load_rides + IDLE_RIDES} riders"):
            people = await seed(database, prefix, secret, load_rides + IDLE_RIDES)
        settings = {
            "database_url": common.sqlalchemy_pg_url(database),
            "redis_url": common.REDIS_URL,
            "redis_key_prefix": prefix,
            "jwt_secret": secret,
            "log_level": "INFO",
            "dispatch_strategy": strategy,
            "location_stale_after_s": f"{STALE_AFTER_S:g}",
        }
        if window is not None:
            settings["dispatch_batch_window_s"] = f"{window:g}"
        serve = str(Path(common.PYTHON).parent / "ridehail")
        target = Target(
            strategy, "ridehail serve (role all)", [serve, "serve"], ridehail_env(**settings)
        )
        subscriber: Subscriber | None = None
        try:
            start(target, tmp)
            wait_ready(target, "/readyz")
            served_from = time.monotonic()
            assert target.proc is not None
            pattern = f"{prefix}rt:driver:*:offers"
            subscriber = await Subscriber.start(pattern, tmp / f"{strategy}-pushes.json")
            meter = CpuMeter(target.proc.pid, subscriber, redis)
            probe_channel = f"{prefix}rt:driver:{PROBE_DRIVER}:offers"
            tokens = people.rider_tokens
            client = RideClient("127.0.0.1", target.port, HTTP_CONNECTIONS)
            try:
                # Unloaded: probes alone, then rides one at a time.
                stop_probes = asyncio.Event()
                probing = asyncio.create_task(
                    probe(redis, probe_channel, PROBE_EVERY_S, stop_probes)
                )
                await asyncio.sleep(2.0)
                idle_trips = trips(IDLE_RIDES, common.SEED + 61)
                idle_sent, _ = await request_rides(
                    client, tokens[:IDLE_RIDES], idle_trips, 1 / IDLE_GAP_S
                )
                await asyncio.sleep(max(3.0, 2 * (window or 0)))
                stop_probes.set()
                idle_probes = await probing
                # The load, with probes alongside.
                await asyncio.sleep(1.0)
                before_load = await scrape(target.url, strategy)
                cpu_before = await meter.read()
                xacts_before = await pg_transactions(database)
                began = time.monotonic()
                stop_probes = asyncio.Event()
                probing = asyncio.create_task(
                    probe(redis, probe_channel, PROBE_EVERY_S, stop_probes)
                )
                print(f"   {strategy}: {load_rides} rides at {rate:.1f}/s ...", flush=True)
                sent, spent = await request_rides(
                    client, tokens[IDLE_RIDES:], trips(load_rides, common.SEED + 62), rate
                )
                stop_probes.set()
                load_probes = await probing
                cpu = CpuMeter.cores(cpu_before, await meter.read())
                load_s = time.monotonic() - began
                xacts_after = await pg_transactions(database)
                after_load = await scrape(target.url, strategy)
                # Drain: until every accepted ride has an offer, or DRAIN_S.
                wanted = {r.ride_id for r in sent if r.ride_id is not None}
                drain_began = time.monotonic()
                while time.monotonic() - drain_began < DRAIN_S:
                    if wanted <= await rides_with_offers(database):
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(1.0)  # the last pushes follow their commits
                drained_s = time.monotonic() - drain_began
                at_end = await scrape(target.url, strategy)
                connections_opened = client.opened
            finally:
                await client.close()
            pushes = await subscriber.finish()
            offset = clock_offset()
            ride_ids = [r.ride_id for r in idle_sent + sent if r.ride_id]
            stamps, offers_at = await path_times(database, ride_ids)
            server_log = tail(target, 10**9)
        finally:
            if subscriber is not None:
                subscriber.kill()
            stop(target)
    first: dict[str, float] = pushes["first_offer"]
    probes_at: dict[str, float] = pushes["probes"]

    def probe_stats(sent_at: dict[str, float]) -> dict[str, Any]:
        got = [probes_at[k] - v for k, v in sent_at.items() if k in probes_at]
        return quantiles(got, missing=len(sent_at) - len(got))

    load_window = (began, began + spent)
    return {
        "strategy": strategy,
        "batch_window_s": window,
        "rides_offered_rate_per_s": rate,
        "load": post_summary(sent, spent),
        "offer_latency_ms": offer_latency(sent, first),
        "segments": segments(sent, first, began),
        "unloaded": {
            "rides": IDLE_RIDES,
            "gap_s": IDLE_GAP_S,
            "response_202_ms": post_summary(idle_sent, 1.0)["response_202_ms"],
            "offer_latency_ms": offer_latency(idle_sent, first),
            "path": breakdown(idle_sent, first, stamps, offset),
        },
        "publish_probe_ms": {
            "unloaded": probe_stats(idle_probes),
            "under_load": probe_stats(load_probes),
        },
        "path": breakdown(sent, first, stamps, offset),
        "rates_during_load_per_s": stage_rates(sent, first, stamps, offers_at, offset, load_window),
        "offers_pushed": pushes["offers"],
        "drain_s": round(drained_s, 1),
        "metrics_during_load": after_load.minus(before_load).summary(load_s),
        "metrics_whole_run": at_end.summary(time.monotonic() - served_from),
        "cpu_cores_during_load": cpu,
        "postgresql_transactions_per_s_during_load": {
            "committed": round((xacts_after[0] - xacts_before[0]) / load_s, 1),
            "rolled_back": round((xacts_after[1] - xacts_before[1]) / load_s, 1),
        },
        "http_connections_opened": connections_opened,
        "server_log_tracebacks": server_log.count("Traceback"),
    }


async def run() -> dict[str, Any]:
    began = common.started()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ridehail-dispatch-") as tmp_name:
        runs = [(strategy, strategy, RIDES_PER_MIN) for strategy in STRATEGIES]
        if "sequential" in STRATEGIES and DESIGN_PEAK_PER_MIN > 0:
            runs.append((DESIGN_PEAK_RUN, "sequential", DESIGN_PEAK_PER_MIN))
        for name, strategy, per_min in runs:
            clock = time.monotonic()
            result = await run_strategy(strategy, Path(tmp_name), per_min)
            result["wall_s"] = round(time.monotonic() - clock, 1)
            results[name] = result
            lat = result["offer_latency_ms"]
            load = result["load"]
            print(
                f"   {name}: {load['accepted_202']} of {load['requests']} accepted at "
                f"{load['achieved_rate_per_s']}/s; offer p50 {lat['p50']} ms, p99 {lat['p99']}"
                f" ms; offered {lat['offered']} ({lat['offered_within_5s']} within "
                f"{WITHIN_S:g} s); {result['wall_s']} s",
                flush=True,
            )
    part = {
        "settings": {
            "drivers": DRIVERS,
            "rides_per_min": RIDES_PER_MIN,
            "seconds": SECONDS,
            "strategies": list(STRATEGIES),
            "batch_window_s": BATCH_WINDOW_S,
            "location_stale_after_s": STALE_AFTER_S,
            "within_s": WITHIN_S,
            "drain_s": DRAIN_S,
            "idle_rides": IDLE_RIDES,
            "probe_every_s": PROBE_EVERY_S,
            "segment_s": SEGMENT_S,
            "http_connections": HTTP_CONNECTIONS,
            "target_p99_ms": TARGET_P99_MS,
            "server": "ridehail serve (one uvicorn process, role all: API, outbox relay, "
            "dispatcher), production profile (PostgreSQL + Redis), log INFO",
            "machine": common.machine_facts(),
        },
        "strategies": results,
    }
    common.write_part("dispatch_latency", began, part)
    return part


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "subscribe":
        _run_fast(_subscribe(sys.argv[2], Path(sys.argv[3])))
        return
    common.exit_cleanly_on_sigterm()
    common.banner(
        f"6. dispatch latency: {DRIVERS} drivers, {RIDES_PER_MIN:g} rides/min for "
        f"{SECONDS:g} s, strategies {', '.join(STRATEGIES)}"
    )
    with common.timed("dispatch latency, all strategies"):
        _run_fast(run())


def _run_fast(coro: Any) -> None:
    """uvloop if installed (it is a dependency of uvicorn[standard]), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
