"""Benchmark 8b: what one simulator process drives. `ridehail simulate` as a user runs it -
one process, the embedded server it starts itself - with 5,000 drivers in real time (time
scale 1) for 3 minutes, each online driver reporting its position every 4 s over its
WebSocket. Measured from outside: the simulator's own CPU and peak memory (from /proc, its
server child apart), the server's CPU; from the run's metrics: position frames sent against
what the online drivers should have sent, reports skipped, errors, matched rides.

    .venv/bin/python -m bench.one_simulator       # part of `make city`
    BENCH_ONE_SIM_DRIVERS=2000 .venv/bin/python -m bench.one_simulator
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.city_sim import cpu_s, summary_of, tree

DRIVERS = int(os.environ.get("BENCH_ONE_SIM_DRIVERS", "5000"))
MINUTES = float(os.environ.get("BENCH_ONE_SIM_MINUTES", "3"))
PER_MIN = float(os.environ.get("BENCH_ONE_SIM_PER_MIN", "100"))
REPORT_EVERY_S = 4.0
SEED = 11
POLL_S = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[float, int] | None:
    """(own CPU seconds, peak resident KiB) of a process, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    hwm = next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:")), 0)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, hwm


def _expected_frames(run: dict[str, Any]) -> float:
    """Position reports the online drivers were due, bucket by bucket of the timeline."""
    bucket = float(run.get("bucket_s") or 0.0)
    return sum(
        float(b.get("drivers_online", 0)) * bucket / REPORT_EVERY_S
        for b in run.get("timeline") or []
    )


def run() -> dict[str, Any]:
    began = common.started()
    common.banner(f"8b. one simulator process, {DRIVERS:,} drivers, {MINUTES:g} min, real time")
    with tempfile.TemporaryDirectory(prefix="ridehail-onesim-") as name:
        out = Path(name) / "out"
        args = [
            "simulate", "--drivers", str(DRIVERS), "--minutes", str(MINUTES),
            "--time-scale", "1", "--peak-per-min", str(PER_MIN), "--seed", str(SEED),
            "--report-every", str(REPORT_EVERY_S), "--out", str(out), "--no-live",
        ]  # fmt: skip
        log = Path(name) / "simulate.log"
        start = time.monotonic()
        with log.open("wb") as sink:
            sim = subprocess.Popen(
                [common.PYTHON, "-m", "bench.simulate_logged", *args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=common.ROOT,
            )
        print(f"   ridehail {' '.join(args)}", flush=True)
        own_cpu, peak_kib, server_cpu = 0.0, 0, 0.0
        cap_s = MINUTES * 60 + 900
        while sim.poll() is None:
            seen = _stat(sim.pid)
            if seen is not None:
                own_cpu, peak_kib = seen[0], max(peak_kib, seen[1])
            server_cpu = max(server_cpu, cpu_s(tree(sim.pid)[1:]))  # the server's tree
            if time.monotonic() - start > cap_s:
                sim.terminate()
                sim.wait(timeout=60)
                raise SystemExit(f"the simulator ran past {cap_s:.0f} s:\n{log.read_text()}")
            time.sleep(POLL_S)
        wall_s = time.monotonic() - start
        if sim.returncode != 0:
            raise SystemExit(f"ridehail simulate exited {sim.returncode}:\n{log.read_text()}")
        metrics = json.loads((out / "metrics.json").read_text())
        run_data = metrics[0] if isinstance(metrics, list) else metrics
    frames = (run_data.get("latency_ms") or {}).get("WS location frame", {})
    online = [b.get("drivers_online", 0) for b in run_data.get("timeline") or []]
    result = {
        "settings": {
            "drivers": DRIVERS,
            "minutes": MINUTES,
            "requests_per_min_at_peak": PER_MIN,
            "report_every_s": REPORT_EVERY_S,
            "seed": SEED,
            "command": "ridehail " + " ".join(a for a in args if not a.startswith("/")),
            "server": "the embedded default, started by the simulator (ridehail serve)",
            "machine": common.machine_facts(),
        },
        "wall_s_total": round(wall_s, 1),
        "wall_s_run": run_data.get("wall_s"),
        "simulator_cpu_s": round(own_cpu, 1),
        "simulator_cores_mean": round(own_cpu / wall_s, 2) if wall_s else None,
        "simulator_peak_rss_mib": round(peak_kib / 1024, 1),
        "server_cpu_s_at_least": round(server_cpu, 1),
        "drivers_online_max": max(online, default=0),
        "location_frames_sent": frames.get("count", 0),
        "location_frames_due": round(_expected_frames(run_data)),
        "location_frame_send_p99_ms": frames.get("p99"),
        "skipped_location_reports": run_data.get("skipped_location_reports", 0),
        "lost_drivers": run_data.get("lost_drivers", 0),
        "run": summary_of(run_data),
    }
    path = common.write_part("one_simulator", began, result)
    print(
        f"   {result['location_frames_sent']:,} frames of {result['location_frames_due']:,} due,"
        f" {result['skipped_location_reports']} skipped, {result['run']['errors']} errors;"
        f" simulator {result['simulator_cores_mean']} cores, {result['simulator_peak_rss_mib']}"
        f" MiB peak; wrote {path.relative_to(common.ROOT)}",
        flush=True,
    )
    return result


def main() -> None:
    common.exit_cleanly_on_sigterm()
    run()


if __name__ == "__main__":
    main()
