"""Finding (or starting) the real PostgreSQL and Redis the tests run against.

Order: RIDEHAIL_TEST_DATABASE_URL / RIDEHAIL_TEST_REDIS_URL, else the usual local ports, else
a server started from the binaries on PATH. A backend that still cannot be reached fails the
test run: it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_for(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _reachable(host, port):
            return True
        time.sleep(0.2)
    return False


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def redis_url() -> str:
    url = os.environ.get("RIDEHAIL_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    host, port = _host_port(url, 6379)
    if _reachable(host, port):
        return url
    if shutil.which("redis-server"):
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=False,
            capture_output=True,
        )
        if _wait_for(host, port, 10):
            return url
    raise RuntimeError(f"Redis is not reachable at {url} and could not be started")


def database_url() -> str:
    url = os.environ.get("RIDEHAIL_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    host, port = _host_port(url, 5432)
    if _reachable(host, port):
        return url
    etc = Path("/etc/postgresql")
    if shutil.which("pg_ctlcluster") and etc.is_dir():
        for version in sorted(p.name for p in etc.iterdir()):
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                check=False,
                capture_output=True,
            )
        if _wait_for(host, port, 20):
            return url
    raise RuntimeError(f"PostgreSQL is not reachable at {url} and could not be started")
