"""The simulator's report: a summary of a run's metrics, a self-contained HTML page with PNG
plots, and a table for the terminal.

Input is the metrics format, version 1: one JSON object per run (``metrics.json``; a list of
them in compare mode, same seed, one per dispatch strategy). Times ending in ``_s`` are
simulated seconds since the run started; coordinates are ``[latitude, longitude]``.

- ``version``, ``label``, ``config`` (seed, drivers, duration_s, time_scale, strategy, url,
  city ``{"kind": "generated", "seed": 1}`` or ``{"kind": "osm", "path": ...}``,
  peak_per_min, start_hour), ``started_at``, ``wall_s``, ``bucket_s``;
- ``rides``: one object per ride request with ``requested_s``, ``matched_s``,
  ``picked_up_s``, ``completed_s`` (null when it did not happen), ``outcome`` (completed |
  rider_cancelled | no_drivers | unfinished), ``origin``, ``destination``,
  ``driver_distance_m``, ``straight_eta_s`` and ``road_eta_s`` (the estimates at the
  offer, or null) and ``fare``;
- ``timeline``: buckets ``bucket_s`` wide, with event counts (requests, matches, pickups,
  completions, cancellations, no_drivers) and levels at the bucket's end (drivers_online,
  drivers_busy, riders_waiting);
- ``latency_ms``: by endpoint, count, p50/p90/p99/max and up to 2,000 reservoir samples;
- ``errors``: count, by_endpoint ``{endpoint: {status: n}}`` and a few samples;
- ``drivers``: final ``positions`` and ``busy_share_by_bucket``;
- ``surge``: cells with multiplier, latitude, longitude, demand and supply;
- ``summary``: always recomputed here by :func:`summarize`, never read from the file.

Percentiles here are numpy's (linear interpolation between closest ranks).

Re-render from saved metrics: ``python -m ridehail.simulator.report metrics.json --out DIR``.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from rich.console import Console

    from ridehail.streets import City

Run = Mapping[str, Any]

#: One colour per run, in order (Okabe-Ito: readable by colour-blind readers too).
RUN_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_OUTCOMES = ("completed", "rider_cancelled", "no_drivers", "unfinished")
#: Shown for a value a run does not have (an en dash).
_NA = "\u2013"


# --------------------------------------------------------------------------- summary


def _num(value: Any) -> float | None:
    """A finite float, or None (missing, null, NaN or not a number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _stats(values: Sequence[float]) -> dict[str, Any]:
    """count, mean, p50, p90, p99 (None without values)."""
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    arr = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "count": len(values),
        "mean": float(arr.mean()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
    }


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _delta(ride: Mapping[str, Any], start: str, end: str) -> float | None:
    a, b = _num(ride.get(start)), _num(ride.get(end))
    return None if a is None or b is None else b - a


def _duration_s(run: Run) -> float:
    """The simulated length of the run: the configured duration, else what the timeline
    covers, else the last request."""
    config = run.get("config") or {}
    duration = _num(config.get("duration_s"))
    if duration and duration > 0:
        return duration
    timeline = run.get("timeline") or []
    bucket = _num(run.get("bucket_s")) or 0.0
    if timeline and bucket > 0:
        return len(timeline) * bucket
    times = [t for r in run.get("rides") or [] if (t := _num(r.get("requested_s"))) is not None]
    return max(times, default=0.0)


def _utilization(run: Run) -> float | None:
    """Mean busy share of online drivers over the buckets: ``drivers.busy_share_by_bucket``
    when the engine wrote it, else busy/online from the timeline."""
    shares = [
        s
        for v in (run.get("drivers") or {}).get("busy_share_by_bucket") or []
        if (s := _num(v)) is not None
    ]
    if not shares:
        shares = [s for _, s in _busy_shares(run)]
    return float(np.mean(shares)) if shares else None


def _busy_shares(run: Run) -> list[tuple[float, float]]:
    """(bucket end in simulated seconds, busy share) from the timeline, where drivers are
    online."""
    bucket = _num(run.get("bucket_s")) or 60.0
    out = []
    for b in run.get("timeline") or []:
        online, busy = _num(b.get("drivers_online")), _num(b.get("drivers_busy"))
        t = _num(b.get("t_s"))
        if online and busy is not None and t is not None:
            out.append((t + bucket, busy / online))
    return out


def _eta_errors(rides: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    """Estimate minus actual pickup drive (accepted -> picked up), in seconds."""
    errors = []
    for ride in rides:
        actual = _delta(ride, "matched_s", "picked_up_s")
        estimate = _num(ride.get(key))
        if actual is not None and estimate is not None:
            errors.append(estimate - actual)
    return errors


def _error_stats(errors: Sequence[float]) -> dict[str, Any]:
    if not errors:
        return {"count": 0, "mean_abs": None, "p90_abs": None, "bias": None}
    arr = np.asarray(errors, dtype=np.float64)
    absolute = np.abs(arr)
    return {
        "count": len(errors),
        "mean_abs": float(absolute.mean()),
        "p90_abs": float(np.percentile(absolute, 90)),
        "bias": float(arr.mean()),
    }


def _p99_ms(entry: Mapping[str, Any]) -> float | None:
    p99 = _num(entry.get("p99"))
    if p99 is None:
        samples = [s for v in entry.get("samples") or [] if (s := _num(v)) is not None]
        if samples:
            p99 = float(np.percentile(samples, 99))
    return p99


def _error_count(run: Run) -> int:
    errors = run.get("errors") or {}
    count = _num(errors.get("count"))
    if count is not None:
        return int(count)
    by_endpoint = errors.get("by_endpoint") or {}
    return int(sum(_num(n) or 0 for statuses in by_endpoint.values() for n in statuses.values()))


def summarize(run: Run) -> dict[str, Any]:
    """The run's summary, computed from its rides, timeline, latencies and errors (a
    ``summary`` already in ``run`` is ignored).

    Keys: requests, matched, completed, rider_cancelled, no_drivers, match_rate
    (matched / requests), completion_rate, wait_time_s (request -> driver accepted) and
    pickup_time_s (request -> picked up), each {count, mean, p50, p90, p99}, utilization
    (mean busy share of online drivers), errors, requests_per_min (simulated), api_p99_ms
    {endpoint: ms}, eta_error_s {straight, road}, each {count, mean_abs, p90_abs, bias}
    (estimate at the offer minus the actual drive from acceptance to pickup; bias > 0 means
    the estimate was too long). Rates and statistics without data are None.
    """
    rides: list[Mapping[str, Any]] = [r for r in run.get("rides") or [] if isinstance(r, Mapping)]
    requests = len(rides)
    matched = sum(1 for r in rides if _num(r.get("matched_s")) is not None)
    outcomes = {o: sum(1 for r in rides if r.get("outcome") == o) for o in _OUTCOMES}
    waits = [d for r in rides if (d := _delta(r, "requested_s", "matched_s")) is not None]
    pickups = [d for r in rides if (d := _delta(r, "requested_s", "picked_up_s")) is not None]
    duration = _duration_s(run)
    latency = run.get("latency_ms") or {}
    api_p99 = {
        endpoint: _p99_ms(entry)
        for endpoint, entry in sorted(latency.items())
        if isinstance(entry, Mapping)
    }
    return {
        "requests": requests,
        "matched": matched,
        "completed": outcomes["completed"],
        "rider_cancelled": outcomes["rider_cancelled"],
        "no_drivers": outcomes["no_drivers"],
        "match_rate": _ratio(matched, requests),
        "completion_rate": _ratio(outcomes["completed"], requests),
        "wait_time_s": _stats(waits),
        "pickup_time_s": _stats(pickups),
        "utilization": _utilization(run),
        "errors": _error_count(run),
        "requests_per_min": requests / (duration / 60) if duration > 0 else None,
        "api_p99_ms": api_p99,
        "eta_error_s": {
            "straight": _error_stats(_eta_errors(rides, "straight_eta_s")),
            "road": _error_stats(_eta_errors(rides, "road_eta_s")),
        },
    }


# --------------------------------------------------------------------------- headline


def _label(run: Run, index: int) -> str:
    label = run.get("label")
    return str(label) if label else f"run {index + 1}"


def _labels(runs: Sequence[Run]) -> list[str]:
    """One distinct label per run."""
    seen: dict[str, int] = {}
    labels = []
    for i, run in enumerate(runs):
        label = _label(run, i)
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return labels


def _fmt_int(v: Any) -> str:
    return _NA if v is None else f"{int(v):,}"


def _fmt_pct(v: Any) -> str:
    return _NA if v is None else f"{100 * v:.1f} %"


def _fmt_s(v: Any) -> str:
    """Seconds, as seconds below two minutes and as m:ss above."""
    if v is None:
        return _NA
    if abs(v) < 120:
        return f"{v:.1f} s"
    minutes, seconds = divmod(round(v), 60)
    return f"{minutes}:{seconds:02d} min"


def _fmt_ms(v: Any) -> str:
    if v is None:
        return _NA
    return f"{v:.0f} ms" if v >= 100 else f"{v:.1f} ms"


def _fmt_rate(v: Any) -> str:
    return _NA if v is None else f"{v:.1f}"


def headline_rows(summaries: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """The headline table: (metric, one formatted value per run), for HTML and terminal."""

    def row(
        name: str, get: Callable[[Mapping[str, Any]], Any], fmt: Callable[[Any], str]
    ) -> tuple[str, list[str]]:
        return name, [fmt(get(s)) for s in summaries]

    rows = [
        row("Ride requests", lambda s: s["requests"], _fmt_int),
        row("Requests per minute (simulated)", lambda s: s["requests_per_min"], _fmt_rate),
        row("Match rate", lambda s: s["match_rate"], _fmt_pct),
        row("Completed", lambda s: s["completion_rate"], _fmt_pct),
        row("Rider cancelled", lambda s: s["rider_cancelled"], _fmt_int),
        row("No drivers", lambda s: s["no_drivers"], _fmt_int),
        row("Wait to match p50", lambda s: s["wait_time_s"]["p50"], _fmt_s),
        row("Wait to match p90", lambda s: s["wait_time_s"]["p90"], _fmt_s),
        row("Pickup time p50", lambda s: s["pickup_time_s"]["p50"], _fmt_s),
        row("Pickup time p90", lambda s: s["pickup_time_s"]["p90"], _fmt_s),
        row("Driver utilization", lambda s: s["utilization"], _fmt_pct),
        row("API errors", lambda s: s["errors"], _fmt_int),
        row(
            "ETA error, straight line (mean |err|)",
            lambda s: s["eta_error_s"]["straight"]["mean_abs"],
            _fmt_s,
        ),
        row("ETA error, road (mean |err|)", lambda s: s["eta_error_s"]["road"]["mean_abs"], _fmt_s),
    ]
    endpoints = sorted({e for s in summaries for e in s["api_p99_ms"]})
    for endpoint in endpoints:
        rows.append(
            (f"API p99 · {endpoint}", [_fmt_ms(s["api_p99_ms"].get(endpoint)) for s in summaries])
        )
    return rows


def print_summary(runs: Sequence[Run], console: Console | None = None) -> None:
    """The headline table in the terminal: one column per run."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    summaries = [summarize(r) for r in runs]
    table = Table(title="Simulation summary", title_style="bold", show_lines=False)
    table.add_column("metric", style="bold")
    for i, label in enumerate(_labels(runs)):
        table.add_column(label, justify="right", style=RUN_COLOURS[i % len(RUN_COLOURS)])
    for name, values in headline_rows(summaries):
        table.add_row(name, *values)
    console.print(table)


# --------------------------------------------------------------------------- plots


@dataclass(frozen=True)
class _Plot:
    key: str
    title: str
    how_to_read: str
    figure: Figure


def _style() -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    mpl.rcParams.update(
        {
            "font.size": 10,
            "axes.titlesize": 12,
            "axes.titleweight": "bold",
            "axes.labelsize": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.frameon": False,
            "legend.fontsize": 9,
            "figure.dpi": 100,
            "savefig.dpi": 110,
        }
    )


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _no_data(ax: Axes, text: str = "no data in this run") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777777")


def _colour(i: int) -> str:
    return RUN_COLOURS[i % len(RUN_COLOURS)]


def _time_formatter(run: Run) -> tuple[str, Callable[[float, int], str]]:
    """The x axis of timelines: clock time when the run has a start hour, else minutes."""
    start_hour = _num((run.get("config") or {}).get("start_hour"))
    if start_hour is None:
        return "simulated time since start (min)", lambda x, _pos: f"{x:g}"

    def clock(x: float, _pos: int) -> str:
        total = round(start_hour * 60 + x) % (24 * 60)
        return f"{total // 60:02d}:{total % 60:02d}"

    return "simulated time of day", clock


def _set_time_axis(ax: Axes, runs: Sequence[Run]) -> None:
    from matplotlib.ticker import FuncFormatter

    label, fmt = _time_formatter(runs[0] if runs else {})
    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.set_xlabel(label)


def _seconds_unit(values: Iterable[float]) -> tuple[str, float]:
    """Minutes when the values run past three minutes, else seconds."""
    top = max(values, default=0.0)
    return ("min", 60.0) if top > 180 else ("s", 1.0)


def _plot_distributions(runs: Sequence[Run], labels: Sequence[str]) -> _Plot:
    fig, axes = _figure(11, 4.2, ncols=2)
    spans = (
        ("Wait to match", "requested_s", "matched_s", axes[0]),
        ("Pickup time", "requested_s", "picked_up_s", axes[1]),
    )
    for title, start, end, ax in spans:
        per_run = [
            [d for r in run.get("rides") or [] if (d := _delta(r, start, end)) is not None]
            for run in runs
        ]
        unit, scale = _seconds_unit(np.percentile(v, 99) for v in per_run if v)
        drawn = False
        for i, values in enumerate(per_run):
            if not values:
                continue
            drawn = True
            arr = np.sort(np.asarray(values)) / scale
            cdf = np.arange(1, len(arr) + 1) / len(arr)
            p50, p90 = np.percentile(arr, [50, 90])
            ax.step(
                arr,
                cdf,
                where="post",
                color=_colour(i),
                lw=2,
                label=f"{labels[i]}: p50 {p50:.1f}, p90 {p90:.1f} {unit} (n={len(arr):,})",
            )
            ax.plot([p50, p90], [0.5, 0.9], "o", color=_colour(i), ms=5)
        for level in (0.5, 0.9):
            ax.axhline(level, color="#999999", lw=0.8, ls=":")
        ax.set_title(f"{title} (request → {'accepted' if end == 'matched_s' else 'picked up'})")
        ax.set_xlabel(f"{title.lower()} ({unit})")
        ax.set_ylabel("share of rides at or below")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        if drawn:
            ax.legend(loc="lower right")
        else:
            _no_data(ax)
    return _Plot(
        "distributions",
        "Wait and pickup times",
        "Cumulative share of rides (y) that waited at most x. Further left is better; the dots "
        "mark the median (50 %) and p90. Only rides that reached the milestone count.",
        fig,
    )


def _bucket(run: Run) -> float:
    bucket = _num(run.get("bucket_s"))
    return bucket if bucket and bucket > 0 else 60.0


def _stacked(height: float, rows: int) -> tuple[Figure, list[Axes]]:
    """Panels one above the other, sharing the time axis."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, height), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def _run_legend(fig: Figure, labels: Sequence[str]) -> None:
    """One legend for the whole figure, above it: a line per run in its colour."""
    from matplotlib.lines import Line2D

    if labels:
        handles = [Line2D([], [], color=_colour(i), lw=2.5) for i in range(len(labels))]
        fig.legend(handles, list(labels), loc="outside upper center", ncols=len(labels))


def _plot_throughput(runs: Sequence[Run], labels: Sequence[str]) -> _Plot:
    series = (
        ("requests", "Ride requests"),
        ("matches", "Matches (a driver accepted)"),
        ("completions", "Completed rides"),
    )
    fig, axes = _stacked(7.5, len(series))
    drawn = False
    for i, run in enumerate(runs):
        timeline = run.get("timeline") or []
        if not timeline:
            continue
        bucket = _bucket(run)
        t = np.array([(_num(b.get("t_s")) or 0.0) + bucket / 2 for b in timeline]) / 60
        for ax, (key, _) in zip(axes, series, strict=True):
            per_min = np.array([_num(b.get(key)) or 0.0 for b in timeline]) / (bucket / 60)
            ax.plot(t, per_min, color=_colour(i), lw=1.8)
            drawn = True
    top = max((ax.get_ylim()[1] for ax in axes), default=1.0)
    for ax, (_, title) in zip(axes, series, strict=True):
        ax.set_title(title, loc="left", fontsize=11)
        ax.set_ylabel("per minute")
        ax.set_ylim(0, top)
        if not drawn:
            _no_data(ax)
    _set_time_axis(axes[-1], runs)
    _run_legend(fig, labels)
    return _Plot(
        "throughput",
        "Requests, matches and completions over time",
        "Events per simulated minute in each time bucket, on the same scale in all three "
        "panels. Matches trailing requests means riders are left waiting; completions follow "
        "matches by about one trip's length.",
        fig,
    )


def _plot_match_rate(runs: Sequence[Run], labels: Sequence[str]) -> _Plot:
    fig, axes = _figure(11, 3.8)
    ax = axes[0]
    drawn = False
    for i, run in enumerate(runs):
        bucket = _bucket(run)
        requested: dict[int, int] = {}
        matched: dict[int, int] = {}
        for ride in run.get("rides") or []:
            t = _num(ride.get("requested_s"))
            if t is None:
                continue
            k = int(t // bucket)
            requested[k] = requested.get(k, 0) + 1
            if _num(ride.get("matched_s")) is not None:
                matched[k] = matched.get(k, 0) + 1
        if not requested:
            continue
        keys = sorted(requested)
        t_min = np.array([(k + 0.5) * bucket / 60 for k in keys])
        rate = np.array([100 * matched.get(k, 0) / requested[k] for k in keys])
        ax.plot(t_min, rate, "-o", color=_colour(i), lw=1.8, ms=3, label=labels[i])
        drawn = True
    ax.set_title("Match rate by time of request")
    ax.set_ylabel("requests matched (%)")
    ax.set_ylim(0, 105)
    _set_time_axis(ax, runs)
    if drawn:
        ax.legend(loc="lower left")
    else:
        _no_data(ax)
    return _Plot(
        "match_rate",
        "Match rate",
        "Of the rides requested in each time bucket, the share that a driver accepted "
        "(eventually). Dips show when supply ran short.",
        fig,
    )


def _plot_utilization(runs: Sequence[Run], labels: Sequence[str]) -> _Plot:
    fig, (ax, queue) = _stacked(6.0, 2)
    drawn = False
    for i, run in enumerate(runs):
        shares = _busy_shares(run)
        bucket = _bucket(run)
        if not shares:
            fallback = (run.get("drivers") or {}).get("busy_share_by_bucket") or []
            shares = [
                ((k + 1) * bucket, share)
                for k, v in enumerate(fallback)
                if (share := _num(v)) is not None
            ]
        if shares:
            arr = np.array(shares)
            ax.plot(arr[:, 0] / 60, 100 * arr[:, 1], color=_colour(i), lw=2)
            drawn = True
        waiting = [
            ((_num(b.get("t_s")) or 0.0) + bucket, w)
            for b in run.get("timeline") or []
            if (w := _num(b.get("riders_waiting"))) is not None
        ]
        if waiting:
            arr = np.array(waiting)
            queue.plot(arr[:, 0] / 60, arr[:, 1], color=_colour(i), lw=1.8)
            drawn = True
    ax.set_title("Online drivers busy", loc="left", fontsize=11)
    ax.set_ylabel("busy (%)")
    ax.set_ylim(0, 105)
    queue.set_title("Riders waiting for a car", loc="left", fontsize=11)
    queue.set_ylabel("riders")
    queue.set_ylim(bottom=0)
    _set_time_axis(queue, runs)
    if not drawn:
        _no_data(ax)
        _no_data(queue)
    _run_legend(fig, labels)
    return _Plot(
        "utilization",
        "Driver utilization and riders waiting",
        "Top: the share of online drivers on a ride or driving to one, at each bucket's end. "
        "Bottom: riders waiting for a car. High utilization with a growing queue means too "
        "few drivers; low utilization with a queue means dispatch is not matching them.",
        fig,
    )


def _plot_latency(runs: Sequence[Run], labels: Sequence[str]) -> _Plot:
    endpoints = sorted({e for run in runs for e in (run.get("latency_ms") or {})})
    height = max(3.0, 1.0 + 0.45 * len(endpoints) * max(1, len(runs)))
    fig, axes = _figure(11, height)
    ax = axes[0]
    if not endpoints:
        _no_data(ax, "no API calls recorded")
        ax.set_title("API latency by endpoint")
        return _Plot("latency", "API latency", "No API calls were recorded.", fig)
    n = len(runs)
    bar_h = 0.8 / n
    shades = (("p99", 0.3), ("p90", 0.6), ("p50", 1.0))
    for i, run in enumerate(runs):
        latency = run.get("latency_ms") or {}
        y = np.arange(len(endpoints)) - 0.4 + bar_h * (i + 0.5)
        for key, alpha in shades:
            values = [_num((latency.get(e) or {}).get(key)) or 0.0 for e in endpoints]
            ax.barh(y, values, height=bar_h * 0.9, color=_colour(i), alpha=alpha, lw=0)
        for yy, e in zip(y, endpoints, strict=True):
            p99 = _num((latency.get(e) or {}).get("p99"))
            if p99:
                count = int(_num((latency.get(e) or {}).get("count")) or 0)
                ax.text(p99 * 1.08, yy, f"{p99:.1f} ms  (n={count:,})", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_yticks(np.arange(len(endpoints)), endpoints, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_title("API latency by endpoint: p50 (dark), p90, p99 (light)")
    ax.grid(axis="y", visible=False)
    xmax = max(
        (_num(v.get("p99")) or 0.0 for run in runs for v in (run.get("latency_ms") or {}).values()),
        default=1.0,
    )
    ax.set_xlim(right=max(xmax, 1.0) * 6)
    from matplotlib.patches import Patch

    ax.legend(
        handles=[Patch(color=_colour(i), label=label) for i, label in enumerate(labels)],
        loc="lower right",
    )
    return _Plot(
        "latency",
        "API latency",
        "Each bar is one endpoint in one run: the dark part reaches the median, the middle "
        "shade p90, the light end p99 (the number). Log scale: one grid step is ten times "
        "slower.",
        fig,
    )


def _plot_eta(runs: Sequence[Run], labels: Sequence[str]) -> _Plot:
    fig, axes = _figure(11, 4.8, ncols=2)
    top = 0.0
    for ax, key, name in (
        (axes[0], "straight_eta_s", "Straight-line estimate"),
        (axes[1], "road_eta_s", "Road-network estimate"),
    ):
        drawn = False
        for i, run in enumerate(runs):
            pairs = [
                (actual, estimate)
                for r in run.get("rides") or []
                if (actual := _delta(r, "matched_s", "picked_up_s")) is not None
                and (estimate := _num(r.get(key))) is not None
            ]
            if not pairs:
                continue
            actual_arr, estimate_arr = (np.array(v) / 60 for v in zip(*pairs, strict=True))
            err = np.abs(estimate_arr - actual_arr) * 60
            top = max(top, float(np.percentile(actual_arr, 99)), float(estimate_arr.max()))
            ax.scatter(
                actual_arr,
                estimate_arr,
                s=6,
                alpha=0.35,
                color=_colour(i),
                lw=0,
                rasterized=True,
                label=f"{labels[i]}: mean |error| {err.mean():.0f} s (n={len(pairs):,})",
            )
            drawn = True
        ax.set_title(name)
        ax.set_xlabel("actual drive to pickup (min)")
        ax.set_ylabel("estimated at the offer (min)")
        if drawn:
            legend = ax.legend(loc="upper left", markerscale=3)
            for handle in legend.legend_handles:
                if handle is not None:
                    handle.set_alpha(1)
        else:
            _no_data(ax)
    limit = max(top * 1.05, 1.0)
    for ax in axes:
        ax.plot([0, limit], [0, limit], color="#444444", lw=1, ls="--")
        ax.set_xlim(0, limit)
        ax.set_ylim(0, limit)
        ax.set_aspect("equal", adjustable="box")
    return _Plot(
        "eta",
        "Pickup ETA: straight line vs road network",
        "Each dot is a ride: x is how long the driver actually took from accepting to the "
        "pickup, y what was estimated at the offer. On the dashed line the estimate was "
        "exact; below it the estimate was too optimistic.",
        fig,
    )


def _lat_aspect(lat: float) -> float:
    return 1 / max(0.05, math.cos(math.radians(lat)))


def _draw_streets(ax: Axes, city: City) -> None:
    from matplotlib.collections import LineCollection

    g = city.graph
    if not len(g.src):
        return
    # Each two-way street once: keep an edge if it is the lower-numbered direction of a pair
    # or a one-way street.
    a, b = np.minimum(g.src, g.dst), np.maximum(g.src, g.dst)
    _, first = np.unique(a * (len(g.lat) + 1) + b, return_index=True)
    src, dst, speed = g.src[first], g.dst[first], g.speed_mps[first]
    order = np.argsort(speed)  # fast roads drawn on top
    src, dst, speed = src[order], dst[order], speed[order]
    segments = np.stack(
        (np.column_stack((g.lon[src], g.lat[src])), np.column_stack((g.lon[dst], g.lat[dst]))),
        axis=1,
    )
    kmh = speed * 3.6
    low, high = float(kmh.min()), float(kmh.max())
    span = (high - low) or 1.0
    # Slow streets light and thin, fast roads dark and thick.
    shade = 0.78 - 0.7 * (kmh - low) / span
    colours = np.column_stack((shade, shade, shade, np.ones_like(shade)))
    widths = 0.25 + 1.2 * (kmh - low) / span
    ax.add_collection(
        LineCollection(list(segments), colors=colours, linewidths=widths, zorder=1, rasterized=True)
    )
    # A legend entry per road speed (a handful of classes), else the slowest and fastest.
    speeds = np.unique(np.round(kmh))
    if len(speeds) > 4:
        speeds = np.array([speeds[0], np.median(speeds), speeds[-1]])
    for v in speeds:
        level = 0.78 - 0.7 * (v - low) / span
        ax.plot(
            [],
            [],
            color=(level, level, level),
            lw=0.25 + 1.2 * (v - low) / span + 0.8,
            label=f"road {v:.0f} km/h",
        )


def _plot_map(run: Run, label: str, index: int, city: City | None) -> _Plot:
    fig, axes = _figure(7.2, 9.0)
    ax = axes[0]
    lats: list[float] = []
    lons: list[float] = []
    if city is not None:
        _draw_streets(ax, city)
        (south, west), (north, east) = city.bounds
        lats += [south, north]
        lons += [west, east]
    positions = np.array(
        [
            p[:2]
            for p in (run.get("drivers") or {}).get("positions") or []
            if isinstance(p, Sequence) and len(p) >= 2 and None not in p[:2]
        ],
        dtype=np.float64,
    ).reshape(-1, 2)
    if len(positions):
        hb = ax.hexbin(
            positions[:, 1],
            positions[:, 0],
            gridsize=40,
            mincnt=1,
            cmap="Blues",
            alpha=0.75,
            lw=0,
            zorder=2,
        )
        cbar = fig.colorbar(hb, ax=ax, shrink=0.5, pad=0.01, location="bottom", aspect=40)
        cbar.set_label(f"drivers per hexagon at the end ({len(positions):,} drivers)")
        lats += [float(positions[:, 0].min()), float(positions[:, 0].max())]
        lons += [float(positions[:, 1].min()), float(positions[:, 1].max())]
    cells = [
        (lat, lon, m)
        for c in run.get("surge") or []
        if (lat := _num(c.get("latitude"))) is not None
        and (lon := _num(c.get("longitude"))) is not None
        and (m := _num(c.get("multiplier"))) is not None
    ]
    if cells:
        arr = np.array(cells)
        order = np.argsort(arr[:, 2])
        arr = arr[order]
        sc = ax.scatter(
            arr[:, 1],
            arr[:, 0],
            c=arr[:, 2],
            cmap="YlOrRd",
            vmin=1.0,
            vmax=max(1.5, float(arr[:, 2].max())),
            s=30 + 60 * (arr[:, 2] - 1),
            marker="s",
            edgecolors="#333333",
            linewidths=0.4,
            zorder=4,
        )
        cbar = fig.colorbar(sc, ax=ax, shrink=0.5, pad=0.01)
        cbar.set_label("surge multiplier (squares)")
    if city is not None:
        for spot in city.hotspots:
            ax.plot(
                spot.point[1],
                spot.point[0],
                marker="*",
                ms=14,
                color="#E69F00",
                mec="black",
                mew=0.6,
                zorder=5,
            )
            ax.annotate(
                spot.name,
                (spot.point[1], spot.point[0]),
                xytext=(6, 5),
                textcoords="offset points",
                fontsize=9,
                fontweight="bold",
                zorder=6,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
            )
    if city is not None:
        ax.plot([], [], "*", ms=11, color="#E69F00", mec="black", mew=0.6, label="hotspot")
        ax.legend(loc="lower left", framealpha=0.85, frameon=True, fontsize=8)
    if lats:
        pad_lat = (max(lats) - min(lats)) * 0.02 or 0.01
        pad_lon = (max(lons) - min(lons)) * 0.02 or 0.01
        ax.set_xlim(min(lons) - pad_lon, max(lons) + pad_lon)
        ax.set_ylim(min(lats) - pad_lat, max(lats) + pad_lat)
        ax.set_aspect(_lat_aspect((max(lats) + min(lats)) / 2))
    else:
        _no_data(ax, "no street network, drivers or surge cells to draw")
    ax.grid(False)
    ax.set_xlabel("longitude (°)")
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_ylabel("latitude (°)")
    ax.set_title(f"City map · {label}", color=_colour(index))
    return _Plot(
        f"map_{_slug(label)}",
        f"City map · {label}",
        "Streets in grey (darker and thicker is faster), where the drivers were at the end "
        "(blue hexagons, darker is more drivers), surge cells (squares, redder is a higher "
        "multiplier) and the demand hotspots (stars).",
        fig,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "run"


# --------------------------------------------------------------------------- HTML

_CSS = """
:root { --ink:#1d2330; --muted:#5b6475; --line:#e3e6ec; --bg:#f6f7f9; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color:var(--ink); background:var(--bg); }
header { background:#1d2330; color:#fff; padding:28px 40px 22px; }
header h1 { margin:0 0 6px; font-size:26px; }
header p { margin:0; color:#c5cbd8; }
main { max-width:1180px; margin:0 auto; padding:24px 24px 60px; }
section { background:#fff; border:1px solid var(--line); border-radius:10px;
  padding:18px 22px; margin:0 0 22px; }
h2 { font-size:19px; margin:0 0 10px; }
p.how { color:var(--muted); font-size:13.5px; margin:8px 0 0; }
p.how b { color:var(--ink); }
img { max-width:100%; height:auto; display:block; margin:0 auto; }
table { border-collapse:collapse; width:100%; font-size:14px; }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:right; }
th:first-child, td:first-child { text-align:left; }
thead th { border-bottom:2px solid var(--ink); }
td.num { font-variant-numeric: tabular-nums; }
.swatch { display:inline-block; width:11px; height:11px; border-radius:2px;
  margin-right:6px; vertical-align:-1px; }
.maps { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:16px; }
.small { font-size:12.5px; color:var(--muted); }
code { font-size:12.5px; background:#f0f2f5; padding:1px 4px; border-radius:3px; }
footer { color:var(--muted); font-size:12.5px; text-align:center; margin-top:30px; }
"""


def _png(fig: Figure) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _run_header_cells(labels: Sequence[str]) -> str:
    return "".join(
        f'<th><span class="swatch" style="background:{_colour(i)}"></span>{html.escape(label)}</th>'
        for i, label in enumerate(labels)
    )


def _table(header: str, labels: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f'<td class="num">{html.escape(v)}</td>' for v in values)
        + "</tr>"
        for name, values in rows
    )
    return (
        f"<table><thead><tr><th>{html.escape(header)}</th>{_run_header_cells(labels)}</tr>"
        f"</thead><tbody>{body}</tbody></table>"
    )


def _config_rows(runs: Sequence[Run]) -> list[tuple[str, list[str]]]:
    def value(run: Run, key: str) -> str:
        v = (run.get("config") or {}).get(key)
        if isinstance(v, Mapping):
            return ", ".join(f"{k}={x}" for k, x in v.items())
        return _NA if v is None else str(v)

    keys = ("strategy", "seed", "drivers", "duration_s", "time_scale", "peak_per_min", "city")
    rows = [(key, [value(run, key) for run in runs]) for key in keys]
    rows.append(("wall time (s)", [_fmt_rate(_num(run.get("wall_s"))) for run in runs]))
    rows.append(("started at", [str(run.get("started_at") or _NA) for run in runs]))
    return rows


def _errors_html(runs: Sequence[Run], labels: Sequence[str]) -> str:
    keys = sorted(
        {
            (endpoint, str(status))
            for run in runs
            for endpoint, statuses in ((run.get("errors") or {}).get("by_endpoint") or {}).items()
            for status in statuses
        }
    )
    if not keys:
        table = "<p>No API call failed in any run.</p>"
    else:
        rows = [
            (
                f"{endpoint} → {status}",
                [
                    _fmt_int(
                        ((run.get("errors") or {}).get("by_endpoint") or {})
                        .get(endpoint, {})
                        .get(status, 0)
                    )
                    for run in runs
                ],
            )
            for endpoint, status in keys
        ]
        table = _table("endpoint → status", labels, rows)
    samples = []
    for label, run in zip(labels, runs, strict=True):
        for s in ((run.get("errors") or {}).get("samples") or [])[:5]:
            samples.append(
                f"<tr><td>{html.escape(label)}</td><td>{_fmt_rate(_num(s.get('t_s')))}</td>"
                f"<td>{html.escape(str(s.get('endpoint', '')))}</td>"
                f"<td>{html.escape(str(s.get('status', '')))}</td>"
                f'<td style="text-align:left"><code>'
                f"{html.escape(str(s.get('detail', ''))[:200])}</code></td></tr>"
            )
    if samples:
        table += (
            '<h3 class="small">Samples (first five per run)</h3><table><thead><tr><th>run</th>'
            "<th>t (s)</th><th>endpoint</th><th>status</th>"
            '<th style="text-align:left">detail</th></tr></thead><tbody>'
            + "".join(samples)
            + "</tbody></table>"
        )
    return table


def _figure_section(plot: _Plot, png: bytes) -> str:
    return (
        f"<section><h2>{html.escape(plot.title)}</h2>{_img(png, plot.title)}"
        f'<p class="how"><b>How to read this:</b> {html.escape(plot.how_to_read)}</p></section>'
    )


def render(runs: Sequence[Run], out_dir: Path, *, city: City | None = None) -> Path:
    """Write ``out_dir/report.html`` (one self-contained page: plots embedded as data URIs,
    inline CSS), the plots as PNG files beside it and ``summary.json``; return the HTML's
    path. Several runs are put side by side (same colours in every plot and table). ``city``
    draws the street network and hotspots under each run's map."""
    from matplotlib import pyplot as plt  # noqa: F401 - registers the colormaps

    started = time.perf_counter()
    _style()
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = list(runs)
    labels = _labels(runs)
    summaries = [summarize(run) for run in runs]
    (out_dir / "summary.json").write_text(
        json.dumps(
            {
                "version": 1,
                "runs": [
                    {"label": label, "config": run.get("config") or {}, "summary": summary}
                    for label, run, summary in zip(labels, runs, summaries, strict=True)
                ],
            },
            indent=2,
        )
    )
    builders: list[Callable[[Sequence[Run], Sequence[str]], _Plot]] = [
        _plot_distributions,
        _plot_throughput,
        _plot_match_rate,
        _plot_utilization,
        _plot_latency,
        _plot_eta,
    ]
    rendered: list[tuple[_Plot, bytes]] = []
    for build in builders:
        plot = build(runs, labels)
        rendered.append((plot, _save(plot, out_dir)))
    maps = []
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        plot = _plot_map(run, label, i, city)
        maps.append((plot, _save(plot, out_dir)))

    by_key = {plot.key: (plot, png) for plot, png in rendered}
    title = "Ride-hailing city simulation" + (
        f": {' vs '.join(labels)}" if len(labels) > 1 else f": {labels[0]}" if labels else ""
    )
    subtitle = "  ·  ".join(
        f"{label}: {_fmt_int((run.get('config') or {}).get('drivers'))} drivers, "
        f"{_fmt_int(s['requests'])} requests"
        for label, run, s in zip(labels, runs, summaries, strict=True)
    )
    map_cells = (
        "".join(f"<div>{_img(png, plot.title)}</div>" for plot, png in maps) or "<p>No runs.</p>"
    )
    sections = [
        "<section><h2>Headline</h2>"
        + _table("metric", labels, headline_rows(summaries))
        + '<p class="how"><b>How to read this:</b> one column per run. Wait to match is from '
        "the request to a driver accepting; pickup time from the request to the driver "
        "arriving. Utilization is the mean share of online drivers busy. API p99 is the "
        "99th-percentile response time of each endpoint as the simulator measured it."
        "</p></section>",
        _figure_section(*by_key["distributions"]),
        _figure_section(*by_key["throughput"]),
        _figure_section(*by_key["match_rate"]),
        _figure_section(*by_key["utilization"]),
        _figure_section(*by_key["latency"]),
        "<section><h2>API errors</h2>"
        + _errors_html(runs, labels)
        + '<p class="how"><b>How to read this:</b> failed API calls (HTTP status 400 and '
        "above, or <code>network</code> when no answer came) counted by endpoint and "
        "status. A few conflicts (409) are expected when riders cancel or drivers race.</p>"
        "</section>",
        _figure_section(*by_key["eta"]),
        f'<section><h2>City maps</h2><div class="maps">{map_cells}</div>'
        f'<p class="how"><b>How to read this:</b> {html.escape(maps[0][0].how_to_read)}</p>'
        "</section>"
        if maps
        else "",
        "<section><h2>Run configuration</h2>"
        + _table("setting", labels, _config_rows(runs))
        + "</section>",
    ]
    elapsed = time.perf_counter() - started
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<main>{''.join(sections)}"
        f"<footer>Generated by <code>ridehail.simulator.report</code> in {elapsed:.1f} s. "
        "Times are simulated; percentiles interpolate between closest ranks.</footer>"
        "</main></body></html>"
    )
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _save(plot: _Plot, out_dir: Path) -> bytes:
    png = _png(plot.figure)
    (out_dir / f"{plot.key}.png").write_bytes(png)
    plot.figure.clear()
    return png


# --------------------------------------------------------------------------- CLI


def load_runs(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The runs in metrics files (each holds one run or a list of runs)."""
    runs: list[dict[str, Any]] = []
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        items = data if isinstance(data, list) else [data]
        for item in items:
            if not isinstance(item, dict):
                raise ValueError(f"{path}: a run must be a JSON object")
            runs.append(item)
    return runs


def city_for(runs: Sequence[Run]) -> City | None:
    """The generated city the runs were on (from the first run's ``config.city``), or None
    when it was not a generated one."""
    for run in runs:
        spec = (run.get("config") or {}).get("city") or {}
        if isinstance(spec, Mapping) and spec.get("kind") == "generated":
            from ridehail.streets import generate_city

            defaults = {"width_m": 25_000.0, "height_m": 39_000.0, "block_m": 250.0}
            size = {k: float(spec.get(k, v)) for k, v in defaults.items()}
            return generate_city(
                seed=int(spec.get("seed", 1)),
                width_m=size["width_m"],
                height_m=size["height_m"],
                block_m=size["block_m"],
            )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ridehail.simulator.report",
        description="Re-render the simulator's HTML report from metrics JSON files.",
    )
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics.json file(s)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--no-streets", action="store_true", help="do not regenerate the city for the map"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="the files are parts of one fleet (simulate --part K/N): report them as one run",
    )
    args = parser.parse_args(argv)
    runs = load_runs(args.metrics)
    if args.merge:
        from ridehail.simulator.metrics import merge_parts

        runs = [merge_parts(runs)]
    city = None if args.no_streets else city_for(runs)
    path = render(runs, args.out, city=city)
    print_summary(runs)
    sys.stdout.write(f"report: {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
