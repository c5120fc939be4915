"""`ridehail simulate` as a user runs it: it starts `ridehail serve` on the embedded default
itself, drives a small city through the public API under two dispatch strategies (same
seed), and writes metrics and a self-contained HTML report."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ridehail.simulator.server import server_env as sim_server_env
from ridehail.simulator.server import wait_ready
from tests.e2e.conftest import RIDEHAIL, free_port, server_env

pytestmark = pytest.mark.e2e


def test_simulate_compare_drives_the_service_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    options = {
        "--drivers": "25",
        "--minutes": "6",
        "--time-scale": "30",
        "--peak-per-min": "6",
        "--seed": "3",
        "--compare": "batch,sequential",
        "--out": str(out),
    }
    done = subprocess.run(
        [*RIDEHAIL, "simulate", *(x for pair in options.items() for x in pair), "--no-live"],
        env=server_env({}),
        cwd=tmp_path,
        capture_output=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]
    runs = json.loads((out / "metrics.json").read_text())
    assert [r["label"] for r in runs] == ["batch", "sequential"]
    for run in runs:
        assert run["config"]["seed"] == 3 and run["config"]["strategy"] == run["label"]
        rides = run["rides"]
        assert len(rides) >= 5, run["label"]
        matched = [r for r in rides if r["matched_s"] is not None]
        assert matched, f"{run['label']}: no ride was matched"
        for r in matched:
            assert r["matched_s"] >= r["requested_s"]
            if r["picked_up_s"] is not None:
                assert r["picked_up_s"] >= r["matched_s"]
        # The simulator's own failures are recorded under "simulator": there must be none.
        assert "simulator" not in run["errors"]["by_endpoint"], run["errors"]
        assert any(k.startswith("PUT /api/v1/drivers/{id}/") for k in run["latency_ms"])
        assert run["latency_ms"]["WS location frame"]["count"] > 0
        assert len(run["drivers"]["positions"]) > 0
    # Same seed, same demand: both strategies saw the same requests at the same moments.
    times = [sorted(r["requested_s"] for r in run["rides"]) for run in runs]
    assert times[0][:3] == times[1][:3]
    html = (out / "report.html").read_text()
    assert "batch" in html and "sequential" in html
    images = html.count('src="data:image/png;base64,')
    assert images >= 8
    first = html.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(first)[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "summary.json").exists()
    assert "report:" in done.stdout.decode()


def _counted(url: str) -> tuple[float, float]:
    """(fixes the server stored, of them PUT by HTTP) from its /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    fixes = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ridehail_location_fixes_total{")
    )
    route = 'route="/api/v1/drivers/{driver_id}/location"'
    puts = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ridehail_http_requests_total{") and route in line
    )
    return fixes, puts


def _serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [*RIDEHAIL, "serve", "--port", str(port)], env=env, stdout=sink, stderr=sink
        )
    wait_ready(
        f"http://127.0.0.1:{port}", [proc], timeout_s=60, explain=lambda: log.read_text()[-3000:]
    )
    return proc


def test_drivers_open_their_streams_again_when_the_server_restarts(tmp_path: Path) -> None:
    """The server is killed mid-run and started again on the same port and database: the
    simulated drivers' apps open their streams again, and their positions reach the new
    process over them (more fixes stored than location PUTs it answered)."""
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    env = sim_server_env(
        var_dir,
        strategy="sequential",
        time_scale=10.0,
        road_network="generated:5",
        eta="straight_line",
    )
    admin = ["--email", "admin@example.com", "--password", "admin-password-1"]
    subprocess.run([*RIDEHAIL, "users", "create-admin", *admin], env=env, check=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    first = _serve(env, port, log)
    out = tmp_path / "sim"
    options = {
        "--url": url, "--drivers": "12", "--minutes": "6", "--time-scale": "10",
        "--peak-per-min": "2", "--seed": "5", "--report-every": "1", "--out": str(out),
        "--admin-email": admin[1], "--admin-password": admin[3],
    }  # fmt: skip
    sim = subprocess.Popen(
        [*RIDEHAIL, "simulate", *(x for pair in options.items() for x in pair), "--no-live"],
        env=server_env({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    second = None
    try:
        deadline = time.monotonic() + 90
        while _counted(url)[0] < 24:  # drivers are online and streaming
            assert time.monotonic() < deadline, "no positions reached the first server"
            assert sim.poll() is None, sim.stdout.read().decode()[-3000:] if sim.stdout else ""
            time.sleep(0.5)
        # Past half the run every late driver has joined (new_driver: within the first
        # half), so after the restart only reopened streams carry positions.
        time.sleep(6 * 60 / 10 * 0.5 + 5)
        assert sim.poll() is None, "the run ended before the restart"
        first.kill()  # a crash: every stream ends without a goodbye
        first.wait(timeout=10)
        second = _serve(env, port, log)
        output, _ = sim.communicate(timeout=180)
        assert sim.returncode == 0, output.decode()[-3000:]
        fixes, puts = _counted(url)
    finally:
        for proc in (sim, first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    [run] = json.loads((out / "metrics.json").read_text())
    assert run["streams_dropped"] >= 1, run["streams_dropped"]
    assert run["streams_reopened"] >= 1, run["streams_reopened"]
    # The new process stored more positions than it was PUT (drivers put one when they go
    # online): the rest came over reopened streams. Without reopening, fixes == puts.
    assert fixes > puts + 12, (fixes, puts)
