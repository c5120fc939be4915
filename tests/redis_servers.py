"""Throwaway Redis servers for tests: a Redis Cluster of three masters (no replicas), and a
standalone server with a password; started from the ``redis-server`` binary in a temporary
directory, on free loopback ports, and torn down afterwards.

Nothing is persisted (no RDB, no AOF); each node's cluster config file lives in the given
directory, so several clusters (or test sessions) never share state.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

#: Redis Cluster talks node-to-node on the client port plus this.
BUS_PORT_OFFSET = 10_000


@dataclass(frozen=True)
class Cluster:
    ports: list[int]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.ports]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(
            f"{tool} is not on PATH: the Redis Cluster tests start a real cluster from it "
            "(install redis-server / redis-tools)"
        )
    return path


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports(count: int) -> list[int]:
    """Ports free for a node and its cluster bus (port + 10000)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + BUS_PORT_OFFSET < 65_536 and port not in ports and _free(port + BUS_PORT_OFFSET):
            ports.append(port)
    return ports


def _cli(*args: str, port: int) -> str:
    out = subprocess.run(
        [_need("redis-cli"), "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return out.stdout + out.stderr


def _says(port: int, answer: str, *command: str) -> bool:
    return answer in _cli(*command, port=port)


def _wait(what: str, ready: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"Redis Cluster: {what} did not happen within {seconds:.0f} s")


@contextlib.contextmanager
def running_cluster(directory: Path, masters: int = 3) -> Iterator[Cluster]:
    """Start the nodes, join them with ``redis-cli --cluster create``, wait until every
    node reports ``cluster_state:ok``; terminate them on the way out."""
    server = _need("redis-server")
    _need("redis-cli")
    ports = free_ports(masters)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node_dir = directory / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            processes.append(
                _server(
                    server,
                    port,
                    node_dir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(directory / f"nodes-{port}.conf"),
                )
            )
        for port in ports:
            _wait(f"node {port} answering", partial(_says, port, "PONG", "PING"))
        created = _cli(
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
            port=ports[0],
        )
        if "[OK] All 16384 slots covered" not in created:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created}")
        for port in ports:
            _wait(
                f"node {port} reporting cluster_state:ok",
                partial(_says, port, "cluster_state:ok", "CLUSTER", "INFO"),
            )
        yield Cluster(ports=ports)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _server(binary: str, port: int, directory: Path, *options: str) -> subprocess.Popen[bytes]:
    """``redis-server`` on ``port`` (loopback), working in ``directory``, persisting nothing."""
    return subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            *options,
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(directory / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@dataclass
class Standalone:
    """One throwaway ``redis-server`` (see :func:`running_server`); ``restart`` kills it
    (SIGKILL, as a crash) and starts it again on the same port and socket."""

    port: int
    socket: Path
    password: str
    start: Callable[[], subprocess.Popen[bytes]]
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.process = self.start()


@contextlib.contextmanager
def running_server(directory: Path, password: str) -> Iterator[Standalone]:
    """A standalone Redis on a free loopback port and a Unix socket in ``directory``,
    requiring ``password``; nothing persisted; stopped on the way out."""
    server = _need("redis-server")
    _need("redis-cli")
    port = free_ports(1)[0]
    socket_path = directory / "redis.sock"

    def start() -> subprocess.Popen[bytes]:
        process = _server(
            server,
            port,
            directory,
            "--unixsocket",
            str(socket_path),
            "--requirepass",
            password,
        )
        _wait(
            f"server {port} answering",
            lambda: "PONG" in _cli("-a", password, "--no-auth-warning", "PING", port=port),
        )
        return process

    started = Standalone(port, socket_path, password, start, start())
    try:
        yield started
    finally:
        started.process.terminate()
        try:
            started.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            started.process.kill()
            started.process.wait(timeout=10)
