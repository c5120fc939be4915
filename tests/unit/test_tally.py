"""Deferred counts reach prometheus_client exactly as per-call inc/observe would."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ridehail.tally import DeferredCounts

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _metrics(registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    counter = Counter("t_requests_total", "t", ["status"], registry=registry)
    histogram = Histogram("t_latency_seconds", "t", ["route"], buckets=BUCKETS, registry=registry)
    return counter, histogram


def _exposition(registry: CollectorRegistry) -> tuple[list[str], dict[str, float]]:
    """The scrape without the creation timestamps (they differ between registries), and
    the sums apart: added up in another order, they may differ in the last bit."""
    lines, sums = [], {}
    for line in generate_latest(registry).decode().splitlines():
        if "_created" in line:
            continue
        if "_sum{" in line:
            name, value = line.rsplit(" ", 1)
            sums[name] = float(value)
        else:
            lines.append(line)
    return lines, sums


def _same(deferred: CollectorRegistry, direct: CollectorRegistry) -> None:
    deferred_lines, deferred_sums = _exposition(deferred)
    direct_lines, direct_sums = _exposition(direct)
    assert deferred_lines == direct_lines
    assert deferred_sums == pytest.approx(direct_sums, rel=1e-12)


def test_bulk_counts_equal_per_call_counts_bucket_for_bucket() -> None:
    direct_registry, deferred_registry = CollectorRegistry(), CollectorRegistry()
    direct_counter, direct_histogram = _metrics(direct_registry)
    deferred_counter, deferred_histogram = _metrics(deferred_registry)
    deferred = DeferredCounts(flush_every=37)  # flushes part-way, and the rest at the end
    rng = random.Random(5)
    # Values on every bound, just past them, below the first and above the last.
    values = [*BUCKETS, *(b * 1.000001 for b in BUCKETS), 0.0, 1e-9, 7.5, 1e6]
    values += [rng.uniform(0, 6) for _ in range(500)]
    for value in values:
        status = rng.choice(["204", "404", "500"])
        route = rng.choice(["/a", "/b"])
        direct_counter.labels(status).inc()
        direct_histogram.labels(route).observe(value)
        deferred.inc(deferred_counter.labels(status))
        deferred.observe(deferred_histogram.labels(route), value)
    deferred.flush()
    _same(deferred_registry, direct_registry)
    # Flushing again adds nothing.
    deferred.flush()
    _same(deferred_registry, direct_registry)


def test_counts_wait_for_a_flush_then_arrive_whole() -> None:
    registry = CollectorRegistry()
    counter, histogram = _metrics(registry)
    deferred = DeferredCounts(flush_every=1000)
    for _ in range(10):
        deferred.inc(counter.labels("204"))
        deferred.observe(histogram.labels("/a"), 0.003)
    assert registry.get_sample_value("t_requests_total", {"status": "204"}) == 0.0
    deferred.flush()
    assert registry.get_sample_value("t_requests_total", {"status": "204"}) == 10.0
    labels = {"route": "/a", "le": "0.005"}
    assert registry.get_sample_value("t_latency_seconds_bucket", labels) == 10.0
    labels = {"route": "/a", "le": "0.0025"}
    assert registry.get_sample_value("t_latency_seconds_bucket", labels) == 0.0
    total = registry.get_sample_value("t_latency_seconds_sum", {"route": "/a"})
    assert total == pytest.approx(0.003 * 10)


def test_the_threshold_flushes_without_waiting_for_the_clock() -> None:
    registry = CollectorRegistry()
    counter, _ = _metrics(registry)
    deferred = DeferredCounts(flush_every=5)
    for _ in range(12):
        deferred.inc(counter.labels("204"))
    assert registry.get_sample_value("t_requests_total", {"status": "204"}) == 10.0
