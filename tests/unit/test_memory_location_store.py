"""What only the in-memory H3 store needs shown: the ring arithmetic is conservative, search
agrees with a brute-force scan, it works at the poles and pentagons, and it stays small.

The behaviour both adapters share is in tests/integration/test_location_stores.py.
"""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import h3.api.basic_int as h3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ridehail.kernel.geo import haversine_m, offset
from ridehail.locations import memory
from ridehail.locations.memory import (
    InMemoryLocationStore,
    conservative_edge_m,
    covered_radius_m,
    rings_for_radius,
)
from ridehail.locations.ports import LocationFix

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
FRESH_SINCE = NOW - timedelta(seconds=60)


def fix(driver_id: str, lat: float, lon: float, *, at_s: float = 0.0) -> LocationFix:
    return LocationFix(driver_id, lat, lon, NOW + timedelta(seconds=at_s))


# --- ring arithmetic ----------------------------------------------------------------------


@given(
    radius=st.floats(min_value=0, max_value=60_000),
    edge=st.floats(min_value=1, max_value=30_000),
)
def test_rings_for_radius_is_the_fewest_that_cover_it(radius: float, edge: float) -> None:
    rings = rings_for_radius(radius, edge)
    assert covered_radius_m(rings, edge) >= radius
    assert rings == 0 or covered_radius_m(rings - 1, edge) < radius


def test_edge_comes_from_the_cells_own_area() -> None:
    """Cells of one resolution differ in size; the pentagon is smaller than its neighbours."""
    pentagon = h3.get_pentagons(8)[0]
    hexagon = h3.latlng_to_cell(52.52, 13.405, 8)
    assert conservative_edge_m(pentagon) < conservative_edge_m(hexagon)
    average = h3.average_hexagon_edge_length(8, "m")
    assert 0.5 * average < conservative_edge_m(hexagon) < average


# --- brute force agreement ----------------------------------------------------------------

#: Places where the grid is awkward: a city, the antimeridian, the far north, a pentagon.
CENTRES = [
    (52.52, 13.405),
    (0.0, 179.95),
    (-33.92, 18.42),
    (78.2, 15.6),
    h3.cell_to_latlng(h3.get_pentagons(8)[3]),
]
BOX_M = 10_000  # drivers within ±10 km of the centre: a 20 km box

offsets = st.tuples(
    st.floats(min_value=-BOX_M, max_value=BOX_M), st.floats(min_value=-BOX_M, max_value=BOX_M)
)
reports = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=29),  # a small pool of ids, so drivers move
        offsets,
        st.integers(min_value=-120, max_value=0),  # seconds before NOW; older than -60 is stale
    ),
    max_size=60,
)


def latest_per_driver(fixes: list[LocationFix]) -> dict[str, LocationFix]:
    """The model of the live position: the newest fix wins, the first of equal ones."""
    live: dict[str, LocationFix] = {}
    for f in fixes:
        held = live.get(f.driver_id)
        if held is None or f.recorded_at > held.recorded_at:
            live[f.driver_id] = f
    return live


def brute_force(
    live: dict[str, LocationFix], lat: float, lon: float, radius: float, limit: int
) -> list[tuple[float, str]]:
    candidates = [
        (haversine_m(lat, lon, f.latitude, f.longitude), f.driver_id)
        for f in live.values()
        if f.recorded_at >= FRESH_SINCE
    ]
    return sorted(c for c in candidates if c[0] <= radius)[:limit]


def assert_same_ranking(actual: list[tuple[float, str]], expected: list[tuple[float, str]]) -> None:
    """Same distances in the same order; among equal distances any order of ids will do."""
    assert [d for d, _ in actual] == pytest.approx([d for d, _ in expected], abs=1e-6)
    assert len({i for _, i in actual}) == len(actual)
    for distance, driver_id in actual:
        assert driver_id in {i for d, i in expected if abs(d - distance) <= 1e-6}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    centre=st.sampled_from(CENTRES),
    resolution=st.sampled_from([7, 8, 9]),
    sent=reports,
    query=offsets,
    radius=st.floats(min_value=0, max_value=8_000),
    limit=st.integers(min_value=1, max_value=12),
)
async def test_nearest_matches_brute_force(
    centre: tuple[float, float],
    resolution: int,
    sent: list[tuple[int, tuple[float, float], int]],
    query: tuple[float, float],
    radius: float,
    limit: int,
) -> None:
    store = InMemoryLocationStore(h3_resolution=resolution)
    fixes = [
        fix(f"d{n}", *offset(*centre, north_m=north, east_m=east), at_s=at_s)
        for n, (north, east), at_s in sent
    ]
    await store.record_many(fixes)
    lat, lon = offset(*centre, north_m=query[0], east_m=query[1])
    found = await store.nearest(
        latitude=lat, longitude=lon, radius_m=radius, limit=limit, fresh_since=FRESH_SINCE
    )
    expected = brute_force(latest_per_driver(fixes), lat, lon, radius, limit)
    assert_same_ranking([(h.distance_m, h.driver_id) for h in found], expected)


# --- awkward places -----------------------------------------------------------------------


async def test_drivers_around_the_north_pole() -> None:
    store = InMemoryLocationStore()
    await store.record(fix("prime", 89.99, 0.0))  # ~1.1 km from the pole
    await store.record(fix("dateline", 89.99, 180.0))  # ~2.2 km from "prime"
    await store.record(fix("far", 89.9, 90.0))  # ~11 km from the pole
    found = await store.nearest(
        latitude=90.0, longitude=0.0, radius_m=5_000, limit=5, fresh_since=FRESH_SINCE
    )
    assert sorted(h.driver_id for h in found) == ["dateline", "prime"]
    assert [h.distance_m for h in found] == pytest.approx([1_112, 1_112], abs=2)
    from_prime = await store.nearest(
        latitude=89.99, longitude=0.0, radius_m=3_000, limit=5, fresh_since=FRESH_SINCE
    )
    assert [h.driver_id for h in from_prime] == ["prime", "dateline"]


async def test_drivers_all_around_a_pentagon() -> None:
    pentagon = h3.get_pentagons(8)[5]
    lat, lon = h3.cell_to_latlng(pentagon)
    store = InMemoryLocationStore()
    bearings = range(0, 360, 30)
    for degrees in bearings:
        north = 2_000 * math.cos(math.radians(degrees))
        east = 2_000 * math.sin(math.radians(degrees))
        await store.record(fix(f"b{degrees}", *offset(lat, lon, north_m=north, east_m=east)))
    found = await store.nearest(
        latitude=lat, longitude=lon, radius_m=2_100, limit=50, fresh_since=FRESH_SINCE
    )
    assert len(found) == len(bearings)


# --- bounds on the work -------------------------------------------------------------------


@pytest.fixture
def distance_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the haversine evaluations a search makes."""
    calls = [0]
    real: Callable[[float, float, float, float], float] = haversine_m

    def counting(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
        calls[0] += 1
        return real(lat1, lon1, lat2, lon2)

    monkeypatch.setattr(memory, "haversine_m", counting)
    return calls


async def test_nearest_does_not_scan_far_drivers(distance_calls: list[int]) -> None:
    store = InMemoryLocationStore()
    for n in range(2_000):  # a whole other city, 30 km away
        north, east = (n % 40) * 50.0, (n // 40) * 50.0
        await store.record(fix(f"far{n}", *offset(52.8, 13.405, north_m=north, east_m=east)))
    await store.record(fix("near", *offset(52.52, 13.405, north_m=300, east_m=0)))
    found = await store.nearest(
        latitude=52.52, longitude=13.405, radius_m=5_000, limit=5, fresh_since=FRESH_SINCE
    )
    assert [h.driver_id for h in found] == ["near"]
    assert distance_calls[0] == 1


async def test_search_stops_early_once_the_limit_is_certainly_met(
    distance_calls: list[int],
) -> None:
    store = InMemoryLocationStore()
    grid = [
        (north, east)
        for north in range(-10_000, 10_001, 250)
        for east in range(-10_000, 10_001, 250)
    ]
    for n, (north, east) in enumerate(grid):
        await store.record(fix(f"g{n}", *offset(52.52, 13.405, north_m=north, east_m=east)))
    found = await store.nearest(
        latitude=52.52, longitude=13.405, radius_m=10_000, limit=3, fresh_since=FRESH_SINCE
    )
    assert len(found) == 3
    assert found[0].distance_m < 1
    assert distance_calls[0] < len(grid) / 20


async def test_radius_is_capped() -> None:
    store = InMemoryLocationStore(max_radius_m=1_000)
    await store.record(fix("d1", *offset(52.52, 13.405, north_m=1_500, east_m=0)))
    found = await store.nearest(
        latitude=52.52, longitude=13.405, radius_m=5_000, limit=5, fresh_since=FRESH_SINCE
    )
    assert found == []


async def test_moving_driver_leaves_no_empty_cells_behind() -> None:
    store = InMemoryLocationStore()
    for step in range(50):
        await store.record(
            fix("d1", *offset(52.52, 13.405, north_m=step * 400, east_m=0), at_s=step)
        )
    assert len(store._cells) == 1
    await store.forget("d1")
    assert store._cells == {}
    assert store._live == {}


async def test_memory_per_driver_is_small() -> None:
    """The store's own footprint (not the caller's id strings) at city density."""
    count = 5_000
    ids = [f"drv_{n:08d}" for n in range(count)]
    fixes = [
        fix(i, *offset(52.52, 13.405, north_m=(n % 70) * 100.0, east_m=(n // 70) * 100.0))
        for n, i in enumerate(ids)
    ]
    store = InMemoryLocationStore()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await store.record_many(fixes)
        per_driver = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    assert per_driver <= 200
