"""docs/benchmarks.md sections for the city simulator (benchmark 7, bench/city_sim.py), the
city-scale run (benchmark 8, bench/city_scale.py) and the "Trade-offs, measured" summary.
Imported by bench/report.py; every number comes from a result part, none is typed in."""

from __future__ import annotations

from typing import Any

DASH = "\u2013"
NA = "—"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def num(value: float | None, digits: int = 0) -> str:
    return NA if value is None else f"{value:,.{digits}f}"


def pct(value: float | None) -> str:
    return NA if value is None else f"{100 * value:.1f} %"


def secs(value: float | None) -> str:
    return NA if value is None else f"{value:,.0f} s"


def msec(value: float | None) -> str:
    if value is None:
        return NA
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def ratio(a: float | None, b: float | None, digits: int = 2) -> str:
    if a is None or not b:
        return NA
    return f"{a / b:.{digits}f}"


def p5090(stats: dict[str, Any]) -> str:
    return f"{secs(stats.get('p50'))} / {secs(stats.get('p90'))}"


def _errors(run: dict[str, Any]) -> str:
    by = run.get("errors_by_endpoint") or {}
    if not by:
        return str(run.get("errors", 0))
    worst = sorted(
        ((endpoint, status, n) for endpoint, s in by.items() for status, n in s.items()),
        key=lambda x: -x[2],
    )[:3]
    detail = ", ".join(f"{n:,} x {status} on `{endpoint}`" for endpoint, status, n in worst)
    return f"{run.get('errors', 0):,} ({detail})"


#: Benchmark 7c's layouts (the header names; "label" in the results also names them).
LAYOUTS = {
    "one_process": "one process: `ridehail serve` (role all)",
    "api_workers": "`serve --role api --workers 2` + 3 workers",
}

HOT_ENDPOINTS = (
    "POST /api/v1/rides",
    "POST /api/v1/rides/{id}:accept",
    "PUT /api/v1/drivers/{id}/availability",
    "WS location frame",
)


# ---------------------------------------------------------------- trade-offs


def _tradeoff_store(b: dict[str, Any]) -> str:
    if "ingest_store" not in b:
        return ""
    r = b["ingest_store"]["results"]
    s = b["ingest_store"]["settings"]
    pg = r["postgres"]["writes_per_s"]["median"]
    redis = r["redis_store"]["writes_per_s"]["median"]
    rows = [
        [r["postgres"]["label"], num(pg), ratio(pg, redis)],
        [r["redis_store"]["label"], num(redis), "1 (baseline)"],
    ]
    return f"""### PostgreSQL vs Redis for live locations

From benchmark 3 (section 3 below): {num(s["fixes"])} fixes from {num(s["drivers"])} drivers,
medians of {s["repeats"]} runs; the ratio is of the two medians.

{table(["writer", "writes/s (median)", "ratio to the Redis store"], rows)}

The PostgreSQL table has no spatial index and answers no nearest query; the Redis store
also keeps the region GEO sets that the dispatcher searches, the driver state and the
announcements, and keeps the position stream off the database that holds the rides.
"""


def _tradeoff_layout(p: dict[str, Any]) -> str:
    layouts = p.get("layouts")
    if not layouts:
        return ""
    runs = layouts["runs"]
    keys = [k for k in ("one_process", "api_workers") if k in runs]
    rows = [
        ["match rate", *(pct(runs[k]["match_rate"]) for k in keys)],
        ["wait p50 / p90 (request -> accepted)", *(p5090(runs[k]["wait_time_s"]) for k in keys)],
        *(
            [f"API p99 `{e}`", *(msec(runs[k]["api_p99_ms"].get(e)) for k in keys)]
            for e in HOT_ENDPOINTS
        ),
        ["server CPU, cores (all its processes)", *(num(runs[k]["server_cores"], 2) for k in keys)],
        ["errors", *(str(runs[k]["errors"]) for k in keys)],
    ]
    return f"""### One process vs API + workers

From benchmark 7c: the same seeded fleet ({num(p["settings"]["drivers"])} drivers,
{num(layouts["time_scale"])}x compressed time) on the production profile, one run each.

{table(["", *(LAYOUTS[k] for k in keys)], rows)}
"""


def _tradeoff_strategies(b: dict[str, Any], p: dict[str, Any] | None) -> str:
    parts = []
    if p and p.get("strategies"):
        runs = p["strategies"]["runs"]
        names = [n for n in ("sequential", "broadcast", "batch") if n in runs]
        rows = [
            ["match rate", *(pct(runs[n]["match_rate"]) for n in names)],
            ["wait p50 / p90 (request -> accepted)",
             *(p5090(runs[n]["wait_time_s"]) for n in names)],
            ["pickup p50 / p90 (request -> picked up)",
             *(p5090(runs[n]["pickup_time_s"]) for n in names)],
            ["driver utilization", *(pct(runs[n]["utilization"]) for n in names)],
            ["errors", *(str(runs[n]["errors"]) for n in names)],
        ]  # fmt: skip
        parts.append(
            "Benchmark 7a, the simulator through the API (one seed, one run each; "
            "simulated seconds):\n\n" + table(["", *names], rows)
        )
    if "dispatch_quality" in b:
        r = b["dispatch_quality"]["results"]
        names = [n for n in ("sequential", "broadcast", "batch") if n in r]
        seeds = len(b["dispatch_quality"]["settings"]["seeds"])
        rows = [
            ["match rate", *(pct(r[n]["match_rate"]["median"]) for n in names)],
            ["pickup time, mean", *(secs(r[n]["pickup_s_mean"]["median"]) for n in names)],
            ["pickup distance, mean",
             *(f"{num(r[n]['pickup_m_mean']['median'])} m" for n in names)],
            ["offers per matched ride",
             *(num(r[n]["offers_per_matched_ride"]["median"], 2) for n in names)],
        ]  # fmt: skip
        parts.append(
            f"Benchmark 2c, the engine replayed directly (medians over {seeds} seeds):\n\n"
            + table(["", *names], rows)
        )
    if not parts:
        return ""
    return "### Sequential vs broadcast vs batch matching\n\n" + "\n\n".join(parts) + "\n"


def _tradeoff_eta(p: dict[str, Any] | None) -> str:
    if not p or not p.get("eta"):
        return ""
    runs = p["eta"]["runs"]
    keys = [k for k in ("straight_line", "road_network") if k in runs]

    def err(k: str, which: str) -> str:
        e = runs[k]["eta_error_s"][which]
        if not e.get("count"):
            return NA
        return f"{secs(e['mean_abs'])} / {secs(e['bias'])}"

    rows = [
        ["match rate", *(pct(runs[k]["match_rate"]) for k in keys)],
        ["wait p50 / p90", *(p5090(runs[k]["wait_time_s"]) for k in keys)],
        ["pickup p50 / p90", *(p5090(runs[k]["pickup_time_s"]) for k in keys)],
        [
            "server's estimate in the offer: mean abs error / bias",
            *(err(k, "straight") for k in keys),
        ],
        ["road-graph estimate: mean abs error / bias", *(err(k, "road") for k in keys)],
    ]
    return f"""### Straight-line vs road-network ETAs

Benchmark 7b: the same seed twice, the server ranking drivers by straight-line ETAs or by
the road graph. Error = estimate minus the drive the car then took to the pickup (bias > 0:
the estimate was too long).

{table(["", *(f"server ranks by {k.replace('_', ' ')}" for k in keys)], rows)}
"""


def trade_offs(b: dict[str, Any]) -> str:
    p = b.get("city_sim")
    blocks = [
        _tradeoff_store(b),
        _tradeoff_layout(p) if p else "",
        _tradeoff_strategies(b, p),
        _tradeoff_eta(p),
    ]
    blocks = [x for x in blocks if x]
    if not blocks:
        return ""
    return (
        "## Trade-offs, measured\n\nOne short table per design choice; the sections below\n"
        "say how each was measured. One run each unless a median is stated: the machine has\n"
        "2 cores and is shared, so read differences of a few per cent as noise.\n\n"
        + "\n".join(blocks)
    )


# ---------------------------------------------------------------- benchmark 7


def _run_rows(runs: dict[str, Any], keys: list[str]) -> list[list[str]]:
    def row(title: str, f: Any) -> list[str]:
        return [title, *(f(runs[k]) for k in keys)]

    endpoints = sorted({e for k in keys for e in runs[k]["api_p99_ms"]})
    return [
        row("ride requests", lambda r: num(r["requests"])),
        row("matched / completed", lambda r: f"{num(r['matched'])} / {num(r['completed'])}"),
        row("rider cancelled / no driver", lambda r: f"{r['rider_cancelled']} / {r['no_drivers']}"),
        row("match rate", lambda r: pct(r["match_rate"])),
        row("wait p50 / p90 (request -> accepted)", lambda r: p5090(r["wait_time_s"])),
        row("pickup p50 / p90 (request -> picked up)", lambda r: p5090(r["pickup_time_s"])),
        row("driver utilization", lambda r: pct(r["utilization"])),
        *(row(f"API p99 `{e}`", lambda r, e=e: msec(r["api_p99_ms"].get(e))) for e in endpoints),
        row("errors", _errors),
        row("simulated run, wall s", lambda r: num(r["wall_s"])),
    ]


def section_city_sim(p: dict[str, Any]) -> str:
    s = p["settings"]
    m = s["machine"]
    out = [
        f"""## 7. The city simulator: strategies, ETAs, process layout

**What.** `ridehail simulate` (src/ridehail/simulator/) drives servers that
`bench/city_sim.py` starts, only through the public API (HTTP and the drivers' WebSocket
streams): {num(s["drivers"])} drivers with shifts, cruising and accept probabilities, riders
from a two-peak demand curve, on the generated {s["seed"]}-seeded city (25 x 39 km), seed
{s["seed"]} everywhere, so every run sees the same city, demand and driver habits (what the
service answers can still differ). The numbers are the simulator's own summaries
(`ridehail.simulator.report.summarize`) of each run's metrics.json; times of riders and
drivers are simulated seconds, API latencies are wall milliseconds measured by the
simulator's client. One run per configuration on {m["cpu"]} ({m["nproc"]} cores); the whole
benchmark took {num(p["wall_s"])} s.
"""
    ]
    if "strategies" in p:
        a = p["strategies"]
        names = [n for n in ("sequential", "broadcast", "batch") if n in a["runs"]]
        out.append(f"""### 7a. Sequential vs broadcast vs batch

`{a["command"]}`: each strategy against its own fresh embedded server (SQLite, in-process
bus) started by the simulator with the compressed-time settings; {num(a["wall_s"])} s.

{table(["", *names], _run_rows(a["runs"], names))}
""")
    if "eta" in p:
        e = p["eta"]
        keys = [k for k in ("straight_line", "road_network") if k in e["runs"]]
        rows = _run_rows(e["runs"], keys)
        for which, title in (
            ("straight", "server's estimate in the offer"),
            ("road", "simulator's road-graph estimate at the accept"),
        ):
            for stat, name in (("mean_abs", "mean abs error"), ("p90_abs", "p90 abs error"),
                               ("bias", "bias")):  # fmt: skip
                rows.append(
                    [f"{title}: {name}", *(secs(e["runs"][k]["eta_error_s"][which].get(stat))
                                           for k in keys)]
                )  # fmt: skip
        out.append(f"""### 7b. Straight-line vs road-network ETAs

`{e["command"]}`; {num(e["wall_s"])} s. The server's estimate is the `eta_s` of the offer
the driver accepted (straight line with a detour factor, or the road graph's travel time);
the simulator's is its own road-graph travel time from where the driver was to the pickup.
Error = estimate minus the drive the car then took (simulated seconds; bias > 0: too long).

{table(["", *(f"server: {k.replace('_', ' ')}" for k in keys)], rows)}
""")
    if "layouts" in p:
        c = p["layouts"]
        keys = [k for k in ("one_process", "api_workers") if k in c["runs"]]
        runs = c["runs"]
        rows = _run_rows(runs, keys)
        groups = sorted({g for k in keys for g in runs[k]["cpu"]["cores"]})
        rows += [
            [f"CPU cores: {g}", *(num(runs[k]["cpu"]["cores"].get(g), 2) for k in keys)]
            for g in groups
        ]
        rows.append(["CPU cores: all server processes", *(num(runs[k]["server_cores"], 2)
                                                           for k in keys)])  # fmt: skip
        settings = ", ".join(f"`{k}={v}`" for k, v in c["server_settings"].items())
        pg = s.get("postgres", {})
        redis_version = s.get("redis", {}).get("version", NA)
        out.append(f"""### 7c. One process vs API + workers (production profile)

`{c["command"]}` against (1) `ridehail serve` (role all) and (2) `ridehail serve --role api
--workers 2` + `ridehail worker dispatch` + `ridehail worker payments` + `ridehail worker
notifications`; PostgreSQL {pg.get("version", NA)} and Redis {redis_version},
a fresh database and key prefix per layout (dropped afterwards). Server settings for
{num(c["time_scale"])}x compressed time, as the simulator gives its embedded server: {settings}.
CPU is from /proc over the whole simulator invocation (sign-ups included), in cores
(CPU seconds / wall seconds); PostgreSQL counts every `postgres` process on the machine.
{num(c["wall_s"])} s.

{table(["", *(LAYOUTS[k] for k in keys)], rows)}
""")
    return "\n".join(out)


# ---------------------------------------------------------------- benchmark 8


def _rate(samples: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(t, accepted fixes per second) between consecutive samples."""
    rates = []
    prev: tuple[float, float] | None = None
    for sample in samples:
        fixes = sample.get("fixes")
        if not fixes:
            continue
        total = sum(fixes.values())
        if prev is not None and sample["t_s"] > prev[0]:
            rates.append((sample["t_s"], (total - prev[1]) / (sample["t_s"] - prev[0])))
        prev = (sample["t_s"], total)
    return rates


def _city_findings(
    run: dict[str, Any] | None, samples: list[dict[str, Any]], last_db: dict[str, Any] | None
) -> list[str]:
    """What the merged run says beyond the samples: why rides were not matched and why
    position frames did not arrive, where the numbers show it."""
    if not run:
        return []
    found = []
    by_endpoint = run.get("errors_by_endpoint") or {}
    p99 = run.get("api_p99_ms") or {}
    accept = "POST /api/v1/rides/{id}:accept"
    conflicts = (by_endpoint.get(accept) or {}).get("409", 0)
    offers = (last_db or {}).get("offers") or 0
    if offers and run.get("matched", 0) < run.get("requests", 0) / 2:
        found.append(
            f"Matching broke: {num(offers)} offers were made and {num(run.get('matched'))} "
            f"rides matched by the simulator's record. {num(conflicts)} accepts were "
            f"answered 409 (the offer no longer open; one stands 15 s, "
            f"`RIDEHAIL_DISPATCH_OFFER_TTL_S`), `:accept` p99 {msec(p99.get(accept))}, "
            f"`POST /rides` p99 {msec(p99.get('POST /api/v1/rides'))}: the chain offer "
            f"pushed -> driver's answer -> accepted did not complete under this load. Which "
            f"link failed first is not measured here (offer push delay is not recorded)."
        )
    lost = (by_endpoint.get("WS location frame") or {}).get("network", 0)
    counted = max((sum((x.get("fixes") or {}).values()) for x in samples), default=0)
    if lost and "streams_reopened" not in run:
        found.append(
            f"Position frames: {num(run.get('location_frames_sent'))} sent, "
            f"{num(counted)} counted by the API; {num(lost)} went to sockets already closed. "
            f"A worker replaced by uvicorn's supervisor drops its WebSockets, and the "
            f"simulator of this run did not reopen a driver's stream once it had dropped (it "
            f"does since), so those drivers fell silent to the service for the rest of the run."
        )
    elif "streams_reopened" in run:
        found.append(
            f"Position frames: {num(run.get('location_frames_sent'))} sent, "
            f"{num(counted)} counted by the API, {num(lost)} lost on sockets that had just "
            f"closed. Driver streams closed by the service (a worker replaced by uvicorn's "
            f"supervisor drops its WebSockets): {num(run.get('streams_dropped'))}; opened "
            f"again by the drivers' apps: {num(run.get('streams_reopened'))}."
        )
    return found


def section_city_scale(p: dict[str, Any]) -> str:
    s = p["settings"]
    m = s["machine"]
    heading = "design point" if s["design_point"] else "SCALED DOWN, not the design point"
    target_fps = s["drivers"] / s["report_every_s"]
    samples = p.get("samples", [])
    rates = _rate(samples)
    peak_rate = max((r for _, r in rates), default=None)
    cpu = p.get("cpu", {})
    cores = cpu.get("cores", {})
    cpu_rows = [[g, num(cpu["cpu_s"].get(g), 1), num(c, 2)] for g, c in sorted(
        cores.items(), key=lambda x: -x[1])]  # fmt: skip
    timeline_rows = []
    for sample in samples[:: max(1, len(samples) // 16)]:
        db = sample.get("db") or {}
        fixes = sample.get("fixes") or {}
        top = sorted((sample.get("cores") or {}).items(), key=lambda x: -x[1])[:3]
        timeline_rows.append([
            num(sample["t_s"]),
            num(db.get("users")),
            num(sum(v for k, v in db.items() if k.startswith("rides_")) if db else None),
            num(sum(fixes.values()) if fixes else None),
            ", ".join(f"{g} {c:.2f}" for g, c in top),
            num(sample.get("load_average"), 2),
        ])  # fmt: skip
    expected_accounts = s["drivers"] + s["riders"] + 1
    users: list[tuple[float, int]] = [
        (x["t_s"], int(x["db"]["users"])) for x in samples if (x.get("db") or {}).get("users")
    ]
    most_users = max(users, key=lambda x: x[1], default=None)
    busiest = max(samples, key=lambda x: sum((x.get("cores") or {}).values()), default=None)
    held = []
    if most_users is not None:
        held.append(
            f"Accounts in the database: at most {num(most_users[1])} of {num(expected_accounts)} "
            f"(drivers, riders, the admin), first reached at t = {num(most_users[0])} s."
        )
    if most_users is not None and most_users[0]:
        held[-1] = held[-1][:-1] + f" ({num(most_users[1] / most_users[0])} accounts/s)."
    meaning = {-15: "stopped at the cap (SIGTERM)", 0: "finished", 1: "failed"}
    for k, code in enumerate(p.get("simulator_exit_codes", []), start=1):
        tail = (p.get("simulator_log_tail") or {}).get(f"simulator {k}", "")
        lines = [x for x in tail.splitlines() if x.strip() and "RuntimeWarning" not in x]
        last = lines[-1].strip() if lines and code not in (0, -15) else ""
        held.append(
            f"Simulator {k}: exit code {code}, {meaning.get(code, 'failed')}"
            + (f"; last line of its log: `{last[:160]}`" if last else "")
            + "."
        )
    if peak_rate is not None:
        held.append(
            f"Location fixes counted by the API: at most {num(peak_rate)}/s over a "
            f"{num(10)} s interval, {pct(peak_rate / target_fps)} of the "
            f"{num(target_fps)}/s wanted."
        )
    if busiest is not None:
        top = sorted(busiest["cores"].items(), key=lambda x: -x[1])[:3]
        held.append(
            f"Busiest interval (t = {num(busiest['t_s'])} s): "
            f"{num(sum(busiest['cores'].values()), 2)} cores in use of {m['nproc']}, most by "
            + ", ".join(f"{g} ({c:.2f})" for g, c in top)
            + "."
        )
    started = [
        x["api_processes_started_so_far"] for x in samples if "api_processes_started_so_far" in x
    ]
    if started:
        held.append(
            f"API processes (uvicorn's supervisor, its 2 workers, the resource tracker): "
            f"{started[0]} at the first sample, {started[-1]} started by the end"
            + (" (workers were replaced: uvicorn kills a worker that misses its health check)"
               if started[-1] > started[0] else "")
            + "."
        )  # fmt: skip
    last_db = next((x["db"] for x in reversed(samples) if x.get("db")), None)
    if last_db:
        rides = {k.removeprefix("rides_"): v for k, v in last_db.items() if k.startswith("rides_")}
        held.append(
            f"In the database at the last sample (t = {num(samples[-1]['t_s'])} s): "
            + (", ".join(f"{num(v)} rides {k}" for k, v in sorted(rides.items())) or "no rides")
            + f"; {num(last_db.get('offers'))} offers made."
        )
    run = p.get("run")
    held += _city_findings(run, samples, last_db)
    verdict = "\n".join(f"- {line}" for line in held) or "- no samples were taken."
    if run:
        result_rows = [
            ["ride requests made (simulator)", num(run["requests"])],
            ["requests not made: no free rider account", num(run["unserved_requests"])],
            ["requests per simulated minute", num(run["requests_per_min"], 1)],
            ["matched / completed", f"{num(run['matched'])} / {num(run['completed'])}"],
            ["match rate", pct(run["match_rate"])],
            ["wait p50 / p90 (request -> accepted)", p5090(run["wait_time_s"])],
            ["pickup p50 / p90", p5090(run["pickup_time_s"])],
            ["drivers online at most (timeline)", num(run["drivers_online_max"])],
            ["location frames sent / per s",
             f"{num(run['location_frames_sent'])} / {num(run['location_frames_per_s'], 1)}"],
            *([f"API p99 `{e}`", msec(v)] for e, v in sorted(run["api_p99_ms"].items())),
            ["errors", _errors(run)],
            ["simulated run, wall s", num(run["wall_s"])],
        ]  # fmt: skip
        results = table(["measured (merged run)", "value"], result_rows)
    else:
        results = "No simulator part wrote its metrics: there is no merged run."
    exits = ", ".join(str(c) for c in p.get("simulator_exit_codes", []))
    title = f"{num(s['drivers'])} drivers, {num(s['requests_per_min_at_peak'])} requests/min"
    return f"""## 8. City scale: {title} ({heading})

**What.** {num(s["drivers"])} drivers reporting a position every {s["report_every_s"]:g} s
({num(target_fps)} positions/s wanted) and ride requests at up to
{num(s["requests_per_min_at_peak"])} a minute (the demand curve from {s["start_hour"]} h, at
its morning peak), {num(s["riders"])} rider accounts, for {num(s["minutes"])} minutes in real
time (time scale 1), against the production profile on this machine ({m["cpu"]},
{m["nproc"]} cores): `ridehail serve --role api --workers 2` + `ridehail worker dispatch`,
`payments`, `notifications`, PostgreSQL and Redis. The fleet and the demand are split over
{s["simulator_processes"]} `ridehail simulate --part K/{s["simulator_processes"]}` processes
on the same machine, merged into one run afterwards. Not as shipped, to make 50,000 sign-ups
feasible: {", ".join(f"`{k}={v}`" for k, v in s["server_settings_not_as_shipped"].items())}.
Sign-ups and going online (a WebSocket per driver) come before the simulated clock starts.
Limits of the machine: {s["limits"]["open_files_per_process"]:,} open files per process,
ephemeral ports {" to ".join(s["limits"]["ephemeral_ports"])}.

**How.** `bench/city_scale.py` (`make city`; not part of `make bench`). Every
{num(10)} s: CPU per process group from /proc, the API's `ridehail_location_fixes_total`
from `/metrics`, and row counts in PostgreSQL. The run is capped at {num(s["cap_s"])} s of
wall time. Finished: **{"yes" if p.get("finished") else "no"}**; simulator exit codes
{exits}; parts that wrote metrics: {p.get("parts_with_metrics", 0)} of
{s["simulator_processes"]}; the whole benchmark took {num(p.get("wall_s"))} s.

**What held and where it broke**, from the samples:

{verdict}

{results}

**CPU over the whole run** (sign-ups included; cores = CPU s / {num(cpu.get("wall_s"))} s):

{table(["process group", "CPU s", "cores"], cpu_rows)}

**Timeline** (every sample or a subset; busiest three groups, cores over the last interval):

{table(["t s", "accounts in DB", "rides in DB", "fixes counted", "busiest (cores)", "load avg"],
       timeline_rows)}
"""  # fmt: skip


def section_one_simulator(p: dict[str, Any]) -> str:
    s = p["settings"]
    r = p["run"]
    m = s["machine"]
    due = p["location_frames_due"]
    sent = p["location_frames_sent"]
    share = sent / due if due else None
    rows = [
        ["drivers signed up / online at most",
         f"{num(s['drivers'])} / {num(p['drivers_online_max'])}"],
        ["position frames sent / due (online drivers x run / report interval)",
         f"{num(sent)} / {num(due)} ({pct(share)})"],
        ["position reports skipped (the previous one still in flight)",
         num(p["skipped_location_reports"])],
        ["frame send p99 (simulator side)", msec(p.get("location_frame_send_p99_ms"))],
        ["API errors (all endpoints)", num(r["errors"])],
        ["drivers lost in set-up", num(p["lost_drivers"])],
        ["ride requests / matched", f"{num(r['requests'])} / {pct(r['match_rate'])}"],
        ["simulator CPU (own process)", f"{num(p['simulator_cpu_s'], 1)} s = "
         f"{num(p['simulator_cores_mean'], 2)} cores over {num(p['wall_s_total'])} s"],
        ["simulator peak memory (VmHWM)", f"{num(p['simulator_peak_rss_mib'])} MiB"],
        ["server CPU (embedded, at least)", f"{num(p['server_cpu_s_at_least'], 1)} s"],
        ["wall: whole command / simulated run",
         f"{num(p['wall_s_total'])} s / {num(p['wall_s_run'])} s"],
    ]  # fmt: skip
    return f"""### 8b. One simulator process, {num(s["drivers"])} drivers

**What.** Whether one `ridehail simulate` process drives {num(s["drivers"])} drivers at the
full rate: every online driver reporting its position every {s["report_every_s"]:g} s over
its WebSocket, in real time, for {num(s["minutes"])} minutes, ride requests at up to
{num(s["requests_per_min_at_peak"])} a minute, against {s["server"]} on this machine
({m["cpu"]}, {m["nproc"]} cores; server and simulator share them).

**How.** `bench/one_simulator.py` (`make city`): `{s["command"]}`. The simulator's own CPU
and peak resident memory come from /proc (its server child apart); frames sent, skipped
reports, errors and rides from the run's metrics. "Due" adds up, bucket by bucket of the
run's timeline, the drivers online times the bucket's length over the report interval.

{table(["measured", "value"], rows)}
"""
