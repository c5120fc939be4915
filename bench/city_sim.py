"""Benchmark 7: the city simulator (`ridehail simulate`) against servers this program
starts, one seed throughout, three trade-offs measured end to end through the public API.

(a) Dispatch strategies: one `ridehail simulate --compare sequential,broadcast,batch` run
    (each strategy gets its own fresh embedded server, same seed: same city, demand and
    driver habits).
(b) Pickup estimates: two runs of the same seed and strategy (sequential), the started
    server ranking by straight-line ETAs (`--server-eta straight_line`) and by the road
    graph (`--server-eta road_network`). The error of each estimate is the estimate at the
    offer minus the drive the simulated car then took from acceptance to the pickup.
(c) Process layout on the production profile (PostgreSQL + Redis, own database and key
    prefix per layout, dropped afterwards): `ridehail serve` (role all, one process) vs
    `ridehail serve --role api --workers 2` + `ridehail worker dispatch`, `payments` and
    `notifications`, both driven by `ridehail simulate --url` with the same fleet and seed.
    Time is compressed (``--time-scale``), so the servers get the settings that
    `ridehail.simulator.server.server_env` gives the embedded one for it (the speed rule
    scaled with time, cheap password hashing, no rate limit, the surge window in wall
    seconds). CPU of every server process (its process tree, from /proc), of PostgreSQL
    (every `postgres` process on the machine), of Redis and of the simulator, over the
    whole simulator invocation (sign-ups included).

Every run's numbers come from the metrics.json the simulator wrote, summarized by
`ridehail.simulator.report.summarize`. Writes bench/results/city_sim.tmp.

    .venv/bin/python -m bench.city_sim     # BENCH_CITY_PARTS=a,b to run a subset
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common
from ridehail.simulator.server import wait_ready

SEED = int(os.environ.get("BENCH_CITY_SEED", "7"))
DRIVERS = int(os.environ.get("BENCH_CITY_DRIVERS", "300"))
COMPARE_MINUTES = float(os.environ.get("BENCH_CITY_COMPARE_MINUTES", "45"))
ETA_MINUTES = float(os.environ.get("BENCH_CITY_ETA_MINUTES", "30"))
PROFILE_MINUTES = float(os.environ.get("BENCH_CITY_PROFILE_MINUTES", "30"))
TIME_SCALE = float(os.environ.get("BENCH_CITY_TIME_SCALE", "40"))
#: Compressed time for the production servers too (they get the matching settings).
PROFILE_TIME_SCALE = float(os.environ.get("BENCH_CITY_PROFILE_TIME_SCALE", "30"))
PARTS = tuple(p for p in os.environ.get("BENCH_CITY_PARTS", "a,b,c").split(",") if p)
STRATEGIES = ("sequential", "broadcast", "batch")
RIDEHAIL = str(Path(common.PYTHON).parent / "ridehail")
ADMIN = ("bench-admin@example.com", "bench-admin-password")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- /proc


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant of it alive now."""
    children: dict[int, list[int]] = {}
    for p in _all_pids():
        fields = _stat(p)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(p)
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def cpu_s(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def pids_named(name: str) -> list[int]:
    found = []
    for pid in _all_pids():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                found.append(pid)
    return found


class CpuMeter:
    """CPU seconds per named group of processes between ``start`` and ``stop``: a group is
    the process trees of some roots (re-walked at every sample, so forked children count)
    or every process with a command name. Sampled every ``every_s`` so that processes that
    exit before the end still count up to their last sample; a process seen first after the
    start counts from zero."""

    def __init__(self, roots: dict[str, list[int]], names: dict[str, str], every_s: float = 1.0):
        self.roots = roots
        self.names = names
        self.every_s = every_s
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.group: dict[int, str] = {}
        self._task: asyncio.Task[None] | None = None
        self.began = 0.0
        self.wall = 0.0

    def sample(self, *, initial: bool = False) -> None:
        for label, roots in self.roots.items():
            for root in roots:
                for pid in tree(root):
                    self._see(pid, label, initial)
        for label, name in self.names.items():
            for pid in pids_named(name):
                self._see(pid, label, initial)

    def _see(self, pid: int, label: str, initial: bool) -> None:
        fields = _stat(pid)
        if fields is None:
            return  # gone: its last sample stands
        value = (int(fields[11]) + int(fields[12])) / CLK_TCK
        if pid not in self.first:
            self.first[pid] = value if initial else 0.0
            self.group[pid] = label
        self.last[pid] = value

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            self.sample()

    def start(self) -> None:
        self.sample(initial=True)
        self.began = time.monotonic()
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> dict[str, Any]:
        self.sample()
        self.wall = time.monotonic() - self.began
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        used: dict[str, float] = {}
        for pid, label in self.group.items():
            used[label] = used.get(label, 0.0) + self.last[pid] - self.first[pid]
        return {
            "wall_s": round(self.wall, 1),
            "cpu_s": {k: round(v, 1) for k, v in used.items()},
            "cores": {k: round(v / self.wall, 2) for k, v in used.items()} if self.wall else {},
        }


# ---------------------------------------------------------------- simulator runs


def summary_of(run: dict[str, Any]) -> dict[str, Any]:
    """What the report needs of one run: the simulator's own summary, plus the errors by
    endpoint and status and the ride counts."""
    from ridehail.simulator.report import summarize

    s = summarize(run)

    def stats(d: dict[str, Any]) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in d.items()}

    return {
        "label": run.get("label"),
        "config": run.get("config", {}),
        "wall_s": run.get("wall_s"),
        "requests": s["requests"],
        "matched": s["matched"],
        "completed": s["completed"],
        "rider_cancelled": s["rider_cancelled"],
        "no_drivers": s["no_drivers"],
        "unserved_requests": run.get("unserved_requests", 0),
        "match_rate": s["match_rate"],
        "completion_rate": s["completion_rate"],
        "wait_time_s": stats(s["wait_time_s"]),
        "pickup_time_s": stats(s["pickup_time_s"]),
        "utilization": s["utilization"],
        "requests_per_min": s["requests_per_min"],
        "errors": s["errors"],
        "errors_by_endpoint": (run.get("errors") or {}).get("by_endpoint", {}),
        "error_samples": ((run.get("errors") or {}).get("samples") or [])[:5],
        "api_p99_ms": {
            k: (round(v, 2) if v is not None else None) for k, v in s["api_p99_ms"].items()
        },
        "api_p50_ms": {
            k: (round(v["p50"], 2) if v.get("p50") is not None else None)
            for k, v in sorted((run.get("latency_ms") or {}).items())
        },
        "api_calls": {k: v.get("count") for k, v in sorted((run.get("latency_ms") or {}).items())},
        "eta_error_s": {k: stats(v) for k, v in s["eta_error_s"].items()},
    }


def simulate(
    args: list[str], out: Path, *, env: dict[str, str] | None = None, retry: bool = True
) -> list[dict[str, Any]]:
    """`ridehail simulate ARGS --out OUT --no-live`; the runs of its metrics.json."""
    out.mkdir(parents=True, exist_ok=True)
    log = out / "simulate.log"
    command = [RIDEHAIL, "simulate", *args, "--out", str(out), "--no-live"]
    print("   $ ridehail simulate " + " ".join(args), flush=True)
    with log.open("wb") as sink:
        done = subprocess.run(
            command, stdout=sink, stderr=subprocess.STDOUT, cwd=common.ROOT, env=env,
            timeout=1800, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        if retry:  # a sign-up timed out on a busy machine (seen once): the same run again
            print(f"   simulate failed ({done.returncode}); once more", flush=True)
            (out / "failed-simulate.log").write_bytes(log.read_bytes())
            return simulate(args, out, env=env, retry=False)
        raise RuntimeError(f"simulate failed ({done.returncode}):\n{log.read_text()[-3000:]}")
    data = json.loads((out / "metrics.json").read_text())
    return data if isinstance(data, list) else [data]


def base_args(minutes: float, scale: float) -> list[str]:
    return [
        "--drivers", str(DRIVERS), "--minutes", str(minutes), "--time-scale", str(scale),
        "--seed", str(SEED),
    ]  # fmt: skip


def compare_strategies(tmp: Path) -> dict[str, Any]:
    common.banner(f"7a. {', '.join(STRATEGIES)}: one --compare run")
    began = time.monotonic()
    runs = simulate(
        [*base_args(COMPARE_MINUTES, TIME_SCALE), "--compare", ",".join(STRATEGIES)], tmp / "a"
    )
    return {
        "command": (
            f"ridehail simulate --drivers {DRIVERS} --minutes {COMPARE_MINUTES:g} "
            f"--time-scale {TIME_SCALE:g} --seed {SEED} --compare {','.join(STRATEGIES)}"
        ),
        "wall_s": round(time.monotonic() - began, 1),
        "runs": {str(r["label"]): summary_of(r) for r in runs},
    }


def compare_eta(tmp: Path) -> dict[str, Any]:
    common.banner("7b. straight-line vs road-network ETAs, same seed")
    began = time.monotonic()
    runs = {}
    for eta in ("straight_line", "road_network"):
        (run,) = simulate(
            [*base_args(ETA_MINUTES, TIME_SCALE), "--strategy", "sequential", "--server-eta", eta],
            tmp / f"b-{eta}",
        )
        runs[eta] = summary_of(run)
    return {
        "command": (
            f"ridehail simulate --drivers {DRIVERS} --minutes {ETA_MINUTES:g} "
            f"--time-scale {TIME_SCALE:g} --seed {SEED} --strategy sequential "
            "--server-eta {straight_line,road_network}"
        ),
        "wall_s": round(time.monotonic() - began, 1),
        "runs": runs,
    }


# ---------------------------------------------------------------- production servers


@dataclass
class Proc:
    name: str
    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Layout:
    key: str
    label: str
    processes: list[Proc] = field(default_factory=list)


def production_env(
    var_dir: Path, database: str, prefix: str, jwt_secret: str, time_scale: float
) -> dict[str, str]:
    """The settings the simulator gives its embedded server for compressed time
    (`server_env`), on the production profile: this database, Redis with this prefix."""
    from ridehail.simulator.server import server_env

    env = server_env(
        var_dir,
        strategy="sequential",
        time_scale=time_scale,
        road_network=f"generated:{SEED}",
        eta="straight_line",
    )
    env.update(
        {
            "RIDEHAIL_DATABASE_URL": common.sqlalchemy_pg_url(database),
            "RIDEHAIL_REDIS_URL": common.REDIS_URL,
            "RIDEHAIL_REDIS_KEY_PREFIX": prefix,
            "RIDEHAIL_JWT_SECRET": jwt_secret,
        }
    )
    return env


def prepare_database(env: dict[str, str]) -> None:
    for args in (
        ["db", "upgrade"],
        ["users", "create-admin", "--email", ADMIN[0], "--password", ADMIN[1]],
    ):
        subprocess.run([RIDEHAIL, *args], env=env, check=True, capture_output=True, timeout=180)


def layout_processes(key: str, port: int, logs: Path) -> list[Proc]:
    serve = [RIDEHAIL, "serve", "--host", "127.0.0.1", "--port", str(port)]
    if key == "one_process":
        return [Proc("serve (role all)", serve, logs / "serve.log")]
    return [
        Proc("serve --role api --workers 2", [*serve, "--role", "api", "--workers", "2"],
             logs / "api.log"),
        *(Proc(f"worker {w}", [RIDEHAIL, "worker", w], logs / f"worker-{w}.log")
          for w in ("dispatch", "payments", "notifications")),
    ]  # fmt: skip


@contextlib.contextmanager
def running(processes: list[Proc], env: dict[str, str], url: str) -> Iterator[None]:
    try:
        for p in processes:
            with p.log.open("wb") as sink:
                p.proc = subprocess.Popen(
                    p.args, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=common.ROOT
                )
        started = [p.proc for p in processes if p.proc is not None]
        wait_ready(
            url,
            started,
            timeout_s=90,
            explain=lambda: "\n".join(f"{p.name}: {p.log.read_text()[-1000:]}" for p in processes),
        )
        time.sleep(1.0)  # the workers' first polls
        yield
    finally:
        stop_all(processes)


def stop_all(processes: Sequence[Proc]) -> None:
    for p in processes:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.terminate()
    for p in processes:
        if p.proc is None:
            continue
        try:
            p.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            for pid in reversed(tree(p.proc.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            p.proc.wait(timeout=5)


async def _wait(proc: asyncio.subprocess.Process, log: Path) -> bool:
    code = await asyncio.wait_for(proc.wait(), timeout=1800)
    if code != 0:
        raise RuntimeError(f"simulate failed ({code}):\n{_tail(log)}")
    return True


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def one_layout(key: str, label: str, tmp: Path) -> dict[str, Any]:
    prefix = common.new_prefix()
    async with common.pg_database() as database, common.redis_client(prefix):
        var_dir = tmp / key / "var"
        var_dir.mkdir(parents=True)
        env = production_env(var_dir, database, prefix, secrets.token_urlsafe(48),
                             PROFILE_TIME_SCALE)  # fmt: skip
        prepare_database(env)
        port = common.free_port()
        url = f"http://127.0.0.1:{port}"
        processes = layout_processes(key, port, tmp / key)
        out = tmp / key / "sim"
        with running(processes, env, url):
            meter = CpuMeter(
                roots={p.name: [p.proc.pid] for p in processes if p.proc is not None},
                names={"postgresql (all processes)": "postgres", "redis-server": "redis-server"},
            )
            args = [
                *base_args(PROFILE_MINUTES, PROFILE_TIME_SCALE), "--url", url,
                "--admin-email", ADMIN[0], "--admin-password", ADMIN[1],
            ]  # fmt: skip
            out.mkdir(parents=True, exist_ok=True)
            log = out / "simulate.log"
            print("   $ ridehail simulate " + " ".join(args), flush=True)
            meter.start()
            with log.open("wb") as sink:
                proc = await asyncio.create_subprocess_exec(
                    RIDEHAIL, "simulate", *args, "--out", str(out), "--no-live",
                    stdout=sink, stderr=subprocess.STDOUT, cwd=common.ROOT,
                )  # fmt: skip
            meter.roots["simulator"] = [proc.pid]
            await _wait(proc, log)
            cpu = await meter.stop()
        data = json.loads((out / "metrics.json").read_text())
        run = data[0] if isinstance(data, list) else data
        server_names = [p.name for p in processes]
        server_cpu = sum(cpu["cpu_s"].get(n, 0.0) for n in server_names)
        return {
            **summary_of(run),
            "label": label,
            "processes": server_names,
            "cpu": cpu,
            "server_cpu_s": round(server_cpu, 1),
            "server_cores": round(server_cpu / cpu["wall_s"], 2) if cpu["wall_s"] else None,
        }


async def compare_layouts(tmp: Path) -> dict[str, Any]:
    common.banner("7c. one process vs API + workers, production profile")
    began = time.monotonic()
    runs = {}
    for key, label in (
        ("one_process", "one process: ridehail serve (role all)"),
        ("api_workers", "API (2 processes) + dispatch, payments, notifications workers"),
    ):
        runs[key] = await one_layout(key, label, tmp)
    return {
        "command": (
            f"ridehail simulate --url URL --drivers {DRIVERS} --minutes {PROFILE_MINUTES:g} "
            f"--time-scale {PROFILE_TIME_SCALE:g} --seed {SEED}"
        ),
        "time_scale": PROFILE_TIME_SCALE,
        "server_settings": {
            "RIDEHAIL_LOCATION_MAX_SPEED_KMH": 250.0 * PROFILE_TIME_SCALE,
            "RIDEHAIL_RATE_LIMIT_PER_MINUTE": 0,
            "RIDEHAIL_ARGON2_TIME_COST": 1,
            "RIDEHAIL_ARGON2_MEMORY_KIB": 1024,
            "RIDEHAIL_LOG_LEVEL": "WARNING",
            "RIDEHAIL_DISPATCH_STRATEGY": "sequential",
        },
        "wall_s": round(time.monotonic() - began, 1),
        "runs": runs,
    }


async def run() -> dict[str, Any]:
    began = common.started()
    result: dict[str, Any] = {
        "settings": {
            "seed": SEED,
            "drivers": DRIVERS,
            "time_scale": TIME_SCALE,
            "compare_minutes": COMPARE_MINUTES,
            "eta_minutes": ETA_MINUTES,
            "profile_minutes": PROFILE_MINUTES,
            "profile_time_scale": PROFILE_TIME_SCALE,
            "machine": common.machine_facts(),
        }
    }
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ridehail-city-") as name:
        tmp = Path(name)
        if "a" in PARTS:
            result["strategies"] = compare_strategies(tmp)
        if "b" in PARTS:
            result["eta"] = compare_eta(tmp)
        if "c" in PARTS:
            async with common.redis_client(common.new_prefix()) as redis:
                result["settings"]["redis"] = await common.redis_facts(redis)
            result["settings"]["postgres"] = await common.pg_facts()
            result["layouts"] = await compare_layouts(tmp)
    result["wall_s"] = round(time.monotonic() - start, 1)
    path = common.write_part("city_sim", began, result)
    print(f"   wrote {path.relative_to(common.ROOT)} ({result['wall_s']} s)")
    return result


def main() -> None:
    common.exit_cleanly_on_sigterm()
    asyncio.run(run())


if __name__ == "__main__":
    main()
