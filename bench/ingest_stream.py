"""Benchmark 1b: batch and stream ingest through the public interfaces.

(a) `POST /api/v1/drivers/{id}/locations` with 500 buffered points per request
    (bench/post_batch.lua: increasing recorded_at, every point a new live position), wrk
    against one `ridehail serve` process;
(b) `{"type": "location"}` frames on the driver WebSocket (`/api/v1/drivers/{id}/stream`),
    sent as fast as the connections take them by a separate client process
    (`python -m bench.ingest_stream --ws-client`), so client and server CPU are apart.

Points per second are counted by the server itself: the increase of its
`ridehail_location_fixes_total` counter (every outcome) over the run, read from /metrics
(one process, so its counter is the whole count). On the embedded default and on the
production profile (PostgreSQL + Redis).

    .venv/bin/python -m bench.ingest_stream
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import common
from bench.ingest_http import (
    Target,
    build_targets,
    cpu_seconds,
    register_drivers,
    start,
    stop,
    upgrade_database,
    wait_ready,
    write_lines,
    wrk,
)

BATCH = int(os.environ.get("BENCH_BATCH_POINTS", "500"))
DRIVERS = int(os.environ.get("BENCH_STREAM_DRIVERS", "200"))
DURATION_S = int(os.environ.get("BENCH_STREAM_DURATION_S", "10"))
BATCH_CONNECTIONS = int(os.environ.get("BENCH_BATCH_CONNECTIONS", "8"))
WS_CONNECTIONS = int(os.environ.get("BENCH_WS_CONNECTIONS", "200"))
#: Frames per second each WebSocket connection offers (a phone sends one every few seconds;
#: this is a driver app replaying a backlog). Unpaced, the frames pile up in the server's
#: socket buffers and its keep-alive pings time out behind them.
WS_RATE = float(os.environ.get("BENCH_WS_RATE_PER_CONNECTION", "250"))
BATCH_LUA = common.ROOT / "bench" / "post_batch.lua"


def fixes_total(url: str) -> float:
    """The server's own count of location fixes handled, all outcomes."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ridehail_location_fixes_total{")
    )


def batch_round(target: Target) -> dict[str, Any]:
    before = fixes_total(target.url)
    result = wrk(
        target,
        DURATION_S,
        script=BATCH_LUA,
        script_args=[str(BATCH)],
        connections=BATCH_CONNECTIONS,
    )
    points = fixes_total(target.url) - before
    seconds = result["duration_us"] / 1e6
    return {
        "points_per_s": points / seconds,
        "requests_per_s": result["rps"],
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "non_2xx": result["non_2xx"] + result["socket_errors"],
        "server_cpu_us_per_point": result["server_cpu_us_per_request"]
        * result["requests"]
        / max(points, 1),
    }


def ws_round(target: Target) -> dict[str, Any]:
    assert target.drivers_file is not None
    assert target.proc is not None
    before = fixes_total(target.url)
    cpu_before = cpu_seconds(target.proc.pid)
    out = subprocess.run(
        [
            common.PYTHON,
            "-m",
            "bench.ingest_stream",
            "--ws-client",
            target.url.replace("http://", "ws://"),
            str(target.drivers_file),
            str(WS_CONNECTIONS),
            str(DURATION_S),
            str(WS_RATE),
        ],
        capture_output=True,
        text=True,
        timeout=DURATION_S + 120,
        check=False,
        cwd=common.ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the WebSocket client failed:\n{out.stderr[-3000:]}")
    client = json.loads(out.stdout.strip().splitlines()[-1])
    # Frames still in the server's socket buffers when the client stopped are handled
    # after it: wait until the count stops moving, and count that time too.
    returned = finished = time.monotonic()
    points = fixes_total(target.url) - before
    while True:
        time.sleep(0.5)
        counted = fixes_total(target.url) - before
        if counted == points:
            break
        points, finished = counted, time.monotonic()
    cpu_used = cpu_seconds(target.proc.pid) - cpu_before
    return {
        "points_per_s": points / (client["seconds"] + finished - returned),
        "frames_sent": client["frames"],
        "points_counted": points,
        "client_cpu_s": client["cpu_s"],
        "server_cpu_us_per_point": cpu_used * 1e6 / max(points, 1),
        "errors_received": client["errors"],
    }


async def ws_client(
    url: str, drivers_file: str, connections: int, seconds: float, rate: float
) -> None:
    """Each connection authenticates as one driver and sends location frames (1 m apart)
    at ``rate`` per second for ``seconds``; prints one JSON line: frames sent, errors
    received."""
    import websockets

    pairs = [line.split() for line in Path(drivers_file).read_text().splitlines()]  # noqa: ASYNC240
    sent = [0] * connections
    errors = [0] * connections
    deadline = time.monotonic() + seconds
    began = time.monotonic()

    async def one(n: int) -> None:
        driver_id, token = pairs[n % len(pairs)]
        uri = f"{url}/api/v1/drivers/{driver_id}/stream"
        async with websockets.connect(uri, max_size=2**16) as ws:
            await ws.send(json.dumps({"type": "auth", "access_token": token}))
            lat = 60.17 + n * 0.001

            async def read() -> None:
                async for message in ws:
                    if json.loads(message).get("type") == "error":
                        errors[n] += 1

            reader = asyncio.create_task(read())
            lon = 24.94
            burst = 10
            due = time.monotonic()
            while due < deadline:
                for _ in range(burst):
                    lon += 0.00001
                    await ws.send(f'{{"type":"location","latitude":{lat},"longitude":{lon:.6f}}}')
                sent[n] += burst
                due += burst / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            reader.cancel()

    cpu = time.process_time()
    await asyncio.gather(*(one(n) for n in range(connections)))
    print(
        json.dumps(
            {
                "frames": sum(sent),
                "errors": sum(errors),
                "seconds": time.monotonic() - began,
                "cpu_s": time.process_time() - cpu,
            }
        )
    )


async def run() -> dict[str, Any]:
    common.need("wrk")
    began = common.started()
    prefix = common.new_prefix()
    async with common.pg_database() as database, common.redis_client(prefix):
        upgrade_database(database, prefix)
        with tempfile.TemporaryDirectory(prefix="ridehail-bench-") as tmp_name:
            tmp = Path(tmp_name)
            every = build_targets(tmp, database, prefix)
            targets = {key: every[key] for key in ("embedded_log", "production_log")}
            results: dict[str, dict[str, list[dict[str, Any]]]] = {
                key: {"batch": [], "ws": []} for key in targets
            }
            try:
                for target in targets.values():
                    start(target, tmp)
                for target in targets.values():
                    wait_ready(target, "/readyz")
                for key, target in targets.items():
                    lines = await register_drivers(target.url, DRIVERS, f"stream-{key}")
                    target.drivers_file = write_lines(tmp / f"{key}-stream.txt", lines)
                for round_no in range(common.REPEATS):
                    for key, target in targets.items():
                        batch = batch_round(target)
                        ws = ws_round(target)
                        results[key]["batch"].append(batch)
                        results[key]["ws"].append(ws)
                        print(
                            f"   round {round_no + 1} {key:15s}"
                            f" batch {batch['points_per_s']:9.0f} points/s"
                            f" (p99 {batch['p99_ms']:.0f} ms, non-2xx {batch['non_2xx']})"
                            f"  websocket {ws['points_per_s']:8.0f} points/s"
                            f" ({ws['frames_sent']} sent, {ws['points_counted']:.0f} counted)",
                            flush=True,
                        )
            finally:
                for target in targets.values():
                    stop(target)
    part: dict[str, Any] = {
        "settings": {
            "batch_points": BATCH,
            "drivers": DRIVERS,
            "duration_s": DURATION_S,
            "batch_connections": BATCH_CONNECTIONS,
            "ws_connections": WS_CONNECTIONS,
            "ws_rate_per_connection": WS_RATE,
            "repeats": common.REPEATS,
            "server": "ridehail serve (uvicorn, one process, --role all), access log as shipped",
        },
        "targets": {},
    }
    for key, runs in results.items():
        part["targets"][key] = {
            "label": targets[key].label,
            "batch_points_per_s": common.spread([r["points_per_s"] for r in runs["batch"]], 0),
            "batch_p99_ms": common.spread([r["p99_ms"] for r in runs["batch"]], 1),
            "batch_server_cpu_us_per_point": common.spread(
                [r["server_cpu_us_per_point"] for r in runs["batch"]], 1
            ),
            "batch_non_2xx": sum(r["non_2xx"] for r in runs["batch"]),
            "ws_points_per_s": common.spread([r["points_per_s"] for r in runs["ws"]], 0),
            "ws_server_cpu_us_per_point": common.spread(
                [r["server_cpu_us_per_point"] for r in runs["ws"]], 1
            ),
            "ws_frames_sent": sum(r["frames_sent"] for r in runs["ws"]),
            "ws_points_counted": sum(r["points_counted"] for r in runs["ws"]),
            "ws_errors_received": sum(r["errors_received"] for r in runs["ws"]),
        }
    common.write_part("ingest_stream", began, part)
    return part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--ws-client", nargs=5, metavar=("URL", "DRIVERS", "CONNS", "SECONDS", "RATE")
    )
    args = parser.parse_args()
    if args.ws_client:
        url, drivers_file, connections, seconds, rate = args.ws_client
        asyncio.run(ws_client(url, drivers_file, int(connections), float(seconds), float(rate)))
        return
    common.exit_cleanly_on_sigterm()
    common.banner("1b. batch and WebSocket location ingest")
    part = asyncio.run(run())
    for key, value in part["targets"].items():
        print(
            f"   {key:15s} batch {value['batch_points_per_s']['median']:9.0f} points/s"
            f"  websocket {value['ws_points_per_s']['median']:8.0f} points/s"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
