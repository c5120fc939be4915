"""Benchmark 1: single-PUT location ingest over HTTP against a bare ASGI endpoint.

Starts `ridehail serve` (one uvicorn process) on the embedded default and on the production
profile, each with the access log as shipped (log level INFO: one structlog line per
request, to a file) and with it filtered out (RIDEHAIL_LOG_LEVEL=WARNING), plus the bare
ASGI app of bench/bare_asgi.py under the same uvicorn flags. Registers 200 drivers over the
API, then drives PUT /api/v1/drivers/{id}/location with wrk and bench/put_location.lua.
Rounds are interleaved (every target once per round) so that drift of a noisy machine
spreads over all targets alike.

    .venv/bin/python -m bench.ingest_http
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import common
from ridehail.simulator import server

DRIVERS = int(os.environ.get("BENCH_HTTP_DRIVERS", "200"))
THREADS = int(os.environ.get("BENCH_WRK_THREADS", "2"))
#: Every target is loaded at each of these numbers of connections (a closed loop: each
#: connection always waiting for its reply) and its capacity is the best of them. A server
#: that answers at once is kept busy by a few; one that waits on a store needs more
#: requests in flight, or it idles while they wait (at 32 the production server was idle
#: 8.7 % of the time, 4.4 % at 128; see docs/benchmarks.md). At 512 the bare app left
#: connections unanswered past wrk's 5 s timeout, so the sweep stops at 128.
CONNECTION_LEVELS = tuple(
    int(c) for c in os.environ.get("BENCH_WRK_CONNECTIONS", "32,128").split(",")
)
CONNECTIONS = CONNECTION_LEVELS[0]
DURATION_S = int(os.environ.get("BENCH_WRK_DURATION_S", "10"))
WARMUP_S = int(os.environ.get("BENCH_WRK_WARMUP_S", "1"))
LUA = common.ROOT / "bench" / "put_location.lua"
#: Servers that ignore ids and tokens: the baseline and a framework reference point.
REFERENCES = ("bare", "starlette_msgspec")
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    key: str
    label: str
    args: list[str]
    env: dict[str, str]
    drivers_file: Path | None = None
    port: int = field(default_factory=common.free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RIDEHAIL_")}


def ridehail_env(**settings: str) -> dict[str, str]:
    env = base_env()
    env.update(
        {
            "RIDEHAIL_ARGON2_TIME_COST": "1",
            "RIDEHAIL_ARGON2_MEMORY_KIB": "64",
            **{f"RIDEHAIL_{k.upper()}": v for k, v in settings.items()},
        }
    )
    return env


def start(target: Target, logs: Path) -> None:
    target.log = logs / f"{target.key}.log"
    with target.log.open("wb") as handle:
        target.proc = subprocess.Popen(
            [*target.args, "--host", "127.0.0.1", "--port", str(target.port)],
            env=target.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=common.ROOT,
        )


def wait_ready(target: Target, path: str, timeout_s: float = 60.0) -> None:
    assert target.proc is not None
    server.wait_ready(
        target.url, [target.proc], timeout_s=timeout_s, path=path, explain=lambda: tail(target)
    )


def tail(target: Target, chars: int = 3000) -> str:
    return target.log.read_text(errors="replace")[-chars:] if target.log else ""


def stop(target: Target) -> None:
    proc = target.proc
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextlib.contextmanager
def paused(targets: list[Target]) -> Iterator[None]:
    """``targets`` stopped (SIGSTOP) meanwhile, then continued. An idle ridehail server
    still runs its background loops (dispatch rounds, outbox and stream polls): about 3.5 %
    of a core each here, four of them a seventh of a core, and the queries they send cost
    PostgreSQL more. The target under load gets the machine to itself and wrk."""
    stopped = [t.proc for t in targets if t.proc is not None and t.proc.poll() is None]
    for proc in stopped:
        proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for proc in stopped:
            proc.send_signal(signal.SIGCONT)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


async def register_drivers(base_url: str, count: int, tag: str) -> list[str]:
    """Sign up ``count`` drivers, get their tokens, make them available: "id token" lines."""
    sem = asyncio.Semaphore(8)
    deadline = common.Deadline(180, "driver registration")

    async def one(client: httpx.AsyncClient, n: int) -> str:
        async with sem:
            deadline.check()
            email = f"bench-{tag}-{n}@example.com"
            password = "bench-password-1"
            reply = await client.post(
                "/api/v1/drivers",
                json={
                    "name": f"Bench Driver {n}",
                    "email": email,
                    "password": password,
                    "license_number": f"B-{n}",
                    "vehicle": {"make": "Skoda", "model": "Octavia", "plate": f"BEN-{n}"},
                },
            )
            reply.raise_for_status()
            driver_id = reply.json()["driver_id"]
            reply = await client.post(
                "/api/v1/auth/token", json={"email": email, "password": password}
            )
            reply.raise_for_status()
            token = reply.json()["access_token"]
            reply = await client.put(
                f"/api/v1/drivers/{driver_id}/availability",
                json={"status": "available"},
                headers={"authorization": f"Bearer {token}"},
            )
            reply.raise_for_status()
            return f"{driver_id} {token}"

    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
        return list(await asyncio.gather(*(one(client, n) for n in range(count))))


def wrk(
    target: Target,
    duration_s: int,
    *,
    script: Path = LUA,
    script_args: list[str] | None = None,
    connections: int = CONNECTIONS,
) -> dict[str, Any]:
    """One wrk run of ``script`` (given the target's drivers file, then ``script_args``:
    by default the number of threads, which put_location.lua splits the drivers by)."""
    assert target.drivers_file is not None
    assert target.proc is not None
    cmd = [
        common.need("wrk"),
        f"-t{THREADS}",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        target.url,
        "--",
        str(target.drivers_file),
        *(script_args if script_args is not None else [str(THREADS)]),
    ]
    cpu_before = cpu_seconds(target.proc.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60, check=True)
    cpu_used = cpu_seconds(target.proc.pid) - cpu_before
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["server_cpu_us_per_request"] = cpu_used * 1e6 / max(1, result["requests"])
    return result


#: Runs by connection level, one per round.
Runs = dict[int, list[dict[str, Any]]]


def _capacities(by_level: Runs) -> list[float]:
    """Each round's best requests/s over the connection levels."""
    per_level = [[r["rps"] for r in runs] for runs in by_level.values()]
    return [max(round_rps) for round_rps in zip(*per_level, strict=True)]


def _spread_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests_per_s": common.spread([r["rps"] for r in runs], 0),
        "p50_ms": common.spread([r["p50_us"] / 1000 for r in runs], 2),
        "p99_ms": common.spread([r["p99_us"] / 1000 for r in runs], 2),
        "server_cpu_us_per_request": common.spread(
            [r["server_cpu_us_per_request"] for r in runs], 0
        ),
    }


def summarize(target: Target, by_level: Runs, bare: Runs | None = None) -> dict[str, Any]:
    """Per connection level, and the capacity (each round's best level); with ``bare``
    (the bare runs paired with this target's), the ratios to bare of both."""
    levels = {level: _spread_of(runs) for level, runs in by_level.items()}
    capacities = _capacities(by_level)
    best = max(levels, key=lambda level: levels[level]["requests_per_s"]["median"])
    every = [r for runs in by_level.values() for r in runs]
    result: dict[str, Any] = {
        "label": target.label,
        "requests_per_s": common.spread(capacities, 0),
        "best_connections": best,
        **{k: v for k, v in levels[best].items() if k != "requests_per_s"},
        "levels": {str(level): v for level, v in levels.items()},
        "requests": sum(r["requests"] for r in every),
        "non_2xx": sum(r["non_2xx"] for r in every),
        "socket_errors": sum(r["socket_errors"] + r["timeouts"] for r in every),
    }
    if bare is not None:
        result["ratio_to_bare"] = common.spread(
            [c / b for c, b in zip(capacities, _capacities(bare), strict=True)], 3
        )
        for level, runs in by_level.items():
            result["levels"][str(level)]["ratio_to_bare"] = common.spread(
                [r["rps"] / b["rps"] for r, b in zip(runs, bare[level], strict=True)], 3
            )
    return result


async def prepare(targets: dict[str, Target], tmp: Path) -> None:
    for target in targets.values():
        start(target, tmp)
    for target in targets.values():
        wait_ready(target, "/healthz" if target.key in REFERENCES else "/readyz")
    keys = ("embedded_log", "embedded_nolog", "production_log")
    with common.timed(f"registered {DRIVERS} drivers on each of {', '.join(keys)}"):
        signed_up = await asyncio.gather(
            *(register_drivers(targets[key].url, DRIVERS, key) for key in keys)
        )
    for key, lines in zip(keys, signed_up, strict=True):
        targets[key].drivers_file = write_lines(tmp / f"{key}-drivers.txt", lines)
    # Both production servers share the database, Redis prefix and JWT secret. The bare app
    # ignores ids and tokens but gets byte-for-byte the same shape of requests.
    targets["production_nolog"].drivers_file = targets["production_log"].drivers_file
    for key in REFERENCES:
        targets[key].drivers_file = targets["production_log"].drivers_file


def build_targets(tmp: Path, database: str, prefix: str) -> dict[str, Target]:
    serve = [str(Path(common.PYTHON).parent / "ridehail"), "serve"]
    jwt_secret = secrets.token_urlsafe(48)

    def embedded(name: str, level: str) -> dict[str, str]:
        (tmp / name).mkdir()
        return ridehail_env(
            database_url=f"sqlite+aiosqlite:///{tmp / name / 'b.db'}",
            var_dir=str(tmp / name / "var"),
            log_level=level,
        )

    def production(level: str) -> dict[str, str]:
        return ridehail_env(
            database_url=common.sqlalchemy_pg_url(database),
            redis_url=common.REDIS_URL,
            redis_key_prefix=prefix,
            jwt_secret=jwt_secret,
            log_level=level,
        )

    return {
        "bare": Target(
            "bare",
            "bare ASGI app (baseline)",
            [common.PYTHON, "-m", "bench.bare_asgi"],
            base_env(),
        ),
        "starlette_msgspec": Target(
            "starlette_msgspec",
            "reference: Starlette route + msgspec body check, no token, no store",
            [common.PYTHON, "-m", "bench.starlette_msgspec"],
            base_env(),
        ),
        "embedded_log": Target(
            "embedded_log",
            "embedded default, access log on (as shipped)",
            serve,
            embedded("embedded_log", "INFO"),
        ),
        "embedded_nolog": Target(
            "embedded_nolog",
            "embedded default, RIDEHAIL_LOG_LEVEL=WARNING",
            serve,
            embedded("embedded_nolog", "WARNING"),
        ),
        "production_log": Target(
            "production_log",
            "production profile, access log on (as shipped)",
            serve,
            production("INFO"),
        ),
        "production_nolog": Target(
            "production_nolog",
            "production profile, RIDEHAIL_LOG_LEVEL=WARNING",
            serve,
            production("WARNING"),
        ),
    }


def upgrade_database(database: str, prefix: str) -> None:
    env = ridehail_env(
        database_url=common.sqlalchemy_pg_url(database),
        redis_url=common.REDIS_URL,
        redis_key_prefix=prefix,
        jwt_secret="unused-for-upgrade",
    )
    subprocess.run(
        [str(Path(common.PYTHON).parent / "ridehail"), "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


def measure(targets: dict[str, Target]) -> tuple[dict[str, Runs], dict[str, Runs]]:
    """Every target but bare, at every level, each run paired with a run of the bare app at
    the same level just before or after it (the order alternating by round), so that a
    ratio compares two runs a few seconds apart: this machine's speed drifts by a quarter
    over minutes. Every other server is paused while one is loaded (see :func:`paused`).
    Rounds rotate the order of targets. Returns the runs of each target
    (bare: all of its runs) and, for each target, the bare runs paired with its own."""
    bare = targets["bare"]
    others = [key for key in targets if key != "bare"]
    runs: dict[str, Runs] = {key: {level: [] for level in CONNECTION_LEVELS} for key in targets}
    paired: dict[str, Runs] = {key: {level: [] for level in CONNECTION_LEVELS} for key in others}
    for round_no in range(common.REPEATS):
        shift = round_no % len(others)
        for key in others[shift:] + others[:shift]:
            pair = [("bare", bare), (key, targets[key])]
            if round_no % 2:
                pair.reverse()
            idle = [t for k, t in targets.items() if k not in ("bare", key)]
            with paused(idle):
                for _, target in pair:
                    wrk(target, WARMUP_S)
            for level in CONNECTION_LEVELS:
                for name, target in pair:
                    with paused([t for k, t in targets.items() if k != name]):
                        result = wrk(target, DURATION_S, connections=level)
                    runs[name][level].append(result)
                    if name == "bare":
                        paired[key][level].append(result)
                    print(
                        f"   round {round_no + 1} {name:17s} c={level:<4d}"
                        f" {result['rps']:8.0f} req/s"
                        f"  p50 {result['p50_us'] / 1000:6.2f} ms"
                        f"  p99 {result['p99_us'] / 1000:6.2f} ms"
                        f"  non-2xx {result['non_2xx']}",
                        flush=True,
                    )
    return runs, paired


async def run() -> dict[str, Any]:
    common.need("wrk")
    began = common.started()
    prefix = common.new_prefix()
    async with common.pg_database() as database, common.redis_client(prefix) as redis:
        upgrade_database(database, prefix)
        with tempfile.TemporaryDirectory(prefix="ridehail-bench-") as tmp_name:
            tmp = Path(tmp_name)
            targets = build_targets(tmp, database, prefix)
            try:
                await prepare(targets, tmp)
                runs, paired = measure(targets)
                stored = len(
                    [k async for k in redis.scan_iter(match=f"{prefix}loc:drv:*", count=1000)]
                )
                access_lines = {
                    key: tail(targets[key], 10**9).count("http_request")
                    for key in ("embedded_log", "embedded_nolog")
                }
            finally:
                for target in targets.values():
                    stop(target)
    results = {key: summarize(targets[key], runs[key], paired.get(key)) for key in targets}
    bad = {k: (v["non_2xx"], v["socket_errors"]) for k, v in results.items()}
    part = {
        "settings": {
            "wrk": f"wrk -t{THREADS} -c<connections> -d{DURATION_S}s --timeout 5s --latency "
            f"-s bench/put_location.lua (after a {WARMUP_S} s warm-up run at "
            f"{CONNECTIONS} connections)",
            "connection_levels": list(CONNECTION_LEVELS),
            "drivers": DRIVERS,
            "repeats": common.REPEATS,
            "server": "ridehail serve (uvicorn, one process, --role all)",
        },
        "targets": results,
        "checks": {
            "production_drivers_with_a_stored_fix": stored,
            "access_log_lines_embedded_log": access_lines["embedded_log"],
            "access_log_lines_embedded_nolog": access_lines["embedded_nolog"],
        },
    }
    common.write_part("ingest_http", began, part)
    if any(n or e for n, e in bad.values()):
        raise SystemExit(f"non-2xx responses or socket errors: {bad}")
    return part


def main() -> None:
    common.exit_cleanly_on_sigterm()
    common.banner("1. HTTP location ingest vs bare ASGI")
    part = asyncio.run(run())
    for key, value in part["targets"].items():
        ratio = value.get("ratio_to_bare", {}).get("median", 1.0)
        by_level = "  ".join(
            f"c={level} {v['requests_per_s']['median']:.0f}"
            + (f" ({v['ratio_to_bare']['median']:.3f})" if "ratio_to_bare" in v else "")
            for level, v in value["levels"].items()
        )
        print(
            f"   {key:17s} capacity {value['requests_per_s']['median']:8.0f} req/s"
            f"  ratio {ratio:.3f}   {by_level}"
        )
    print(json.dumps(part["checks"]))


if __name__ == "__main__":
    main()
