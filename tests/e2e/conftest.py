from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ridehail.simulator.server import wait_ready
from tests import profiles
from tests.profiles import FAST_SETTINGS

RIDEHAIL = [sys.executable, "-m", "ridehail"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEHAIL_")}
    for key, value in FAST_SETTINGS.items():
        env[f"RIDEHAIL_{key.upper()}"] = str(value)
    env.update(extra)
    return env


class Processes:
    """Started server/worker processes, stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = self.logs / f"{name}.log"
        handle = log.open("wb")
        proc = subprocess.Popen(
            [*RIDEHAIL, *args], env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=self.logs
        )
        self.procs.append((proc, log))
        return proc

    def wait_ready(self, base_url: str, timeout: float = 30.0) -> None:
        wait_ready(
            base_url,
            [proc for proc, _ in self.procs],
            timeout_s=timeout,
            explain=lambda: "\n".join(log.read_text()[-3000:] for _, log in self.procs),
        )

    def stop_all(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
async def pg_db(postgres_url: str) -> AsyncIterator[str]:
    """A new, migrated PostgreSQL database for one test, dropped afterwards."""
    url = await profiles.create_database(postgres_url)
    yield url
    await profiles.drop_database(postgres_url, url)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Request it after the database and Redis prefix fixtures: fixtures are torn down in
    reverse order, so the processes stop before their keys and database are removed (a
    worker still running would write its streams again under a cleaned prefix)."""
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture
def quiet_httpx() -> Iterator[None]:
    """httpx logs every request at INFO: thousands of lines that would bury a failure."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)
