"""Benchmark 2b: one batch-matching round, 1,000 waiting rides x 5,000 free drivers.

Each round gets its own seeded instance from the synthetic city of bench/common.py
(drivers and pickup points from the same mixture, other seeds). The round, as the
dispatcher would run it, is timed with perf_counter in three stages:

- candidate search: project the positions (equirectangular, metres around the city
  centre), build a ``scipy.spatial.cKDTree`` over the drivers and query each pickup's
  K nearest; cost = straight-line distance x DETOUR / SPEED_M_S (seconds of pickup);
- matrix build: ``ridehail.dispatch.assignment.candidate_edges`` + ``build`` (validation,
  duplicates, the sparse matrix with one dummy column per ride);
- solve: ``ridehail.dispatch.assignment.solve`` (scipy's min_weight_full_bipartite_matching).

Baselines on the same instance, in the same round:

- dense: ``scipy.optimize.linear_sum_assignment`` on the full rides x drivers matrix of
  costs (building that matrix is timed too); its total is the unrestricted optimum, so it
  also shows what keeping only K candidates per ride costs;
- dense on the K edges: the same solver on a full matrix that is ``big`` outside the K
  candidates; it must find the same number of rides and the same total as the sparse solver;
- greedy, cheapest pair first (over the same K edges) and greedy in arrival order (each
  ride takes its nearest candidate still free, as a one-ride-at-a-time dispatcher does):
  the sparse optimum must serve at least as many rides and, serving as many, cost no more.

Target: median round time (the three stages) at most TARGET_MS.

    .venv/bin/python -m bench.dispatch_solver
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np
import scipy
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from bench import common
from ridehail.dispatch.assignment import EdgeArrays, build, candidate_edges, solve

RIDES = int(os.environ.get("BENCH_SOLVER_RIDES", "1000"))
DRIVERS = int(os.environ.get("BENCH_SOLVER_DRIVERS", "5000"))
K = 10
ROUNDS = int(os.environ.get("BENCH_SOLVER_ROUNDS", "15"))
WARMUP_ROUNDS = 2
#: Road distance over straight-line distance, and mean pickup speed (30 km/h).
DETOUR = 1.3
SPEED_M_S = 8.33
#: The whole round (candidate search + matrix build + solve), median over the rounds.
TARGET_MS = 200.0
M_PER_DEG_LAT = common.KM_PER_DEG_LAT * 1000
M_PER_DEG_LON = common.KM_PER_DEG_LON * 1000

Pairs = list[tuple[int, int]]
Floats = NDArray[np.float64]


def instance(round_no: int) -> tuple[Floats, Floats]:
    """(drivers, pickups) as (n, 2) arrays of (lat, lon); seeded per round."""
    city = common.make_city(DRIVERS, seed=common.SEED + 10_000 + round_no)
    pickups = common.query_points(RIDES, seed=common.SEED + 20_000 + round_no)
    return np.column_stack([city.lats, city.lons]), np.array(pickups, dtype=np.float64)


def project(points: Floats) -> Floats:
    """Equirectangular projection: metres east and north of the city centre."""
    return np.column_stack(
        [
            (points[:, 1] - common.CENTRE_LON) * M_PER_DEG_LON,
            (points[:, 0] - common.CENTRE_LAT) * M_PER_DEG_LAT,
        ]
    )


def seconds(metres: Floats) -> Floats:
    return metres * DETOUR / SPEED_M_S


def greedy_cheapest_first(edges: EdgeArrays) -> Pairs:
    """Over all candidate pairs, cheapest first, take a pair whenever both are free."""
    order = np.argsort(edges.costs, kind="stable")
    rides, drivers = edges.requests[order].tolist(), edges.drivers[order].tolist()
    taken_rides: set[int] = set()
    taken_drivers: set[int] = set()
    pairs = []
    for ride, driver in zip(rides, drivers, strict=True):
        if ride not in taken_rides and driver not in taken_drivers:
            taken_rides.add(ride)
            taken_drivers.add(driver)
            pairs.append((ride, driver))
    return pairs


def greedy_arrival_order(candidates: NDArray[np.intp]) -> Pairs:
    """Rides in arrival order (index order; the points are random), each taking its
    nearest candidate that is still free (candidates come sorted nearest first)."""
    taken: set[int] = set()
    pairs = []
    for ride, row in enumerate(candidates.tolist()):
        for driver in row:
            if driver not in taken:
                taken.add(driver)
                pairs.append((ride, driver))
                break
    return pairs


def quality(pairs: Pairs, cost: Floats) -> dict[str, float]:
    """Rides served, total, mean and p90 pickup seconds of one assignment."""
    if not pairs:
        return {"matched": 0, "total_s": 0.0, "mean_s": float("nan"), "p90_s": float("nan")}
    rides, drivers = np.array(pairs).T
    pickup = sorted(cost[rides, drivers].tolist())
    return {
        "matched": len(pairs),
        "total_s": float(sum(pickup)),
        "mean_s": float(sum(pickup) / len(pickup)),
        "p90_s": common.percentile(pickup, 90),
    }


def assert_matching(pairs: Pairs, allowed: set[tuple[int, int]] | None = None) -> None:
    rides = [r for r, _ in pairs]
    drivers = [d for _, d in pairs]
    assert len(set(rides)) == len(rides), "a ride matched twice"
    assert len(set(drivers)) == len(drivers), "a driver matched twice"
    if allowed is not None:
        assert all(p in allowed for p in pairs), "a pair outside the candidates"


def one_round(round_no: int) -> dict[str, Any]:
    drivers_ll, pickups_ll = instance(round_no)
    clock = time.perf_counter
    ms: dict[str, float] = {}

    # The round as the dispatcher runs it.
    t0 = clock()
    drivers_xy, pickups_xy = project(drivers_ll), project(pickups_ll)
    distance, candidates = cKDTree(drivers_xy).query(pickups_xy, k=K)
    candidate_cost = seconds(distance)
    t1 = clock()
    edges = candidate_edges(candidates, candidate_cost)
    problem = build(RIDES, DRIVERS, edges)
    t2 = clock()
    optimal = solve(problem)
    t3 = clock()
    ms |= {"search": t1 - t0, "build": t2 - t1, "solve": t3 - t2, "total": t3 - t0}

    # Baseline: dense, every ride x every driver.
    t0 = clock()
    full = seconds(
        np.hypot(
            pickups_xy[:, :1] - drivers_xy[:, 0][None, :],
            pickups_xy[:, 1:] - drivers_xy[:, 1][None, :],
        )
    )
    t1 = clock()
    rows, cols = linear_sum_assignment(full)
    t2 = clock()
    dense = list(zip(rows.tolist(), cols.tolist(), strict=True))
    ms |= {"dense_build": t1 - t0, "dense_solve": t2 - t1, "dense_total": t2 - t0}

    # Baseline: dense on the same K edges, "big" elsewhere (a ride left on big is unserved).
    t0 = clock()
    big = RIDES * (float(edges.costs.max()) + 1.0) + 1.0
    restricted = np.full((RIDES, DRIVERS), big)
    restricted[edges.requests, edges.drivers] = edges.costs
    t1 = clock()
    rows, cols = linear_sum_assignment(restricted)
    t2 = clock()
    served = restricted[rows, cols] < big
    dense_k = list(zip(rows[served].tolist(), cols[served].tolist(), strict=True))
    ms |= {"dense_k_build": t1 - t0, "dense_k_solve": t2 - t1, "dense_k_total": t2 - t0}

    # Baselines: greedy on the same K edges.
    t0 = clock()
    greedy = greedy_cheapest_first(edges)
    t1 = clock()
    arrival = greedy_arrival_order(candidates)
    t2 = clock()
    ms |= {"greedy": t1 - t0, "arrival": t2 - t1}

    allowed = set(zip(edges.requests.tolist(), edges.drivers.tolist(), strict=True))
    for pairs in (optimal, dense_k, greedy, arrival):
        assert_matching(pairs, allowed)
    assert_matching(dense)
    q = {
        "optimal": quality(optimal, full),
        "dense": quality(dense, full),
        "dense_k": quality(dense_k, full),
        "greedy": quality(greedy, full),
        "arrival": quality(arrival, full),
    }
    opt = q["optimal"]
    # The sparse optimum against the dense one on the same edges: same rides, same total.
    same_as_dense_k = q["dense_k"]["matched"] == opt["matched"] and abs(
        q["dense_k"]["total_s"] - opt["total_s"]
    ) <= 1e-6 * max(1.0, opt["total_s"])
    # Never worse than greedy: at least as many rides, and no more seconds for as many.
    not_worse = all(
        opt["matched"] > q[name]["matched"]
        or (
            opt["matched"] == q[name]["matched"]
            and opt["total_s"] <= q[name]["total_s"] + 1e-6 * max(1.0, q[name]["total_s"])
        )
        for name in ("greedy", "arrival")
    )
    return {
        "ms": {key: value * 1000 for key, value in ms.items()},
        "quality": q,
        "same_as_dense_k": same_as_dense_k,
        "not_worse_than_greedy": not_worse,
        "edges": problem.edges,
        "drivers_in_matrix": int(problem.drivers.size),
        "nearest_candidate_s": float(np.median(candidate_cost[:, 0])),
        "farthest_candidate_s": float(np.median(candidate_cost[:, -1])),
    }


def timing(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [r["ms"][key] for r in runs]
    out = common.spread(values, 2)
    out["p90"] = round(common.percentile(sorted(values), 90), 2)
    return out


def quality_summary(runs: list[dict[str, Any]], name: str, label: str) -> dict[str, Any]:
    q = [r["quality"][name] for r in runs]
    out: dict[str, Any] = {
        "label": label,
        "matched": common.spread([x["matched"] for x in q], 0),
        "mean_pickup_s": common.spread([x["mean_s"] for x in q], 1),
        "p90_pickup_s": common.spread([x["p90_s"] for x in q], 1),
        "total_pickup_s": common.spread([x["total_s"] for x in q], 0),
    }
    if name != "optimal":
        base = [r["quality"]["optimal"] for r in runs]
        out["mean_pickup_ratio_to_optimal"] = common.spread(
            [x["mean_s"] / b["mean_s"] for x, b in zip(q, base, strict=True)], 3
        )
    return out


def run() -> dict[str, Any]:
    began = common.started()
    machine = common.machine_facts()
    deadline = common.Deadline(600, "batch solver rounds")
    for round_no in range(WARMUP_ROUNDS):
        one_round(-1 - round_no)
    runs = []
    for round_no in range(ROUNDS):
        runs.append(one_round(round_no))
        r = runs[-1]["ms"]
        print(
            f"   round {round_no + 1}: sparse {r['total']:.1f} ms (search {r['search']:.1f}, "
            f"build {r['build']:.1f}, solve {r['solve']:.1f}); dense {r['dense_total']:.1f} ms",
            flush=True,
        )
        deadline.check()

    sparse: dict[str, Any] = {
        "label": f"sparse: k={K} nearest (cKDTree) + min_weight_full_bipartite_matching",
        "candidate_search_ms": timing(runs, "search"),
        "matrix_build_ms": timing(runs, "build"),
        "solve_ms": timing(runs, "solve"),
        "total_ms": timing(runs, "total"),
        "ratio_to_dense": common.spread(
            [r["ms"]["total"] / r["ms"]["dense_total"] for r in runs], 3
        ),
    }
    dense = {
        "label": f"baseline: linear_sum_assignment, full {RIDES:,} x {DRIVERS:,} matrix",
        "matrix_build_ms": timing(runs, "dense_build"),
        "solve_ms": timing(runs, "dense_solve"),
        "total_ms": timing(runs, "dense_total"),
    }
    dense_k = {
        "label": f"check: linear_sum_assignment, full matrix, only the k={K} edges finite",
        "matrix_build_ms": timing(runs, "dense_k_build"),
        "solve_ms": timing(runs, "dense_k_solve"),
        "total_ms": timing(runs, "dense_k_total"),
    }
    greedy_ms = {
        "greedy_cheapest_first": timing(runs, "greedy"),
        "greedy_arrival_order": timing(runs, "arrival"),
    }
    quality = {
        "optimal": quality_summary(runs, "optimal", f"optimal on the k={K} edges (this solver)"),
        "dense": quality_summary(runs, "dense", "optimal on every pair (dense baseline)"),
        "greedy": quality_summary(runs, "greedy", f"greedy, cheapest pair first, k={K} edges"),
        "arrival": quality_summary(
            runs, "arrival", f"greedy, one ride at a time in arrival order, k={K} edges"
        ),
    }
    median_total = sparse["total_ms"]["median"]
    same = sum(r["same_as_dense_k"] for r in runs)
    # What keeping only k candidates per ride costs, in rounds where both serve every ride.
    excess = [
        100 * (r["quality"]["optimal"]["total_s"] / r["quality"]["dense"]["total_s"] - 1)
        for r in runs
        if r["quality"]["optimal"]["matched"] == r["quality"]["dense"]["matched"]
    ]
    not_worse = sum(r["not_worse_than_greedy"] for r in runs)
    part = {
        "settings": {
            "rides": RIDES,
            "drivers": DRIVERS,
            "k": K,
            "rounds": ROUNDS,
            "warmup_rounds": WARMUP_ROUNDS,
            "detour": DETOUR,
            "speed_m_s": SPEED_M_S,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            # This part may be re-run alone, on another machine than the others.
            "machine": {key: machine[key] for key in ("cpu", "nproc", "kernel", "python")},
        },
        "city": {
            "nearest_candidate_pickup_s_median": common.spread(
                [r["nearest_candidate_s"] for r in runs], 1
            ),
            "kth_candidate_pickup_s_median": common.spread(
                [r["farthest_candidate_s"] for r in runs], 1
            ),
            "edges": common.spread([r["edges"] for r in runs], 0),
            "drivers_in_matrix": common.spread([r["drivers_in_matrix"] for r in runs], 0),
        },
        "checks": {
            "same_rides_and_total_as_dense_on_k_edges": f"{same}/{ROUNDS}",
            "not_worse_than_either_greedy": f"{not_worse}/{ROUNDS}",
            "k_restriction_excess_over_dense_optimum_pct": common.spread(excess, 3)
            if excess
            else None,
            "k_restriction_excess_rounds": f"{len(excess)}/{ROUNDS}",
        },
        "targets": {
            "round_ms_max": TARGET_MS,
            "round_ms_median": median_total,
            "met": median_total <= TARGET_MS,
        },
        "timing": {"sparse": sparse, "dense": dense, "dense_k": dense_k, "greedy": greedy_ms},
        "quality": quality,
    }
    common.write_part("dispatch_solver", began, part)
    # Written first, so that a failure can be read; then a wrong answer fails the run.
    assert same == ROUNDS, part["checks"]
    assert not_worse == ROUNDS, part["checks"]
    return part


def main() -> None:
    common.exit_cleanly_on_sigterm()
    common.banner(f"2b. batch solver, {RIDES:,} rides x {DRIVERS:,} drivers, k={K}")
    part = run()
    print(json.dumps(part["city"]))
    print(json.dumps(part["checks"]))
    print(json.dumps(part["targets"]))
    t = part["timing"]
    for key in ("sparse", "dense", "dense_k"):
        print(f"   {key:10s} median {t[key]['total_ms']['median']:8.1f} ms per round")
    for key, value in part["quality"].items():
        mean, p90 = value["mean_pickup_s"]["median"], value["p90_pickup_s"]["median"]
        print(
            f"   {key:10s} matched {value['matched']['median']:5.0f}  "
            f"mean pickup {mean:6.1f} s  p90 {p90:6.1f} s"
        )


if __name__ == "__main__":
    main()
