"""Starting `ridehail serve` on the embedded default for a simulation run, the way a user
would: a child process with its own var/ directory, an operations account made with the
`users create-admin` command, and settings that fit the run's compressed time."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ADMIN_EMAIL = "simulator-admin@example.com"
ADMIN_PASSWORD = "simulator-admin-pass"  # noqa: S105 - a local, throwaway server


@dataclass(frozen=True)
class Server:
    url: str
    admin_email: str
    admin_password: str
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    url: str,
    processes: Sequence[subprocess.Popen[bytes]],
    *,
    timeout_s: float,
    path: str = "/readyz",
    explain: Callable[[], str] = str,
) -> None:
    """Poll ``url + path`` until it answers 200 or 204. RuntimeError, with ``explain()``
    (a log's tail, say), if one of ``processes`` exits first or the time runs out. Every
    harness that starts servers (simulator, benchmarks, end-to-end tests) waits with this."""
    deadline = time.monotonic() + timeout_s
    while True:
        for proc in processes:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited ({proc.returncode}): {explain()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}{path}", timeout=1).status_code in (200, 204):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{url}{path} did not become ready in {timeout_s:.0f} s: {explain()}"
            )
        time.sleep(0.2)


def server_env(
    var_dir: Path, *, strategy: str, time_scale: float, road_network: str, eta: str
) -> dict[str, str]:
    """The embedded default, tuned for a simulation: a fresh SQLite file; the speed rule
    scaled with time (cars cover ``time_scale`` times the ground per wall second); cheap
    password hashing and no rate limit (one simulator signs up thousands of users from one
    address); the surge window in wall seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEHAIL_")}
    env.update(
        {
            "RIDEHAIL_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'ridehail.db'}",
            "RIDEHAIL_VAR_DIR": str(var_dir),
            "RIDEHAIL_DISPATCH_STRATEGY": strategy,
            "RIDEHAIL_DISPATCH_ETA": eta,
            "RIDEHAIL_ROAD_NETWORK": road_network,
            "RIDEHAIL_LOCATION_MAX_SPEED_KMH": str(250.0 * time_scale),
            "RIDEHAIL_RATE_LIMIT_PER_MINUTE": "0",
            "RIDEHAIL_ARGON2_TIME_COST": "1",
            "RIDEHAIL_ARGON2_MEMORY_KIB": "1024",
            "RIDEHAIL_LOG_LEVEL": "WARNING",
            "RIDEHAIL_SURGE_WINDOW_S": str(max(5.0, 300.0 / time_scale)),
            "RIDEHAIL_SURGE_INTERVAL_S": str(max(1.0, 15.0 / time_scale)),
            "RIDEHAIL_PAYMENTS_SANDBOX_LATENCY_MIN_MS": "1",
            "RIDEHAIL_PAYMENTS_SANDBOX_LATENCY_MAX_MS": "5",
        }
    )
    return env


@contextlib.contextmanager
def embedded_server(
    out_dir: Path,
    *,
    strategy: str,
    time_scale: float,
    road_network: str,
    eta: str = "straight_line",
    port: int | None = None,
    timeout_s: float = 60.0,
) -> Iterator[Server]:
    var_dir = (out_dir / "var").resolve()
    if var_dir.exists():
        shutil.rmtree(var_dir)
    var_dir.mkdir(parents=True)
    env = server_env(
        var_dir, strategy=strategy, time_scale=time_scale, road_network=road_network, eta=eta
    )
    ridehail = [sys.executable, "-m", "ridehail"]
    subprocess.run(  # noqa: S603 - our own command line
        [*ridehail, "users", "create-admin", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD],
        env=env,
        check=True,
        capture_output=True,
    )
    port = port or free_port()
    log = out_dir / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(  # noqa: S603 - our own command line
            [*ridehail, "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, [proc], timeout_s=timeout_s, explain=lambda: f"see {log}")
        yield Server(url=url, admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
