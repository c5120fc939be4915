"""The simulator's report: the summary's numbers, the HTML page and its plots, the terminal
table and the re-render command."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ridehail.simulator.report import main, print_summary, render, summarize
from ridehail.streets import generate_city

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DATA_URI_IMG = re.compile(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]+"')


def _ride(
    requested: float,
    matched: float | None = None,
    picked_up: float | None = None,
    completed: float | None = None,
    outcome: str = "unfinished",
    straight: float | None = None,
    road: float | None = None,
) -> dict[str, Any]:
    return {
        "ride_id": f"ride_{requested}",
        "rider": int(requested),
        "requested_s": requested,
        "matched_s": matched,
        "picked_up_s": picked_up,
        "completed_s": completed,
        "outcome": outcome,
        "origin": [60.17, 24.94],
        "destination": [60.2, 24.9],
        "driver_distance_m": None,
        "straight_eta_s": straight,
        "road_eta_s": road,
        "fare": None,
    }


def _hand_made() -> dict[str, Any]:
    return {
        "version": 1,
        "label": "hand",
        "config": {"seed": 1, "drivers": 3, "duration_s": 300.0},
        "bucket_s": 100.0,
        "rides": [
            # waits 10, 20, 30, 40 s; pickups 70, 120, 160 s; drives 60, 100, 120 s
            _ride(0, 10, 70, 300, "completed", straight=50, road=65),
            _ride(10, 30, 130, 400, "completed", straight=80, road=110),
            _ride(20, 50, None, None, "rider_cancelled", straight=40, road=45),
            _ride(30, outcome="no_drivers"),
            _ride(40, 80, 200, None, "unfinished", road=130),
        ],
        "timeline": [],
        "latency_ms": {
            "POST /api/v1/rides": {"count": 5, "p50": 4.0, "p90": 9.0, "p99": 20.0},
            "GET /api/v1/rides/{id}": {"count": 100, "samples": list(range(1, 101))},
        },
        "errors": {"count": 3, "by_endpoint": {"POST /api/v1/rides": {"409": 3}}, "samples": []},
        "drivers": {"positions": [], "busy_share_by_bucket": [0.2, 0.4, 0.6]},
        "surge": [],
        "summary": {"requests": 999, "match_rate": 0.01},  # never trusted
    }


def test_summarize_hand_made_run() -> None:
    s = summarize(_hand_made())
    assert (s["requests"], s["matched"], s["completed"]) == (5, 4, 2)
    assert (s["rider_cancelled"], s["no_drivers"]) == (1, 1)
    assert s["match_rate"] == pytest.approx(0.8)
    assert s["completion_rate"] == pytest.approx(0.4)
    wait = s["wait_time_s"]
    assert wait["count"] == 4
    assert wait["mean"] == pytest.approx(25.0)
    assert wait["p50"] == pytest.approx(25.0)
    assert wait["p90"] == pytest.approx(37.0)  # linear: 30 + 0.7 * 10
    assert wait["p99"] == pytest.approx(39.7)
    pickup = s["pickup_time_s"]
    assert pickup["count"] == 3
    assert pickup["mean"] == pytest.approx(350 / 3)
    assert pickup["p50"] == pytest.approx(120.0)
    assert pickup["p90"] == pytest.approx(152.0)  # 120 + 0.8 * 40
    assert s["utilization"] == pytest.approx(0.4)
    assert s["errors"] == 3
    assert s["requests_per_min"] == pytest.approx(1.0)  # 5 requests in 5 simulated minutes
    assert s["api_p99_ms"]["POST /api/v1/rides"] == pytest.approx(20.0)
    # No p99 in the file: from the samples.
    assert s["api_p99_ms"]["GET /api/v1/rides/{id}"] == pytest.approx(99.01)
    straight, road = s["eta_error_s"]["straight"], s["eta_error_s"]["road"]
    # Straight line: estimates 50 and 80 s for drives of 60 and 100 s.
    assert straight["count"] == 2
    assert straight["mean_abs"] == pytest.approx(15.0)
    assert straight["p90_abs"] == pytest.approx(19.0)
    assert straight["bias"] == pytest.approx(-15.0)
    # Road: +5, +10, +10 s.
    assert road["count"] == 3
    assert road["mean_abs"] == pytest.approx(25 / 3)
    assert road["p90_abs"] == pytest.approx(10.0)


def test_utilization_falls_back_to_the_timeline() -> None:
    run = _hand_made()
    run["drivers"] = {}
    run["timeline"] = [
        {"t_s": 0.0, "drivers_online": 10, "drivers_busy": 5},
        {"t_s": 100.0, "drivers_online": 0, "drivers_busy": 0},  # nobody online: skipped
        {"t_s": 200.0, "drivers_online": 20, "drivers_busy": 5},
    ]
    assert summarize(run)["utilization"] == pytest.approx(0.375)


def test_summarize_empty_run() -> None:
    runs: list[dict[str, Any]] = [
        {},
        {"rides": [], "timeline": [], "latency_ms": {}, "errors": {}},
    ]
    for run in runs:
        s = summarize(run)
        assert s["requests"] == s["matched"] == s["errors"] == 0
        assert s["match_rate"] is None
        assert s["completion_rate"] is None
        assert s["wait_time_s"] == {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None}
        assert s["pickup_time_s"]["p90"] is None
        assert s["utilization"] is None
        assert s["requests_per_min"] is None
        assert s["api_p99_ms"] == {}
        assert s["eta_error_s"]["road"]["mean_abs"] is None
        json.dumps(s)  # serialisable as it is


def _fake_run(label: str, seed: int, rides: int = 200, drivers: int = 300) -> dict[str, Any]:
    """A plausible run on the small city around (60.17, 24.94)."""
    rng = random.Random(seed)
    out = []
    for i in range(rides):
        req = rng.uniform(0, 600)
        if rng.random() < 0.1:
            out.append(_ride(req, outcome="no_drivers"))
            continue
        matched = req + rng.expovariate(1 / 10)
        drive = rng.uniform(60, 400)
        ride = _ride(
            req,
            matched,
            matched + drive,
            matched + drive + 500,
            "completed",
            straight=drive * 0.7,
            road=drive * rng.uniform(0.9, 1.1),
        )
        ride["ride_id"] = f"ride_{i}"
        out.append(ride)
    timeline = [
        {
            "t_s": k * 60.0,
            "requests": rng.randint(15, 25),
            "matches": rng.randint(12, 22),
            "pickups": 10,
            "completions": rng.randint(5, 20),
            "cancellations": 1,
            "no_drivers": 2,
            "drivers_online": drivers,
            "drivers_busy": rng.randint(50, 250),
            "riders_waiting": rng.randint(0, 10),
        }
        for k in range(10)
    ]
    return {
        "version": 1,
        "label": label,
        "config": {
            "seed": 1,
            "drivers": drivers,
            "duration_s": 600.0,
            "time_scale": 10.0,
            "strategy": label,
            "city": {"kind": "generated", "seed": 1, "width_m": 3000.0, "height_m": 3000.0},
            "start_hour": 7.5,
        },
        "started_at": "2026-11-30T07:40:00Z",
        "wall_s": 60.0,
        "bucket_s": 60.0,
        "rides": out,
        "timeline": timeline,
        "latency_ms": {
            "PUT /api/v1/drivers/{id}/location": {
                "count": 9000,
                "p50": 2.0,
                "p90": 5.0,
                "p99": 30.0,
            },
            "POST /api/v1/rides": {"count": rides, "p50": 8.0, "p90": 20.0, "p99": 90.0},
        },
        "errors": {
            "count": 1,
            "by_endpoint": {"POST /api/v1/rides": {"409": 1}},
            "samples": [
                {"t_s": 4.0, "endpoint": "POST /api/v1/rides", "status": 409, "detail": "<b>x</b>"}
            ],
        },
        "drivers": {
            "positions": [
                [60.17 + rng.gauss(0, 0.005), 24.94 + rng.gauss(0, 0.01)] for _ in range(drivers)
            ],
            "busy_share_by_bucket": [b["drivers_busy"] / drivers for b in timeline],
        },
        "surge": [
            {"cell": "88", "multiplier": "1.4", "latitude": 60.17, "longitude": 24.94},
            {"cell": "89", "multiplier": "2.0", "latitude": 60.175, "longitude": 24.95},
        ],
        "summary": {},
    }


@pytest.fixture(scope="module")
def compare_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    city = generate_city(seed=1, width_m=3000, height_m=3000)
    runs = [_fake_run("batch", 1), _fake_run("sequential", 2)]
    return render(runs, tmp_path_factory.mktemp("report"), city=city)


def test_compare_report_is_one_self_contained_page(compare_report: Path) -> None:
    page = compare_report.read_text(encoding="utf-8")
    assert compare_report.name == "report.html"
    assert "batch" in page
    assert "sequential" in page
    # Six shared plots and one map per run, all embedded.
    assert len(re.findall(r"<img ", page)) == 8
    assert len(DATA_URI_IMG.findall(page)) == 8
    # Nothing to fetch: no scripts, stylesheets or remote images.
    assert not re.search(r"<script|<link|src=\"(?!data:)|url\(", page)
    assert "How to read this" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page  # error details are escaped
    assert "<b>x</b>" not in page


def test_compare_report_writes_pngs_and_summary(compare_report: Path) -> None:
    out = compare_report.parent
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(
        [
            "distributions.png",
            "throughput.png",
            "match_rate.png",
            "utilization.png",
            "latency.png",
            "eta.png",
            "map_batch.png",
            "map_sequential.png",
        ]
    )
    for name in pngs:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    summary = json.loads((out / "summary.json").read_text())
    assert [r["label"] for r in summary["runs"]] == ["batch", "sequential"]
    assert summary["runs"][0]["summary"]["requests"] == 200


def test_render_empty_run_and_no_city(tmp_path: Path) -> None:
    path = render([{}], tmp_path)
    page = path.read_text(encoding="utf-8")
    assert "run 1" in page
    assert len(DATA_URI_IMG.findall(page)) == 7
    assert (tmp_path / "map_run_1.png").read_bytes()[:8] == PNG_MAGIC


def test_print_summary_has_a_column_per_run() -> None:
    console = Console(record=True, width=140)
    print_summary([_hand_made(), {"label": "empty"}], console)
    text = console.export_text()
    assert "hand" in text
    assert "empty" in text
    assert "80.0 %" in text  # the hand-made run's match rate
    assert "API p99 · POST /api/v1/rides" in text


def test_cli_re_renders_from_metrics_files(tmp_path: Path) -> None:
    runs = [_fake_run("batch", 1, rides=50), _fake_run("sequential", 2, rides=50)]
    (tmp_path / "metrics.json").write_text(json.dumps(runs))
    out = tmp_path / "out"
    assert main([str(tmp_path / "metrics.json"), "--out", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "batch" in page
    assert "sequential" in page
    assert (out / "map_batch.png").read_bytes()[:8] == PNG_MAGIC
