"""What a simulation run records: API latencies and errors by endpoint, every ride's
milestones, and a timeline of counts and levels. Serialises to the metrics format that the
report reads (version 1, described in ``ridehail.simulator.report``)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

#: Latency samples kept per endpoint (a uniform reservoir over the whole run).
RESERVOIR = 2_000
ERROR_SAMPLES = 50


@dataclass
class Latencies:
    count: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    samples: list[float] = field(default_factory=list)

    def add(self, ms: float, rng: random.Random) -> None:
        self.count += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)
        if len(self.samples) < RESERVOIR:
            self.samples.append(ms)
        else:  # Algorithm R: every sample so far equally likely to be kept
            slot = rng.randrange(self.count)
            if slot < RESERVOIR:
                self.samples[slot] = ms

    def as_json(self) -> dict[str, Any]:
        ordered = sorted(self.samples)
        return {
            "count": self.count,
            "p50": percentile(ordered, 50),
            "p90": percentile(ordered, 90),
            "p99": percentile(ordered, 99),
            "max": round(self.max_ms, 3),
            "samples": [round(s, 3) for s in self.samples],
        }


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list; None when empty."""
    if not ordered:
        return None
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return round(ordered[rank - 1], 3)


@dataclass
class RideRecord:
    ride_id: str
    rider: int
    requested_s: float
    origin: tuple[float, float]
    destination: tuple[float, float]
    matched_s: float | None = None
    picked_up_s: float | None = None
    completed_s: float | None = None
    outcome: str = "unfinished"
    driver_distance_m: float | None = None
    straight_eta_s: float | None = None
    road_eta_s: float | None = None
    fare: str | None = None

    def as_json(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 2)

        return {
            "ride_id": self.ride_id,
            "rider": self.rider,
            "requested_s": r(self.requested_s),
            "matched_s": r(self.matched_s),
            "picked_up_s": r(self.picked_up_s),
            "completed_s": r(self.completed_s),
            "outcome": self.outcome,
            "origin": list(self.origin),
            "destination": list(self.destination),
            "driver_distance_m": r(self.driver_distance_m),
            "straight_eta_s": r(self.straight_eta_s),
            "road_eta_s": r(self.road_eta_s),
            "fare": self.fare,
        }


_COUNTS = ("requests", "matches", "pickups", "completions", "cancellations", "no_drivers")


class Recorder:
    def __init__(self, *, bucket_s: float, seed: int) -> None:
        self.bucket_s = bucket_s
        self._rng = random.Random(seed)  # noqa: S311 - sampling, not secrets
        self.latency: dict[str, Latencies] = {}
        self.errors: dict[str, dict[str, int]] = {}
        self.error_samples: list[dict[str, Any]] = []
        self.error_count = 0
        self.rides: dict[str, RideRecord] = {}
        self._buckets: list[dict[str, float]] = []

    def _bucket(self, t_s: float) -> dict[str, float]:
        index = max(0, int(t_s // self.bucket_s))
        while len(self._buckets) <= index:
            start = len(self._buckets) * self.bucket_s
            self._buckets.append({"t_s": start, **dict.fromkeys(_COUNTS, 0)})
        return self._buckets[index]

    def count(self, t_s: float, what: str) -> None:
        self._bucket(t_s)[what] += 1

    def levels(self, t_s: float, **levels: float) -> None:
        """Levels (drivers online/busy, riders waiting) as of ``t_s``; the last one written
        in a bucket stands for its end."""
        self._bucket(t_s).update(levels)

    def request(self, endpoint: str, ms: float, status: int, t_s: float, detail: str) -> None:
        self.latency.setdefault(endpoint, Latencies()).add(ms, self._rng)
        if status >= 400 or status == 0:
            self.error_count += 1
            by_status = self.errors.setdefault(endpoint, {})
            key = str(status) if status else "network"
            by_status[key] = by_status.get(key, 0) + 1
            if len(self.error_samples) < ERROR_SAMPLES:
                self.error_samples.append(
                    {
                        "t_s": round(t_s, 2),
                        "endpoint": endpoint,
                        "status": status,
                        "detail": detail[:300],
                    }
                )

    def timeline(self) -> list[dict[str, float]]:
        filled: list[dict[str, float]] = []
        last_levels: dict[str, float] = {}
        for bucket in self._buckets:
            levels = {k: v for k, v in bucket.items() if k not in _COUNTS and k != "t_s"}
            last_levels.update(levels)
            filled.append({**bucket, **{k: v for k, v in last_levels.items() if k not in levels}})
        return filled

    def as_json(self) -> dict[str, Any]:
        return {
            "bucket_s": self.bucket_s,
            "rides": [r.as_json() for r in self.rides.values()],
            "timeline": self.timeline(),
            "latency_ms": {k: v.as_json() for k, v in sorted(self.latency.items())},
            "errors": {
                "count": self.error_count,
                "by_endpoint": self.errors,
                "samples": self.error_samples,
            },
        }


#: A run's counters that the parts of one fleet add up to.
_SUMMED = (
    "unserved_requests",
    "skipped_location_reports",
    "lost_drivers",
    "streams_dropped",
    "streams_reopened",
)


def merge_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One run out of the parts that several simulator processes ran of one fleet (same
    seed, ``--part K/N``): rides, counts, levels, latencies and errors added up."""
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    merged: dict[str, Any] = {
        **first,
        "config": {**first["config"], "part": None, "parts": len(parts)},
        "wall_s": max(p.get("wall_s", 0.0) for p in parts),
        "rides": [r for p in parts for r in p.get("rides", [])],
        **{key: sum(p.get(key, 0) for p in parts) for key in _SUMMED},
        "summary": {},
    }
    timeline: dict[float, dict[str, float]] = {}
    for part in parts:
        for bucket in part.get("timeline", []):
            into = timeline.setdefault(bucket["t_s"], {"t_s": bucket["t_s"]})
            for key, value in bucket.items():
                if key != "t_s":
                    into[key] = into.get(key, 0) + value
    merged["timeline"] = [timeline[t] for t in sorted(timeline)]
    latency: dict[str, dict[str, Any]] = {}
    for part in parts:
        for endpoint, stats in part.get("latency_ms", {}).items():
            samples: list[float] = latency.get(endpoint, {}).get("samples", [])
            previous = latency.get(endpoint, {"count": 0, "max": 0.0})
            latency[endpoint] = {
                "count": previous["count"] + stats["count"],
                "max": max(previous["max"], stats.get("max") or 0.0),
                "samples": samples + list(stats.get("samples", [])),
            }
    for stats in latency.values():
        ordered = sorted(stats["samples"])
        stats.update({f"p{p}": percentile(ordered, p) for p in (50, 90, 99)})
    merged["latency_ms"] = latency
    by_endpoint: dict[str, dict[str, int]] = {}
    for part in parts:
        for endpoint, statuses in part.get("errors", {}).get("by_endpoint", {}).items():
            into_statuses = by_endpoint.setdefault(endpoint, {})
            for status, n in statuses.items():
                into_statuses[status] = into_statuses.get(status, 0) + n
    merged["errors"] = {
        "count": sum(p.get("errors", {}).get("count", 0) for p in parts),
        "by_endpoint": by_endpoint,
        "samples": [s for p in parts for s in p.get("errors", {}).get("samples", [])][
            :ERROR_SAMPLES
        ],
    }
    merged["drivers"] = {
        "positions": [x for p in parts for x in p.get("drivers", {}).get("positions", [])],
        "busy_share_by_bucket": [
            (b.get("drivers_busy", 0) / b["drivers_online"]) if b.get("drivers_online") else 0.0
            for b in merged["timeline"]
        ],
    }
    merged["surge"] = max((p.get("surge", []) for p in parts), key=len)
    return merged
