"""Merges the benchmark parts (bench/results/*.tmp) into bench/results/latest.json and
regenerates docs/benchmarks.md from it. Run by bench/run.sh after the benchmarks.

    .venv/bin/python -m bench.report [--runtime-s N]

Every number written here comes from a part file; none is typed in.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from bench import common
from bench.report_city import (
    section_city_scale,
    section_city_sim,
    section_one_simulator,
    trade_offs,
)

LATEST = common.RESULTS / "latest.json"
DOCS = common.ROOT / "docs" / "benchmarks.md"
DASH = "\u2013"
PARTS = (
    "ingest_http",
    "ingest_stream",
    "nearest",
    "dispatch_solver",
    "dispatch_quality",
    "ingest_store",
    "memory",
    "soak",
    "dispatch_latency",
    "city_sim",
    "city_scale",
    "one_simulator",
)


def tool_versions() -> dict[str, str]:
    def first_line(args: list[str]) -> str:
        return (common._run(args).splitlines() or [""])[0]

    wrk = first_line(["wrk", "--version"])
    return {
        "wrk": wrk.split(" [")[0] if wrk else "not installed",
        "redis-benchmark": first_line(["redis-benchmark", "--version"]),
    }


def compact(data: dict[str, Any]) -> str:
    """Indented JSON with lists of numbers, and small objects, kept on one line."""
    text = json.dumps(data, indent=1, ensure_ascii=False)
    text = re.sub(
        r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text
    )

    def one_line(match: re.Match[str]) -> str:
        flat = "{" + " ".join(match.group(1).split()) + "}"
        return flat if len(flat) <= 110 else match.group(0)

    return re.sub(r"\{\s+([^{}]*?)\s+\}", one_line, text)


def num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def cell(s: dict[str, Any], digits: int = 0) -> str:
    """median (min-max)"""
    if s["min"] == s["max"]:
        return num(s["median"], digits)
    return f"{num(s['median'], digits)} ({num(s['min'], digits)}{DASH}{num(s['max'], digits)})"


def ms(s: dict[str, Any]) -> dict[str, Any]:
    """A spread in microseconds, in milliseconds."""
    return {k: [v / 1000 for v in s[k]] if k == "runs" else s[k] / 1000 for k in s}


def ratio_cell(key: str, row: dict[str, Any], baseline: str) -> str:
    """A row's ratio to ``baseline`` (whose own row says so); a dash for rows without one."""
    if f"ratio_to_{baseline}" in row:
        return cell(row[f"ratio_to_{baseline}"], 3)
    return "1 (baseline)" if key == baseline else "—"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def section_http(p: dict[str, Any]) -> str:
    t = p["targets"]
    rows = []
    for v in t.values():
        ratio = cell(v["ratio_to_bare"], 3) if "ratio_to_bare" in v else "1 (baseline)"
        rows.append(
            [
                v["label"],
                cell(v["requests_per_s"]),
                ratio,
                str(v["best_connections"]),
                cell(v["p50_ms"], 2),
                cell(v["p99_ms"], 2),
                cell(v["server_cpu_us_per_request"]),
                f"{v['non_2xx']} of {num(v['requests'])}",
            ]
        )
    s = p["settings"]
    levels = [str(level) for level in s["connection_levels"]]
    sweep = [
        [
            v["label"],
            *(
                f"{num(v['levels'][level]['requests_per_s']['median'])}"
                + (
                    f" ({num(v['levels'][level]['ratio_to_bare']['median'], 3)})"
                    if "ratio_to_bare" in v["levels"][level]
                    else ""
                )
                + f", {num(v['levels'][level]['server_cpu_us_per_request']['median'])} µs"
                for level in levels
            ),
        ]
        for v in t.values()
    ]

    def cpu_at_best(key: str) -> float:
        v = t[key]
        return float(v["levels"][str(v["best_connections"])]["server_cpu_us_per_request"]["median"])

    bare_cpu, emb, prod = (cpu_at_best(k) for k in ("bare", "embedded_nolog", "production_nolog"))
    c = p["checks"]
    low = levels[0]
    prod_low = t["production_log"]["levels"][low]["ratio_to_bare"]["median"]
    return f"""## 1. Single-PUT location ingest vs a bare ASGI endpoint

**What.** `PUT /api/v1/drivers/{{id}}/location` with a JSON body
(`{{"latitude": ..., "longitude": ...}}`, no `recorded_at`), bearer token of the driver,
204 expected, against the same server process
model answering 204 from a raw ASGI callable (`bench/bare_asgi.py`, reads the body first).

**How.** `ridehail serve` (uvicorn, one process, role `all`, so the dispatcher and outbox
relay run in it too) on the embedded default (SQLite file + in-process grid index) and on the
production profile (PostgreSQL + Redis, own database and key prefix). {s["drivers"]} drivers
signed up over the API, got tokens and went available; `bench/put_location.lua` gives each
wrk thread its own share of them and takes them in turn, and drivers drive: each goes
round a circle of its own in the city at 10 m/s, its position a function of the clock
(`bench/wrk_drivers.lua`), so that every report, in the warm-up and in every run after
it, is a plausible new position the store files as live (the search index updated, as for
a real driver). Until 2026-11-30 each wrk run started the drivers where the last one had
started them: the first seconds of every run after the first were fixes the store
refused as jumps (no GEO write, a cheaper path; half of one run's reports, by Redis's
command counts). Load: `{s["wrk"]}`, {s["repeats"]} rounds, in each every target (in an
order that rotates by round) at each of {", ".join(levels)} connections, each run paired
with a run of the bare app at the same load just before or after it (alternating by
round): this machine's speed drifted by a quarter over minutes on 2026-11-30, so a ratio
compares two runs seconds apart. While one server is loaded every other is paused
(SIGSTOP; from 2026-11-30 on): an idle ridehail server still runs its dispatcher, relay and
stream loops, 3.3-3.7 % of a core each here (20 s, `/proc`), and four of them took a
seventh of a core, plus PostgreSQL's share, from whichever target was under load.
**Capacity** is a round's best requests/s over those
loads, and the ratio to bare is a target's capacity over that of the bare runs paired with
its own. A closed loop of few connections
can measure a server that waits on a store below its capacity: with 32 connections the
production server was idle (neither running nor waiting for a core) 8.7 % of the time and
the bare app 3.3 %, with 128 the production server 4.4 % (`/proc/<pid>/schedstat`, one
run each, 2026-11-30): two batches of reports in Redis leave too few requests to parse.
The bare app answers at once and is busiest at few connections; at 512 it left some
connections unanswered past wrk's 5 s timeout, so the sweep stops at 128.
The bare app gets byte-for-byte the same requests and is served by `uvicorn.run` with the
same arguments as `ridehail serve`. A second reference, a plain Starlette route that
validates the body with msgspec and answers 204 (no token, no store;
`bench/starlette_msgspec.py`), shows how much of the bare figure a minimal framework
route keeps on this machine.
Server CPU is user + system time of the server process (all threads, from `/proc`) divided
by the requests wrk completed.

**The path measured.** The PUT is served by `ridehail.locations.fast_ingest` ahead of
FastAPI's middleware stack (the body decoded by msgspec into `LocationReport`, which accepts
nothing the route's `LocationIn` refuses; the same token check, rules and store write as
the documented route; anything else is handed to the route). Successful reports are counted
and timed in `/metrics` (in bulk, `ridehail.tally`) but not access-logged (12,500 lines a
second would cost more than the reports),
so the INFO (as shipped) and WARNING servers differ only in the lines of the drivers'
sign-ups ({num(c["access_log_lines_embedded_log"])} and
{c["access_log_lines_embedded_nolog"]} `http_request` lines). On the production profile
the reports in flight together share one Redis script call (which also publishes positions
to followers), sent on a connection the location store keeps for it
(`ridehail.locations.redis_lane`: hiredis packs and parses, no pool or retry wrapper), with
up to two batches on the wire at once so that the server parses the next reports while
Redis runs the last batch. On the embedded default the reports in flight together are
batched too (one call into the in-process store, answered in one burst: see
`ridehail.locations.coalesce`).

{
        table(
            [
                "target",
                "capacity, requests/s",
                "ratio to bare",
                "best at connections",
                "p50 ms",
                "p99 ms",
                "server CPU µs/request",
                "non-2xx",
            ],
            rows,
        )
    }

Latency and server CPU are those at the connections where the median was best. Every load,
median requests/s (ratio to the bare run paired with it) and server CPU per request:

{table(["target", *(f"{level} connections" for level in levels)], sweep)}

With {low} connections, the load used until 2026-11-30, production keeps
{num(prod_low, 3)} of bare. Latency is wrk's, each connection always waiting for its reply,
so it is mostly queueing (connections ÷ requests/s). The server CPU per request
is the steadier figure on a shared machine: {num(emb)} µs (embedded) and {num(prod)} µs
(production) at their best loads, against {num(bare_cpu)} µs for the bare app at its. After the runs
{c["production_drivers_with_a_stored_fix"]} production drivers had a live fix in Redis.
The Starlette + msgspec reference, which checks no token and writes nothing, keeps
{num(t["starlette_msgspec"]["ratio_to_bare"]["median"], 3) if "starlette_msgspec" in t else "—"}
of the bare figure in the same run: on this machine uvicorn plus the least a framework
route does already costs about half of the bare server's throughput.
"""


def section_stream(p: dict[str, Any]) -> str:
    s = p["settings"]
    rows = []
    for v in p["targets"].values():
        rows.append(
            [
                v["label"],
                cell(v["batch_points_per_s"]),
                cell(v["batch_p99_ms"], 1),
                cell(v["batch_server_cpu_us_per_point"], 1),
                cell(v["ws_points_per_s"]),
                cell(v["ws_server_cpu_us_per_point"], 1),
                f"{v['batch_non_2xx']} / {v['ws_errors_received']}",
            ]
        )
    header = [
        "server",
        "batch points/s",
        "batch p99 ms",
        "batch server CPU µs/point",
        "WebSocket points/s",
        "WebSocket server CPU µs/point",
        "errors (batch / ws)",
    ]
    return f"""## 1b. Batch and WebSocket ingest through the API

**What.** (a) `POST /api/v1/drivers/{{id}}/locations` carrying {s["batch_points"]} buffered
points per request (`bench/post_batch.lua`: each point 1 ms and about 28 m after the last,
so every one is a new live position), wrk with {s["batch_connections"]} connections over
{s["drivers"]} drivers. (b) `{{"type": "location", ...}}` frames on
`/api/v1/drivers/{{id}}/stream`, {s["ws_connections"]} connections (one per driver), each
offering {num(s["ws_rate_per_connection"])} frames/s
({num(s["ws_connections"] * s["ws_rate_per_connection"])}/s in all, more than the server
takes) from a separate client process. {s["duration_s"]} s each, {s["repeats"]} rounds,
against `{s["server"]}`.

**Counted by the server.** Points per second are the increase of the server's own
`ridehail_location_fixes_total` counter (every outcome) over the run, read from `/metrics`;
for the WebSocket, frames still buffered when the client stops are counted until the
counter stops moving, and that time is included.

{table(header, rows)}
"""


def section_nearest(p: dict[str, Any]) -> str:
    r = p["results"]
    s = p["settings"]
    city = p["city"]
    rows = []
    for key, v in r.items():
        ratio = ratio_cell(key, v, "raw_geosearch_python")
        short = v.get("answers_with_fewer_than_10")
        rows.append(
            [
                v["label"],
                cell(v["queries_per_s"]),
                ratio,
                cell(ms(v["p50_us"]), 2),
                cell(ms(v["p99_us"]), 2),
                "—" if short is None else str(short),
            ]
        )
    nearest_table = table(
        [
            "method",
            "queries/s",
            "ratio to raw GEOSEARCH (Python)",
            "p50 ms",
            "p99 ms",
            "answers < 10 hits",
        ],
        rows,
    )
    return f"""## 2. Nearest 10 drivers within 2 km among {num(s["drivers"])}

**What.** `nearest(limit={s["limit"]}, radius_m={num(s["radius_m"])})` over {num(s["drivers"])}
drivers in a box {common.WIDTH_KM:g} km east-west by {common.HEIGHT_KM:g} km north-south,
centred on {common.CENTRE_LAT}, {common.CENTRE_LON}: {int(common.HOTSPOT_SHARE * 100)} % of
the drivers around {len(common.HOTSPOTS)} Gaussian hotspots (sigma 1 to 1.5 km), the rest uniform;
seeded (`bench/common.py`). Query points come from the same mixture with another seed;
{num(s["queries_per_run"])} of them per run, {s["repeats"]} runs, every fix fresh.

**How.** (a) `InMemoryLocationStore.nearest` awaited in-process one query at a time, each
timed with `perf_counter_ns` (service time). (b) `RedisLocationStore.nearest` (GEOSEARCH
WITHDIST in every H3 region the circle touches, then the drivers' state keys for exact
positions and freshness) with {s["concurrent_tasks"]} asyncio tasks on
one redis-py client (`redis.asyncio.from_url`, as the app builds it). (c) Baselines on a plain
GEO key with the same members: `GEOSEARCH key FROMLONLAT lon lat BYRADIUS 2 km ASC COUNT 10`
from the same Python client, tasks and random points; and from `redis-benchmark -n
{num(s["queries_per_run"])} -c {s["concurrent_tasks"]}` at one fixed point (the city centre,
{num(city["drivers_within_2km_of_centre"])} drivers within 2 km). Latency under concurrency
includes waiting for the other tasks; (a) is the time of one query alone.

**Crowding.** Drivers within 2 km of a query point (sample of
{num(city["drivers_within_2km_sample"])} points): mean {num(city["drivers_within_2km_mean"])},
median {num(city["drivers_within_2km_median"])}, min {num(city["drivers_within_2km_min"])},
max {num(city["drivers_within_2km_max"])}. Both stores returned the same 10 drivers in the
same order for {p["checks"]["same_top10_in_memory_vs_redis"]} sampled points; against a
brute-force scan (haversine over all {num(s["drivers"])}, ties by id) the in-process store
was exact for {p["checks"].get("in_memory_exact_vs_brute_force", "—")} and the Redis store
had the same ids in the same order for
{p["checks"].get("redis_store_same_ids_and_order_as_brute_force", "—")}.

{nearest_table}

Redis {s["redis"]["version"]}. The in-process store's figures are for one core of the
API process; Redis's are for the Redis server plus a Python client on a 2-core machine.
"""


def section_dispatch_solver(p: dict[str, Any]) -> str:
    s = p["settings"]
    t = p["timing"]
    q = p["quality"]
    c = p["checks"]
    city = p["city"]
    m = s["machine"]
    rows = []
    for key in ("sparse", "dense", "dense_k"):
        v = t[key]
        rows.append(
            [
                v["label"],
                cell(v["candidate_search_ms"], 2) if "candidate_search_ms" in v else "—",
                cell(v["matrix_build_ms"], 2),
                cell(v["solve_ms"], 2),
                cell(v["total_ms"], 2),
                num(v["total_ms"]["p90"], 2),
                ratio_cell(key, v, "dense"),
            ]
        )
    timing_table = table(
        ["method", "candidate search ms", "matrix build ms", "solve ms", "round ms", "p90 ms",
         "ratio to dense"],
        rows,
    )  # fmt: skip
    quality_rows = []
    for key in ("optimal", "dense", "greedy", "arrival"):
        v = q[key]
        quality_rows.append(
            [
                v["label"],
                cell(v["matched"]),
                cell(v["mean_pickup_s"], 1),
                cell(v["p90_pickup_s"], 1),
                cell(v["total_pickup_s"]),
                cell(v["mean_pickup_ratio_to_optimal"], 3)
                if "mean_pickup_ratio_to_optimal" in v
                else "1 (this solver)",
            ]
        )
    quality_table = table(
        ["assignment", "rides served", "mean pickup s", "p90 pickup s", "total pickup s",
         "mean pickup, ratio to this solver"],
        quality_rows,
    )  # fmt: skip
    excess = c.get("k_restriction_excess_over_dense_optimum_pct")
    excess_text = (
        f"{cell(excess, 3)} % above the dense optimum over every pair (rounds in which both "
        f"served every ride: {c['k_restriction_excess_rounds']})"
        if excess
        else "not comparable: in no round did both serve every ride"
    )
    g = t["greedy"]
    return f"""## 2b. Batch matching: {num(s["rides"])} waiting rides x {num(s["drivers"])} drivers

**What.** One round of batch dispatch: {num(s["rides"])} waiting rides and {num(s["drivers"])}
free drivers in the city of benchmark 2 (same box and mixture, other seeds; a new instance
every round), each ride's {s["k"]} nearest drivers as candidates, pickup cost = straight-line
distance x {s["detour"]} detour ÷ {s["speed_m_s"]} m/s, in seconds. Solved by
`ridehail.dispatch.assignment`: most rides served first, then least total pickup time.
{s["rounds"]} timed rounds after {s["warmup_rounds"]} warm-up rounds, on {m["cpu"]}
({m["nproc"]} cores, kernel {m["kernel"]}), Python {m["python"]}, numpy {s["numpy"]},
scipy {s["scipy"]}.

**How.** Each round is timed with `perf_counter` in three stages: candidate search (project
latitude and longitude to metres, build a `scipy.spatial.cKDTree` over the drivers, query
the {s["k"]} nearest of every pickup), matrix build (`candidate_edges` + `build`: the sparse
matrix, {cell(city["edges"])} edges over {cell(city["drivers_in_matrix"])} distinct drivers,
plus one dummy column per ride) and solve (`solve`:
`scipy.sparse.csgraph.min_weight_full_bipartite_matching`). Baseline, on the same instance
in the same round: `scipy.optimize.linear_sum_assignment` on the full
{num(s["rides"])} x {num(s["drivers"])} matrix of pickup times (building that matrix is timed
too; it needs no candidate search). Check: the same dense solver on a full matrix that is
finite only on the {s["k"]} candidates (timed without the candidate search it reuses).
Median pickup time to a ride's nearest candidate
{cell(city["nearest_candidate_pickup_s_median"], 1)} s, to its {s["k"]}th
{cell(city["kth_candidate_pickup_s_median"], 1)} s (median over rides, per round).

{timing_table}

**Quality.** Pickup times of the rides served, per round (median of the rounds, with their
spread). Greedy baselines on the same {s["k"]} candidates: cheapest pair first over all
candidate pairs ({cell(g["greedy_cheapest_first"], 2)} ms in Python), and one ride at a time
in arrival order, each taking its nearest free candidate, as a dispatcher without batching
does ({cell(g["greedy_arrival_order"], 2)} ms).

{quality_table}

Checks, every round: the sparse solver served as many rides with the same total as the dense
solver on the same candidates ({c["same_rides_and_total_as_dense_on_k_edges"]} rounds), and
served at least as many rides as either greedy baseline with no more total pickup time
({c["not_worse_than_either_greedy"]}); the benchmark fails otherwise. Keeping only {s["k"]}
candidates per ride cost {excess_text}.
"""


def section_dispatch_quality(p: dict[str, Any]) -> str:
    s = p["settings"]
    r = p["results"]
    c = p["checks"]
    pol = s["policy"]
    names = [n for n in ("sequential", "broadcast", "batch") if n in r]
    seeds = s["seeds"]
    several = len(seeds) > 1

    def scaled(v: dict[str, Any], factor: float) -> dict[str, Any]:
        return {k: [x * factor for x in v[k]] if k == "runs" else v[k] * factor for k in v}

    def row(title: str, key: str, digits: int = 0, factor: float = 1.0) -> list[str]:
        return [title] + [
            cell(scaled(r[n][key], factor), digits) if key in r[n] else "—" for n in names
        ]

    def pair(title: str, key: str, digits: int = 0) -> list[str]:
        return [title] + [
            f"{cell(r[n][key + '_mean'], digits)} / {cell(r[n][key + '_p90'], digits)}"
            if key + "_mean" in r[n]
            else "—"
            for n in names
        ]

    quality = table(
        ["", *names],
        [
            row(f"rides matched (of {num(s['rides'])} requested)", "matched"),
            row("match rate %", "match_rate", 1, 100.0),
            row("ended `no_drivers_available`", "no_drivers_available"),
            row(f"cancelled by the rider (after {num(s['rider_patience_s'])} s)",
                "cancelled_by_rider"),
            pair("pickup distance m, mean / p90", "pickup_m"),
            pair("pickup time s (accept -> at the pickup), mean / p90", "pickup_s"),
            pair("rider wait s (request -> driver at the pickup), mean / p90", "wait_s"),
            pair("time to first offer s (rides offered), mean / p90", "first_offer_s", 1),
            pair("time to acceptance s, mean / p90", "accept_s", 1),
            row("offers per matched ride", "offers_per_matched_ride", 2),
            row("offers made", "offers"),
            row("driver utilisation % (demand window)", "utilisation", 1, 100.0),
            row(
                f"requests with no idle driver within {num(s['local_m'] / 1000)} km on arrival",
                "requests_without_idle_driver_within_local_m",
            ),
            row("fewest idle drivers at any second", "min_idle_drivers"),
        ],
    )  # fmt: skip
    cost = table(
        ["", *names],
        [
            row("dispatch rounds", "rounds"),
            row("`run_round` wall time ms, median", "round_ms_median", 2),
            row("`run_round` wall time ms, p99", "round_ms_p99", 2),
            row("dispatch transactions, wall time s in all", "dispatch_wall_s", 1),
            row("replay wall time s", "replay_wall_s", 1),
        ],
    )  # fmt: skip

    def of(
        runs: dict[str, Any], key: str, sub: str | None = None, factor: float = 1.0, digits: int = 0
    ) -> str:
        values = []
        for n in names:
            v = runs[n][key] if sub is None else runs[n][key][sub]
            values.append("—" if v is None else num(v * factor, digits))
        return " / ".join(values)

    per_seed_rows = [
        [
            str(seed),
            of(p["seeds"][str(seed)], "match_rate", factor=100.0, digits=1),
            of(p["seeds"][str(seed)], "pickup_m", "mean"),
            of(p["seeds"][str(seed)], "pickup_s", "mean"),
            of(p["seeds"][str(seed)], "pickup_s", "p90"),
            of(p["seeds"][str(seed)], "wait_s", "mean"),
        ]
        for seed in seeds
    ]  # fmt: skip
    slash = " / ".join(names)
    against = "; ".join(
        f"{n} "
        + ", ".join(
            f"{num(100 * p['seeds'][str(x)][n]['pickup_s']['mean'] / base, 1)} %"
            for x in seeds
            if (base := p["seeds"][str(x)]["sequential"]["pickup_s"]["mean"])
        )
        for n in names
        if n != "sequential" and "sequential" in names
    )
    per_seed = table(
        ["seed", f"match rate % ({slash})", "pickup m, mean", "pickup s, mean",
         "pickup s, p90", "wait s, mean"],
        per_seed_rows,
    )  # fmt: skip
    over = (
        f"{len(seeds)} seeds ({', '.join(str(x) for x in seeds)}); cells show the median over "
        "the seeds and, in brackets, the lowest and highest"
        if several
        else f"one seed ({seeds[0]}); every cell is that one replay"
    )
    matched = sum(run["matched"] for per in p["seeds"].values() for run in per.values())
    m = s["machine"]
    return f"""## 2c. Dispatch quality: one seeded demand under {", ".join(names)}

**What.** The same synthetic demand replayed once per dispatch strategy against the real
engine, {over}. {num(s["drivers"])} drivers in the city of benchmark 2 (same box and
mixture, {int(s["driver_hotspot_share"] * 100)} % around the hotspots), all available; \
{num(s["rides"])} ride requests over {num(s["demand_s"] / 60)} simulated minutes (a Poisson
process: sorted uniform arrival times), each by its own rider, origins around a hotspot
({int(s["demand_hotspot_share"] * 100)} %) or anywhere in the box, destinations
{num(s["trip_m"][0] / 1000)}{DASH}{num(s["trip_m"][1] / 1000)} km away in a random
direction. A driver answers an offer after {s["answer_delay_s"][0]}{DASH}\
{s["answer_delay_s"][1]} s: accepts ({int(s["accept_p"] * 100)} %), declines
({int(s["decline_p"] * 100)} %) or never answers (the rest: the offer expires); a rider
still unmatched after {num(s["rider_patience_s"])} s cancels. Engine defaults otherwise:
search timeout {num(pol["search_timeout_s"])} s, offers open {num(pol["offer_ttl_s"])} s,
retry every {num(pol["retry_interval_s"])} s, rings up to {num(pol["radius_m"] / 1000)} km,
broadcast to {pol["broadcast_k"]}, batch window {num(pol["batch_window_s"])} s with
{pol["batch_k"]} candidates per ride, fixes fresh for {num(pol["stale_after_s"])} s.

**How.** `bench/dispatch_quality.py`: a discrete-time simulation on a simulated clock in
{s["step_s"]} s steps (from {s["start"]}, so `StraightLineEta` drives at
{num(s["speed_kmh"])} km/h with a {s["detour"]} detour), calling the engine's own service
functions on a SQLite file migrated with `upgrade`, with the in-process location store.
Each step, in one transaction per action as the API does: new requests (`request_ride`,
then `open_search` as the dispatch handler does on `rides.requested`); the drivers' answers
due (`accept`, `decline`; an answer to an offer that is gone is refused and ignored, as a
driver app would); arrivals (`arrive` and `start` at the pickup, `complete` at the
drop-off, then the trip end the dispatch handler records); riders out of patience
(`cancel`); a fix from every driver once per {s["report_every_s"]} s; `expire_offers`; then
dispatch rounds as `Dispatcher.tick` runs them (sequential and broadcast: claim one due
search per transaction until none is due; batch: every due search in one round per
window). An accepted driver drives to the pickup, then to the destination, in a straight
line at the speed that makes the drive take exactly the ETA model's time, and is idle
where the trip ended. Every random draw comes from a generator seeded per ride, per driver
or per ride and driver pair, so every strategy sees the same demand and the same drivers,
and a driver offered the same ride answers the same way after the same delay. Times of
the service are simulated seconds; the wall-clock
figures are `perf_counter` around each `run_round` (the claim and the commit around it are
in "dispatch transactions"). The replay ends when every search has ended after the demand
window; riders whose driver was still on the way then ({c["picked_up_after_replay_end"]} of
the {num(matched)} matched rides of the {c["replays"]} replays) count with the arrival time
fixed at the accept. Pickup distance: straight line from
where the driver was when they accepted; utilisation: share of driver-seconds of the demand
window spent driving to a pickup or with a rider.

{quality}

**Per seed** ({slash}). Mean pickup time against sequential's in the same seed:
{against}.

{per_seed}

**What it cost**, wall clock on {m["cpu"]} ({m["nproc"]} cores), Python {m["python"]}; a
batch round advances every due search, a sequential or broadcast round one:

{cost}

Checks: the replay's own account of rides by outcome and of offers made and accepted agreed
with the database's rows in {c["replay_agrees_with_database"]} of {c["replays"]} replays (the
benchmark fails otherwise); rides still searching at the end: {c["still_searching_at_end"]};
dispatcher ticks that hit the worker's {num(s["max_steps_per_tick"])}-search cap:
{c["capped_ticks"]}. The whole benchmark took {num(p["wall_s"])} s.
"""


def section_ingest_store(p: dict[str, Any]) -> str:
    r = p["results"]
    s = p["settings"]
    c = p["checks"]
    rows = []
    for key, v in r.items():
        ratio = ratio_cell(key, v, "raw_geoadd")
        rows.append([v["label"], cell(v["writes_per_s"]), ratio])
    pg = s["postgres"]
    return f"""## 3. Ingest trade-off: one PostgreSQL row per driver vs Redis

**What.** The same stream of {num(s["fixes"])} fixes from {num(s["drivers"])} drivers (rounds
in which every driver reports once, in shuffled order, about 40 m from its last fix; times
strictly increasing), cut into batches of {s["batch"]} that {s["workers"]} workers take in
turn (the first {num(s["drivers"])} fixes insert, the rest update). Each run starts from
empty tables / keys; {s["repeats"]} runs.

**How.** (a) PostgreSQL {pg["version"]} (`synchronous_commit={pg["synchronous_commit"]}`,
`fsync={pg["fsync"]}`, `shared_buffers={pg["shared_buffers"]}`): table
`(driver_id text primary key, latitude, longitude, recorded_at)`, `INSERT ... ON CONFLICT
(driver_id) DO UPDATE ... WHERE stored.recorded_at < EXCLUDED.recorded_at` (the stores'
"older fixes never move the live position" rule), one transaction per batch through asyncpg
`executemany`, {s["workers"]} connections; each batch sorted by driver id so concurrent
transactions lock rows in one order. No spatial index: a real PostgreSQL location store
would need one (PostGIS or a geohash column) to answer nearest queries, which costs more
per write. (b) `RedisLocationStore.record_many` (one Lua call per 500 fixes: the ingest rules,
driver state, region sets, and, as in production, a PUBLISH of each new live position of a
driver someone follows: {s.get("followed_share", 0.3):.0%} of the drivers here, an assumed
share of drivers with a rider waiting or riding at a busy hour; also measured with every
driver followed, the upper bound, and without publishing), {s["workers"]} asyncio tasks; as
deployed, each store sends its script calls on a connection of its own
(`ridehail.locations.redis_lane`), the tasks' calls pipelined on it.
(c) Baselines: the same points as pipelined `GEOADD` from a redis-py client and
tasks; and the same {num(s["fixes"])} `GEOADD` commands streamed by `redis-cli --pipe`,
the Redis server's own ceiling without Python in the loop.

{table(["writer", "writes/s", "ratio to GEOADD (redis-py)"], rows)}

Checks after the last run: {num(c["postgres_rows"])} PostgreSQL rows,
{num(c["redis_store_members"])} members in the store's region GEO sets
({c.get("redis_store_regions", "—")} regions), newest fix kept in
{c["newest_fix_kept_postgres"]} (PostgreSQL) and {c["newest_fix_kept_redis_store"]}
(Redis store) sampled drivers, {c["postgres_deadlock_retries"]} deadlock retries.
"""


def section_memory(p: dict[str, Any]) -> str:
    r = p["results"]
    s = p["settings"]
    rows = []
    for key in ("in_memory_position_only", "in_memory_with_extras"):
        v = r[key]
        rows.append(
            [
                v["label"],
                cell(v["with_id_string_bytes_per_driver"], 1),
                f"{cell(v['store_bytes_per_driver'], 1)} + {num(s['id_string_bytes'])} id",
                f"RSS {num(v['rss_delta_bytes_per_driver'], 1)}"
                if "rss_delta_bytes_per_driver" in v
                else "—",
            ]
        )
    for key in ("redis_store_position_only", "redis_store_with_extras", "raw_geo"):
        v = r[key]
        parts = (
            f"region sets {cell(v['geo_key_bytes_per_driver'], 1)} + driver state "
            f"{cell(v['fix_hash_bytes_per_driver'], 1)}"
            if "geo_key_bytes_per_driver" in v
            else "GEO key only"
        )
        rows.append(
            [
                v["label"],
                cell(v["memory_usage_bytes_per_driver"], 1),
                parts,
                cell(v["used_memory_delta_bytes_per_driver"], 1),
            ]
        )
    return f"""## 4. Memory per tracked driver

**How.** In process: a fresh interpreter builds the {num(s["drivers"])} fixes first, then
`tracemalloc` measures an `InMemoryLocationStore` after `record_many` of all of them, minus
the empty store. The driver id strings (`drv_` + 26 characters, {num(s["id_string_bytes"])}
bytes each by `sys.getsizeof`) exist before the store and are added separately: the store
keeps them as dict keys, and Redis stores them too. Redis {s["redis"]["version"]}:
`MEMORY USAGE key SAMPLES 0` (every element) of the store's keys (the regions' GEO and
`seen` sets, the drivers' state strings) after
`record_many` of the same fixes, and the `INFO memory` `used_memory` delta (another user of
the same Redis can disturb the delta; `MEMORY USAGE` counts only these keys). Baseline: a
plain GEO key with the same members. "With extras" fixes carry heading, speed and accuracy.
{s["repeats"]} runs each.

{table(["store", "bytes per driver", "made of", "used_memory (RSS) delta per driver"], rows)}
"""


def section_soak(p: dict[str, Any]) -> str:
    s = p["settings"]
    lat = p["latency_ms"]
    cpu = p["cpu_cores"]
    mem = p["redis_used_memory_bytes"]
    stored = p["stored_check"]
    rows = [
        [
            str(n),
            num(seg["rps"]),
            num(seg["p50_ms"], 2),
            num(seg["p99_ms"], 2),
            num(seg["max_ms"], 1),
            str(seg["errors"]),
        ]
        for n, seg in enumerate(p["segments"], start=1)
    ]
    verdict = "**0 errors.**" if p["errors"] == 0 else f"**{num(p['errors'])} errors.**"
    return f"""## 5. Soak: {num(s["drivers"])} drivers for {num(s["duration_s"])} s

**What.** {num(s["drivers"])} simulated drivers each report their position once every
{num(s["cycle_s"])} s (`PUT /api/v1/drivers/{{id}}/location`, each driver going round a
circle of its own at 10 m/s, so each report is about 40 m on from the last, accuracy 8 m):
{num(s["offered_rate_per_s"])} requests/s offered, for
{num(s["duration_s"])} s, against `{s["server"]}`.

**How.** `{s["load"]}` (`bench/soak.py`): wrk hands out paced send slots, so the offered
rate does not depend on how fast answers come back while connections are free; latency is
wrk's, from sending a request to its answer. The drivers' tokens are minted with the
server's secret. CPU is CPU seconds per wall-clock second (1.0 = one core busy) of the API
processes (the uvicorn supervisor and its workers, from `/proc`), of Redis (`INFO cpu`) and
of wrk.

The first cycle is the hard one: each API process sees every driver's token for the first
time within a few seconds (the check's result is remembered after that). With PyJWT
2.15 doing that check (60-68 µs a token here, 92-126 µs on the slower machine of an
earlier run; its largest part under cProfile, about a third, is a character-by-character
check of the base64 alphabet), the run of 2026-11-30 16:18 UTC had 127 wrk timeouts, all
in its first segment. `ridehail.accounts.security.Tokens` now checks tokens in the exact form it
issues itself (header, claims, HMAC-SHA256 in C, compared in constant time) in 11-12 µs
and leaves any other form to PyJWT (same-run loops over 20,000 and 5,000 fresh tokens,
2026-11-30; tests/unit/test_tokens.py holds both to the same answers).

{verdict} {num(p["requests"])} requests answered, {num(p["achieved_rate_per_s"])}/s achieved of
{num(s["offered_rate_per_s"])}/s offered. Latency: p50 {cell(lat["p50_median_of_segments"], 2)} ms,
p99 {cell(lat["p99_median_of_segments"], 2)} ms (median of the segments, with their spread),
worst segment's p99 {num(lat["p99_worst_segment"], 1)} ms, slowest request
{num(lat["max"], 1)} ms. CPU: API processes {num(cpu["api_processes"], 2)} cores, Redis
{num(cpu["redis"], 2)}, wrk {num(cpu["wrk"], 2)}: together
{num(cpu["api_processes"] + cpu["redis"] + cpu["wrk"], 2)} of the machine's
{common.machine_facts()["nproc"]} cores, so most of the latency is waiting for a CPU.
Redis `used_memory` went from
{num(mem["before"] / 1e6, 1)} MB to {num(mem["after"] / 1e6, 1)} MB. After the run,
{stored["checked"] - stored["missing"] - stored["older_than_horizon"]} of {stored["checked"]}
sampled drivers had a stored live position from the last minute
({stored["missing"]} missing). Server log tracebacks: {p["server_log_tracebacks"]}.

{table(["segment", "requests/s", "p50 ms", "p99 ms", "max ms", "errors"], rows)}
"""


def _dur(value: float | None, missing: str = "no offer") -> str:
    """A duration given in ms: ms below a second, seconds above; None = ``missing``."""
    if value is None:
        return missing
    if abs(value) >= 1000:
        return f"{value / 1000:,.1f} s"
    return f"{value:,.1f} ms"


def section_dispatch_latency(p: dict[str, Any]) -> str:
    s = p["settings"]
    runs = p["strategies"]
    names = list(runs)

    def label(name: str) -> str:
        window = runs[name].get("batch_window_s")
        return f"{name} (window {num(window, 1)} s)" if window else name

    header = ["", *[label(n) for n in names]]
    latency_rows = []
    for key, title in (
        ("accepted", "rides accepted (202) of requests sent"),
        ("rate", "requests/s achieved (offered)"),
        ("202", "202 response time p50 / p99"),
        ("p50", "**offer latency p50**"),
        ("p90", "offer latency p90"),
        ("p99", "**offer latency p99**"),
        ("max", "offer latency max"),
        ("within", f"rides with an offer within {num(s['within_s'])} s"),
        ("none", "rides with no offer by the end of the drain"),
        ("offered", "among the rides offered: p50 / p99"),
        ("idle", f"unloaded ({s['idle_rides']} rides one at a time): offer p50 / p99"),
        ("idle202", "unloaded: 202 response time p50 / p99"),
        ("probe", "baseline: Redis PUBLISH -> message, p50 / p99 unloaded; under the load"),
    ):
        row = [title]
        for name in names:
            r = runs[name]
            load, lat, idle = r["load"], r["offer_latency_ms"], r["unloaded"]
            cells = {
                "accepted": f"{num(load['accepted_202'])} of {num(load['requests'])}",
                "rate": f"{num(load['achieved_rate_per_s'], 1)} "
                f"({num(r['rides_offered_rate_per_s'], 1)})",
                "202": f"{_dur(load['response_202_ms']['p50'])} / "
                f"{_dur(load['response_202_ms']['p99'])}",
                "within": f"{num(lat['offered_within_5s'])} of {num(lat['n'])}",
                "none": num(lat["no_offer"]),
                "offered": f"{_dur(lat['offered_only']['p50'], '—')} / "
                f"{_dur(lat['offered_only']['p99'], '—')}"
                if "offered_only" in lat
                else "—",
                "idle": f"{_dur(idle['offer_latency_ms']['p50'])} / "
                f"{_dur(idle['offer_latency_ms']['p99'])}",
                "idle202": f"{_dur(idle['response_202_ms']['p50'])} / "
                f"{_dur(idle['response_202_ms']['p99'])}",
                "probe": "; ".join(
                    f"{_dur(r['publish_probe_ms'][k]['p50'])} / "
                    f"{_dur(r['publish_probe_ms'][k]['p99'])}"
                    for k in ("unloaded", "under_load")
                ),
            }
            row.append(cells.get(key) or _dur(lat[key]))
        latency_rows.append(row)
    stage_labels = list(runs[names[0]]["path"]["stages"])
    stage_rows = []
    for stage in stage_labels:
        row = [stage]
        for name in names:
            loaded = runs[name]["path"]["stages"][stage]
            idle = runs[name]["unloaded"]["path"]["stages"][stage]
            row.append(
                f"{_dur(loaded.get('p50'), '—')} / {_dur(loaded.get('p99'), '—')}"
                f" (unloaded {_dur(idle.get('p50'), '—')})"
            )
        stage_rows.append(row)
    stage_rows.append(
        [
            "rides offered, of which the stamps above",
            *[
                f"{num(runs[n]['offer_latency_ms']['offered'])}, {num(runs[n]['path']['rides'])}"
                for n in names
            ],
        ]
    )
    rate_rows = []
    for key, title in (
        ("posts_sent", "POST /rides sent"),
        ("answered_202", "202 received"),
        ("events_relayed", "`rides.requested` published to the stream (relay)"),
        ("searches_opened", "searches opened (dispatch consumer)"),
        ("first_offers_made", "first offers made (round began)"),
        ("first_offers_pushed", "first offers pushed (subscriber)"),
        ("offers_made_all", "all offers made (re-offers after expiry included)"),
    ):
        rate_rows.append([title, *[num(runs[n]["rates_during_load_per_s"][key], 1) for n in names]])
    metric_rows = []
    for key, title in (
        ("rounds", "rounds"),
        ("rounds_per_s", "rounds/s"),
        ("round_mean_ms", "mean round"),
        ("round_p99_bucket_le_ms", "p99 round (bucket upper bound)"),
        ("in_rounds_share", "share of the time inside a round"),
        ("steps_by_outcome", "steps by outcome"),
        ("offers", "offers made / expired"),
        ("post_rides_server_mean_ms", "POST /rides, server's own mean"),
    ):
        row = [title]
        for name in names:
            m = runs[name]["metrics_during_load"]
            value = m[key]
            if key == "steps_by_outcome":
                cell_text = ", ".join(f"{k} {num(v)}" for k, v in value.items()) or "—"
            elif key == "offers":
                cell_text = f"{num(value)} / {num(m['offers_expired'])}"
            elif key in ("round_mean_ms", "post_rides_server_mean_ms"):
                cell_text = _dur(value, "—")
            elif key == "round_p99_bucket_le_ms":
                cell_text = "> 5 s" if value is None and m["rounds"] else _dur(value, "—")
            elif key == "in_rounds_share":
                cell_text = f"{value:.0%}" if value is not None else "—"
            else:
                cell_text = num(value, 1 if key == "rounds_per_s" else 0)
            row.append(cell_text)
        metric_rows.append(row)
    cpu_rows = []
    for key, title in (
        ("server_process", "`ridehail serve` (API + relay + dispatcher)"),
        ("postgresql_all_processes", "PostgreSQL (every backend on the machine)"),
        ("redis", "Redis"),
        ("load_generator", "load generator"),
        ("subscriber", "subscriber"),
        ("other_processes", "other processes on the machine"),
        ("machine", f"whole machine (of {s['machine']['nproc']})"),
    ):
        cpu_rows.append([title, *[num(runs[n]["cpu_cores_during_load"][key], 2) for n in names]])
    cpu_rows.append(
        [
            "share of the time some task waited for a CPU (PSI)",
            *[f"{runs[n]['cpu_cores_during_load']['cpu_pressure']:.0%}" for n in names],
        ]
    )
    if all("postgresql_transactions_per_s_during_load" in runs[n] for n in names):
        cpu_rows.append(
            [
                "PostgreSQL transactions/s, committed / rolled back (pool pre-ping)",
                *[
                    f"{num(x['committed'])} / {num(x['rolled_back'])}"
                    for x in (runs[n]["postgresql_transactions_per_s_during_load"] for n in names)
                ],
            ]
        )
    segment_rows = []
    longest = max(len(runs[n]["segments"]) for n in names)
    for i in range(longest):
        first = next(runs[n]["segments"][i] for n in names if i < len(runs[n]["segments"]))
        row = [f"{num(first['from_s'])}{DASH}{num(first['from_s'] + s['segment_s'])} s"]
        for name in names:
            segs = runs[name]["segments"]
            row.append(
                f"{_dur(segs[i]['p50'])} / {_dur(segs[i]['p99'])} ({num(segs[i]['rides'])})"
                if i < len(segs)
                else "—"
            )
        segment_rows.append(row)
    behind = []
    for name in names:
        rates = runs[name]["rates_during_load_per_s"]
        arriving = rates["answered_202"]
        for key, point in (
            ("events_relayed", "the outbox relay"),
            ("searches_opened", "the dispatch consumer (opening searches)"),
            ("first_offers_made", "the dispatcher (first offers)"),
        ):
            if rates[key] < 0.95 * arriving:
                behind.append(
                    f"{name}: {point}, {num(rates[key], 1)} rides/s of "
                    f"{num(arriving, 1)}/s arriving"
                )
                break
        else:
            behind.append(f"{name}: none, every stage kept up with {num(arriving, 1)}/s")
    seq = runs.get("sequential")
    verdict = ""
    if seq is not None:
        p99 = seq["offer_latency_ms"]["p99"]
        met = p99 is not None and p99 <= s["target_p99_ms"]
        verdict = (
            f"**Target (p99 <= {num(s['target_p99_ms'])} ms, sequential): "
            f"{'met' if met else 'not met'}** {DASH} p99 {_dur(p99)}"
            f" (unloaded, one ride at a time: p99 "
            f"{_dur(seq['unloaded']['offer_latency_ms']['p99'])}).\n\n"
        )
    return f"""## 6. Dispatch latency: `POST /rides` -> offer pushed, {num(s["drivers"])} drivers, \
{num(s["rides_per_min"])} rides/min

**What.** For each ride, the time from the 202 answering its `POST /api/v1/rides` to the
first offer for it arriving on a driver's offer channel, with {num(s["drivers"])} available
drivers in the store and rides requested at {num(s["rides_per_min"])} a minute
({num(s["rides_per_min"] / 60, 1)}/s, ten times the design peak) for {num(s["seconds"])} s,
each by a different rider, pickup and drop-off drawn from benchmark 2's city. Drivers never
answer: an offer expires after its TTL (15 s) and the search moves on to the next driver;
only a ride's first offer counts. Strategies: {", ".join(label(n) for n in names)} (a run
named "at the design peak" requests at that rate instead, for as long).

**How.** `bench/dispatch_latency.py`, once per strategy, each against a fresh
{s["server"]}, with its own PostgreSQL database and Redis key prefix. Only
`RIDEHAIL_DISPATCH_STRATEGY` (and the batch window) and `RIDEHAIL_LOCATION_STALE_AFTER_S`
differ from the defaults; the latter is {num(s["location_stale_after_s"])} s so that the
positions seeded once stay fresh for the whole run without a second load on the machine.
Set-up, not measured: the drivers' and riders' rows are bulk-inserted with COPY (the public
sign-up hashes a password per account with argon2id, far too slow for 60,000 accounts;
nobody logs in here, so the stored hash is a placeholder no password matches), the drivers
available, active, 4 seats; their positions go into Redis through
`RedisLocationStore.record_many` with the server's key prefix and region resolution; the
riders' tokens are minted by `ridehail.accounts.Tokens` with the server's
`RIDEHAIL_JWT_SECRET`.

A separate subscriber process PSUBSCRIBEs (redis-py asyncio) to every driver's offer
channel, `<prefix>rt:driver:*:offers`, before the first ride and stamps each message as it
arrives with `time.monotonic` (CLOCK_MONOTONIC, the load generator's clock too). The load
generator sends each ride at its slot of a fixed schedule (open loop: a slow answer does not
hold back the next request) from a minimal keep-alive HTTP/1.1 client on uvloop (httpx cost
more CPU per request than the server and fell seconds behind the schedule), and stamps each
202 as it arrives. After the last request it waits until every ride has had an offer, at
most {num(s["drain_s"])} s; a ride still without one counts as infinitely late, and a
percentile that falls on such rides reads "no offer". Baselines in the same run: the 202
itself; {s["idle_rides"]} rides requested one at a time on the unloaded server just before
the load ("unloaded"); and a Redis `PUBLISH` -> message round trip through the same
subscriber, one every {num(s["probe_every_s"], 1)} s, unloaded and under the load. One run
per strategy, not repeated ({", ".join(f"{n} {num(runs[n]['wall_s'])} s" for n in names)},
set-up and drain included): the cells are that run's figures.

{verdict}{table(header, latency_rows)}

**Where the time went.** Each offered ride's time, split at the server's own timestamps
(wall clock, mapped onto the monotonic clock): the outbox row's `published_at` (set by the
relay right after its `XADD`), the search's `created_at` and the first offer's `created_at`
(when the round that made it began). Under the load p50 / p99, and (in brackets) the p50 of
the unloaded rides. The search is opened in the request's own transaction (before the 202),
so "event published -> search opened" is negative by construction: the relay and the
stream no longer stand between a request and its first round, which starts from the
search's commit (the dispatcher is nudged in-process, or by `NOTIFY` from another process).

{table(header, stage_rows)}

**Rides per second through each point** while the load ran (from the same timestamps): a
point slower than the arrivals queues them up, and no point after it can go faster. The
first point that fell behind (below 95 % of the 202s): {"; ".join(behind)}.

{table(header, rate_rows)}

In one process each stage is one sequential loop: the relay publishes up to 200 events per
transaction; the dispatch consumer handles `rides.requested` events one at a time, each in
its own transaction; the sequential and broadcast dispatchers advance one search per
transaction (a round) and the batch dispatcher every due search once per window.

**The dispatcher's own figures** (`/metrics` of the server, the increase over the
{num(runs[names[0]]["metrics_during_load"]["seconds"])} s of load;
`ridehail_dispatch_round_seconds`: claim, candidates, ranking, offers, commit;
`ridehail_dispatch_steps_total` by outcome):

{table(header, metric_rows)}

**CPU during the load**, in cores (CPU seconds per second: 1.0 = one core busy), from
`/proc` and Redis `INFO`. The machine is shared: "other processes" is whatever else ran on
it meanwhile. Last row: the transactions of the server's database (`pg_stat_database`); the
connection pool checks every connection it hands out with a transaction it rolls back.

{table(header, cpu_rows)}

**Offer latency by when the ride was requested** (p50 / p99, rides in brackets): growing
latency means the engine falls further behind the longer the load lasts.

{table(["requested at", *header[1:]], segment_rows)}
"""


FILES = """## Files and knobs

| file | what it is |
|---|---|
| `bench/run.sh` | what `make bench` runs: installs tools, runs ten programs, then the report |
| `bench/ingest_http.py` | benchmark 1; starts the servers, signs up drivers, runs wrk |
| `bench/ingest_stream.py`, `bench/post_batch.lua` | benchmark 1b: batches and WebSocket frames |
| `bench/put_location.lua` | wrk script: each thread's own drivers in turn, driving at 10 m/s |
| `bench/wrk_drivers.lua` | shared by the location wrk scripts: each thread's drivers, on circles |
| `bench/wrk_report.lua` | shared by the wrk scripts: threads numbered, non-2xx counted, WRKJSON |
| `bench/bare_asgi.py` | the baseline ASGI app and its uvicorn launcher |
| `bench/nearest.py` | benchmark 2 |
| `bench/dispatch_solver.py` | benchmark 2b: the batch solver against dense and greedy baselines |
| `bench/dispatch_quality.py` | benchmark 2c: one seeded demand replayed under each strategy |
| `bench/ingest_store.py` | benchmark 3 |
| `bench/memory.py` | benchmark 4 |
| `bench/soak.py`, `bench/soak.lua` | benchmark 5 and its paced wrk script |
| `bench/dispatch_latency.py` | benchmark 6: POST /rides -> offer pushed, per strategy |
| `bench/city_sim.py` | benchmark 7: `ridehail simulate` on strategies, ETAs, process layouts |
| `bench/city_scale.py` | benchmark 8 (`make city`, not in `make bench`): the city-scale run |
| `bench/report_city.py` | the sections of benchmarks 7 and 8 and "Trade-offs, measured" |
| `bench/common.py` | the synthetic city, statistics, own database and Redis keys, machine facts |
| `bench/report.py` | writes `bench/results/latest.json` and this file |

Environment variables for quicker or longer runs (defaults in brackets): `BENCH_REPEATS` (3),
`BENCH_WRK_DURATION_S` (10), `BENCH_WRK_WARMUP_S` (1), `BENCH_WRK_THREADS` (2),
`BENCH_WRK_CONNECTIONS` (32), `BENCH_HTTP_DRIVERS` (200), `BENCH_NEAREST_QUERIES` (2000),
`BENCH_NEAREST_TASKS` (32), `BENCH_SOLVER_ROUNDS` (15), `BENCH_INGEST_FIXES` (200000),
`BENCH_STREAM_DURATION_S` (10), `BENCH_BATCH_POINTS` (500), `BENCH_WS_CONNECTIONS` (20),
`BENCH_SOAK_S` (300), `BENCH_SOAK_DRIVERS` (50000), `BENCH_SOAK_CONNECTIONS` (1000),
`BENCH_DISPATCH_SECONDS` (60), `BENCH_DISPATCH_RIDES_PER_MIN` (10000),
`BENCH_DISPATCH_DRIVERS` (50000), `BENCH_DISPATCH_STRATEGIES` (sequential,batch,broadcast),
`BENCH_DISPATCH_BATCH_WINDOW_S` (2), `BENCH_DISPATCH_DRAIN_S` (30),
`BENCH_QUALITY_DRIVERS` (300), `BENCH_QUALITY_RIDES` (300), `BENCH_QUALITY_MINUTES` (10),
`BENCH_QUALITY_SEEDS` (3), `BENCH_CITY_PARTS` (a,b,c), `BENCH_CITY_DRIVERS` (300),
`BENCH_CITY_SEED` (7), `BENCH_CITY_TIME_SCALE` (40), `BENCH_CITY_COMPARE_MINUTES` (45),
`BENCH_CITY_ETA_MINUTES` (30), `BENCH_CITY_PROFILE_MINUTES` (30),
`BENCH_CITY_PROFILE_TIME_SCALE` (30); for `make city`: `BENCH_SCALE_DRIVERS` (50000),
`BENCH_SCALE_PER_MIN` (1000), `BENCH_SCALE_MINUTES` (10), `BENCH_SCALE_PARTS` (4),
`BENCH_SCALE_REPORT_EVERY_S` (4), `BENCH_SCALE_RIDERS` (20 x requests/min),
`BENCH_SCALE_CAP_S` (2400);
`BENCH_REDIS_URL`, `BENCH_PG_HOST`, `BENCH_PG_PORT`, `BENCH_PG_USER` for other servers.

## Profiling the ingest path

Not part of `make bench`. With a server from benchmark 1 running under load (for example
`ridehail serve` on the embedded default and the wrk command above), install py-spy into the
virtual environment for yourself (`.venv/bin/pip install py-spy`; it is not a project
dependency) and sample the server, only while it holds the GIL:

```sh
.venv/bin/py-spy record --pid <server pid> --duration 10 --rate 200 --gil --format raw -o ingest.raw
```

What profiling the production profile found (by hand on an AMD EPYC 2-vCPU machine,
2026-11-30; one run each, not part of `make bench`):

- **redis-py's asyncio client per call.** One ingest script call carrying 16 fixes, in a
  loop, cost the calling process 134 µs of CPU through redis-py's registered script,
  94 µs through a redis-py connection used directly and 56 µs over a plain asyncio
  connection (a `PING` through the client: 83 µs). Syscalls are dear on this machine: a
  blocking-socket `PING` round trip alone took 20 µs of CPU. Hence
  `ridehail.locations.redis_lane`: under wrk the server's CPU per PUT went from 49-52 µs
  to 39-40 µs.
- **Packing a fix** for the script took 4.3 µs in the server (timed in place), 3.4 µs in a
  loop; whole-millisecond `seen` times (an int prints four times faster than a float's
  repr), one struct for the msgpack header and record, and two table lookups per
  coordinate for the geohash bring the loop figure to 2.6 µs.
- **One batch in flight leaves the server idle.** With the next batch held until the last
  was answered, the server process was on the CPU 84 % of the run (`/proc/<pid>/schedstat`,
  hardly any time waiting for a CPU): everything else waited for Redis. Two batches on the
  wire kept it at 91-92 % in two runs (88 % with py-spy attached). Interleaved A/B, 5
  rounds, ratio to bare (median): one batch in flight 0.454, two 0.510, three 0.507. More
  in flight makes batches smaller, and a batch
  has a cost of its own (in an in-process harness, its own overhead measured against the
  bare app and subtracted, the app took 18.4 µs per report in batches of 16 and 16.2 µs
  in batches of 64: about 47 µs per batch), so two it is.
- **Random points are the cheap path.** The earlier wrk script sent each driver to a random
  point in the city on every report; nearly all were refused as jumps (no GEO write).
  With drivers that drive, Redis spent 9.2 instead of 6.8 µs of CPU per report.
"""


NOT_MEASURED = """## Not yet measured

- **Nearest over HTTP** (`GET /api/v1/drivers/nearby`) end to end; benchmark 2 measures the
  stores.
"""


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    b = data["benchmarks"]
    pg = b.get("ingest_store", {}).get("settings", {}).get("postgres", {})
    # The code measured: as it was when the first benchmark started.
    first: dict[str, Any] = next((b[name] for name in PARTS if name in b), {})
    commit = first.get("commit", m["commit"])
    if first.get("src_uncommitted_changes", m["src_uncommitted_changes"]):
        commit += " + uncommitted changes in src/"
    machine = table(
        ["fact", "value"],
        [
            ["`nproc`", str(m["nproc"])],
            ["`uname -m`", m["arch"]],
            ["CPU", m["cpu"]],
            ["kernel", m["kernel"]],
            ["Python", m["python"]],
            ["PostgreSQL", pg.get("version", "—")],
            ["Redis", b.get("memory", {}).get("settings", {}).get("redis", {}).get("version", "—")],
            ["wrk", data["tools"]["wrk"]],
            ["code measured (git)", commit],
        ],
    )  # fmt: skip
    sections = [
        section_http(b["ingest_http"]) if "ingest_http" in b else "",
        section_stream(b["ingest_stream"]) if "ingest_stream" in b else "",
        section_nearest(b["nearest"]) if "nearest" in b else "",
        section_dispatch_solver(b["dispatch_solver"]) if "dispatch_solver" in b else "",
        section_dispatch_quality(b["dispatch_quality"]) if "dispatch_quality" in b else "",
        section_ingest_store(b["ingest_store"]) if "ingest_store" in b else "",
        section_memory(b["memory"]) if "memory" in b else "",
        section_soak(b["soak"]) if "soak" in b else "",
        section_dispatch_latency(b["dispatch_latency"]) if "dispatch_latency" in b else "",
        section_city_sim(b["city_sim"]) if "city_sim" in b else "",
        section_city_scale(b["city_scale"]) if "city_scale" in b else "",
        section_one_simulator(b["one_simulator"]) if "one_simulator" in b else "",
    ]
    runtime = data.get("runtime_s")
    runtime_text = f"; the last full `make bench` took {num(runtime)} s" if runtime else ""
    first_start = min(part["started_at"] for part in b.values())
    last_finish = max(part["finished_at"] for part in b.values())

    def cpu_of(part: dict[str, Any]) -> str:
        machine = (part.get("settings") or {}).get("machine") or {}
        cpu = part.get("cpu_model") or machine.get("cpu")
        return f"on {cpu}" if cpu else "CPU not recorded"

    def code_of(part: dict[str, Any]) -> str:
        dirty = " + uncommitted changes in src/" if part.get("src_uncommitted_changes") else ""
        return f"{part.get('commit', '?')}{dirty}"

    started = "\n".join(
        f"- `bench.{name}` started {b[name]['started_at']} ({cpu_of(b[name])}, code "
        f"{code_of(b[name])}), 1-minute load average "
        f"{b[name]['load_average_at_start']}"
        for name in PARTS
        if name in b
    )
    return f"""# Benchmarks

<!-- Generated by `make bench` (bench/report.py) from bench/results/latest.json. Do not
edit by hand: the next run overwrites this file. -->

What the hot paths of ridehail cost today, each measured next to a baseline in the same run
on the same machine. Run them all with:

```sh
make bench        # needs PostgreSQL and Redis on 127.0.0.1 (make services starts them)
```

`bench/run.sh` installs `wrk` (and `redis-tools`) with apt if missing, runs the ten programs
below one after the other and regenerates this file and `bench/results/latest.json`. It
creates its own PostgreSQL databases (`ridehail_bench_<random>`) and Redis keys
(`ridehail_bench_<random>:*`) and removes them afterwards. One benchmark alone, then the
report (which keeps the other benchmarks' last results):

```sh
.venv/bin/python -m bench.nearest && .venv/bin/python -m bench.report
```

{summary(b)}

**Reading the tables** (above, and sections 1-6). Every measurement was repeated; cells
show the median and, in brackets, the lowest and highest run. Ratios are taken per round
(a target against its baseline measured in the same round), then the median of those. The
machine is small and shared: load generator, server, PostgreSQL and Redis compete for
{m["nproc"]} cores, and other work may run at the same time, so compare rows of one table
rather than numbers across runs.

{trade_offs(b)}
## The run

Measured from {first_start} to {last_finish} (UTC){runtime_text}. A benchmark run on its
own replaces only its own section, so sections may come from different runs, commits and
machines (each part below says which): compare rows within a section, not across them. The
table after the list describes the machine this file was rendered on.

{started}

{machine}

{chr(10).join(sections)}
{NOT_MEASURED}
{FILES}"""


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def targets(b: dict[str, Any]) -> str:
    """The issue's targets, each against what this run measured."""
    rows: list[list[str]] = []
    if "ingest_http" in b:
        t = b["ingest_http"]["targets"]
        for key in ("embedded_log", "production_log"):
            ratio = t[key]["ratio_to_bare"]["median"]
            rows.append(
                [
                    f"1. single PUT ingest, {t[key]['label']}",
                    ">= 0.5 x bare ASGI",
                    f"{num(t[key]['requests_per_s']['median'])} req/s = {num(ratio, 3)} x "
                    f"{num(t['bare']['requests_per_s']['median'])}",
                    _verdict(ratio >= 0.5),
                ]
            )
    if "ingest_store" in b:
        r = b["ingest_store"]["results"]
        for key in ("redis_store", "redis_store_all_followed", "redis_store_no_announce"):
            if key in r:
                rate = r[key]["writes_per_s"]["median"]
                rows.append(
                    [
                        f"2. batch/stream ingest into Redis, {r[key]['label']}",
                        ">= 100,000 points/s",
                        f"{num(rate)} points/s",
                        _verdict(rate >= 100_000),
                    ]
                )
    if "ingest_stream" in b:
        for v in b["ingest_stream"]["targets"].values():
            rows.append(
                [
                    f"2. (end to end) batch POST / WebSocket, {v['label']}",
                    "(not a target: through HTTP)",
                    f"{num(v['batch_points_per_s']['median'])} / "
                    f"{num(v['ws_points_per_s']['median'])} points/s",
                    "—",
                ]
            )
    if "nearest" in b:
        r = b["nearest"]["results"]
        p99 = r["in_memory"]["p99_us"]["median"] / 1000
        qps = r["in_memory"]["queries_per_s"]["median"]
        geo_py = r["raw_geosearch_python"]["queries_per_s"]["median"]
        geo_c = r["raw_geosearch_redis_benchmark"]["queries_per_s"]["median"]
        rows.append(
            [
                "3. nearest 10 of 50,000 within 2 km, in-process",
                "p99 <= 2 ms and more queries/s than GEOSEARCH",
                f"p99 {num(p99, 3)} ms; {num(qps)} q/s vs GEOSEARCH {num(geo_py)} (Python), "
                f"{num(geo_c)} (redis-benchmark)",
                _verdict(p99 <= 2 and qps > max(geo_py, geo_c)),
            ]
        )
    if "ingest_store" in b:
        r = b["ingest_store"]["results"]
        rows.append(
            [
                "4. one PostgreSQL row per driver vs Redis",
                "measured side by side",
                f"PostgreSQL {num(r['postgres']['writes_per_s']['median'])}, Redis store "
                f"{num(r['redis_store']['writes_per_s']['median'])} writes/s",
                "measured",
            ]
        )
    if "soak" in b:
        p = b["soak"]
        lat = p["latency_ms"]
        rows.append(
            [
                f"5. soak, {num(p['settings']['drivers'])} drivers x 1 per "
                f"{num(p['settings']['cycle_s'])} s, {num(p['settings']['duration_s'])} s",
                "0 errors; p50/p99 and CPU reported",
                f"{num(p['errors'])} errors; {num(p['achieved_rate_per_s'])}/s of "
                f"{num(p['settings']['offered_rate_per_s'])}/s; p50 "
                f"{num(lat['p50_median_of_segments']['median'], 1)} ms, p99 "
                f"{num(lat['p99_median_of_segments']['median'], 1)} ms; API "
                f"{num(p['cpu_cores']['api_processes'], 2)} + Redis "
                f"{num(p['cpu_cores']['redis'], 2)} cores",
                _verdict(p["errors"] == 0),
            ]
        )
    if "memory" in b:
        r = b["memory"]["results"]
        store = r["in_memory_position_only"]["store_bytes_per_driver"]["median"]
        rows.append(
            [
                "memory per driver, in-process",
                "<= 200 bytes",
                f"{num(store, 1)} bytes (+ the id string the caller holds); Redis "
                f"{num(r['redis_store_position_only']['memory_usage_bytes_per_driver']['median'])}",
                _verdict(store <= 200),
            ]
        )
    if "dispatch_solver" in b:
        p = b["dispatch_solver"]
        s = p["settings"]
        total = p["timing"]["sparse"]["total_ms"]
        rows.append(
            [
                f"batch solver, {num(s['rides'])} rides x {num(s['drivers'])} drivers, k={s['k']}",
                f"<= {num(p['targets']['round_ms_max'])} ms per round",
                f"{num(total['median'], 1)} ms (p90 {num(total['p90'], 1)}); dense "
                f"linear_sum_assignment {num(p['timing']['dense']['total_ms']['median'], 1)} ms",
                _verdict(total["median"] <= p["targets"]["round_ms_max"]),
            ]
        )
    if "dispatch_quality" in b:
        p = b["dispatch_quality"]
        s = p["settings"]
        r = p["results"]
        names = [n for n in ("sequential", "broadcast", "batch") if n in r]

        def trio(key: str, factor: float = 1.0, digits: int = 0) -> str:
            return " / ".join(num(r[n][key]["median"] * factor, digits) for n in names)

        seeds = len(s["seeds"])
        rows.append(
            [
                f"dispatch quality, seeded replay: {num(s['rides'])} rides, "
                f"{num(s['drivers'])} drivers, {num(s['demand_s'] / 60)} simulated min, "
                f"{seeds} seed{'s' if seeds > 1 else ''}",
                "measured side by side",
                f"{' / '.join(names)}: match rate {trio('match_rate', 100, 1)} %; mean pickup "
                f"{trio('pickup_m_mean')} m, {trio('pickup_s_mean')} s (p90 "
                f"{trio('pickup_s_p90')} s); mean wait {trio('wait_s_mean')} s",
                "measured",
            ]
        )
    if "dispatch_latency" in b:
        p = b["dispatch_latency"]
        s = p["settings"]
        runs = p["strategies"]
        measured = []
        for name, r in runs.items():
            lat = r["offer_latency_ms"]
            window = r.get("batch_window_s")
            measured.append(
                f"{name}{f' (window {num(window, 1)} s)' if window else ''}: p50 "
                f"{_dur(lat['p50'])}, p99 {_dur(lat['p99'])}, {num(lat['offered_within_5s'])} "
                f"of {num(lat['n'])} offered within {num(s['within_s'])} s"
            )
        seq = runs.get("sequential")
        p99 = seq["offer_latency_ms"]["p99"] if seq else None
        peak = next((r for n, r in runs.items() if n.startswith("sequential at the design")), None)
        if peak is not None:
            peak_p99 = peak["offer_latency_ms"]["p99"]
            rows.append(
                [
                    "dispatch latency at the design peak, "
                    f"{num(peak['rides_offered_rate_per_s'] * 60)} rides/min, sequential",
                    f"(the aim, at 1x) p99 <= {num(s['target_p99_ms'])} ms",
                    f"p50 {_dur(peak['offer_latency_ms']['p50'])}, p99 {_dur(peak_p99)}",
                    _verdict(peak_p99 is not None and peak_p99 <= s["target_p99_ms"]),
                ]
            )
        rows.append(
            [
                f"dispatch latency, POST /rides -> offer pushed, {num(s['drivers'])} drivers, "
                f"{num(s['rides_per_min'])} rides/min",
                f"p99 <= {num(s['target_p99_ms'])} ms (sequential)",
                "; ".join(measured) + " (one run each, not medians; 'no offer': the percentile "
                "falls on rides still without an offer at the end)",
                _verdict(p99 is not None and p99 <= s["target_p99_ms"]) if seq else "—",
            ]
        )
    return table(["target", "required", "measured (medians)", "verdict"], rows)


def summary(b: dict[str, Any]) -> str:
    """At a glance: the targets, then medians from the tables below."""
    return (
        "## At a glance\n\nThe targets of the location-service issue, numbered as there, "
        "of the dispatch batch solver, of dispatch quality and of dispatch latency, "
        "each against this run's medians; the sections below say how each was measured.\n\n"
        + targets(b)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runtime-s", type=float, default=None)
    args = parser.parse_args()
    previous: dict[str, Any] = {}
    runtime_s = args.runtime_s
    if LATEST.exists():
        last = json.loads(LATEST.read_text())
        previous = last.get("benchmarks", {})
        runtime_s = runtime_s or last.get("runtime_s")  # re-rendering keeps the run's figure
    benchmarks = dict(previous)
    found = []
    for name in PARTS:
        path = common.RESULTS / f"{name}.tmp"
        if path.exists():
            benchmarks[name] = json.loads(path.read_text())
            found.append(path)
    if not found and not previous:
        raise SystemExit("no benchmark results (bench/results/*.tmp or latest.json) to report")
    data: dict[str, Any] = {
        "generated_at": common.now_iso(),
        "command": "make bench",
        "runtime_s": round(runtime_s) if runtime_s else None,
        "machine": common.machine_facts(),
        "tools": tool_versions(),
        "benchmarks": {name: benchmarks[name] for name in PARTS if name in benchmarks},
    }
    LATEST.write_text(compact(data) + "\n")
    DOCS.write_text(render(data))
    for path in found:
        path.unlink()
    print(f"wrote {LATEST.relative_to(common.ROOT)} and {DOCS.relative_to(common.ROOT)}")
    print(targets(data["benchmarks"]))


if __name__ == "__main__":
    main()
