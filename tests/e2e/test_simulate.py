"""`ridehail simulate` as a user runs it: it starts `ridehail serve` on the embedded default
itself, drives a small city through the public API under two dispatch strategies (same
seed), and writes metrics and a self-contained HTML report."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import RIDEHAIL, server_env

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
