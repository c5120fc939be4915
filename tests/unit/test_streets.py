"""The street graph, the generated city and road-network ETAs."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ridehail.kernel.geo import haversine_m, offset
from ridehail.streets import (
    DemandProfile,
    RoadClass,
    RoadNetworkEta,
    StreetGraph,
    TripSampler,
    generate_city,
)

ORIGIN = (60.17, 24.94)
NOON = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _graph(points: list[tuple[float, float]], edges: list[tuple[int, int, float]]) -> StreetGraph:
    """Edges (a, b, speed m/s) with great-circle lengths."""
    lat = np.array([p[0] for p in points])
    lon = np.array([p[1] for p in points])
    src = np.array([a for a, _, _ in edges], dtype=np.int64)
    dst = np.array([b for _, b, _ in edges], dtype=np.int64)
    n = len(points)
    length = np.array([haversine_m(*points[a % n], *points[b % n]) for a, b, _ in edges])
    return StreetGraph(
        lat=lat,
        lon=lon,
        src=src,
        dst=dst,
        length_m=length,
        speed_mps=np.array([s for *_, s in edges]),
    )


def _square() -> StreetGraph:
    """0 -> 1 -> 3 is short but slow; 0 -> 2 -> 3 is longer but fast; 3 -> 0 closes the loop."""
    p0 = ORIGIN
    p1 = offset(*p0, north_m=1000, east_m=0)
    p3 = offset(*p0, north_m=1000, east_m=1000)
    p2 = offset(*p0, north_m=-500, east_m=1500)
    return _graph(
        [p0, p1, p2, p3],
        [(0, 1, 5.0), (1, 3, 5.0), (0, 2, 25.0), (2, 3, 25.0), (3, 0, 10.0)],
    )


def test_route_takes_the_fastest_way_not_the_shortest() -> None:
    graph = _square()
    route = graph.route(0, 3)
    assert route is not None
    assert route.nodes == (0, 2, 3)
    legs = [haversine_m(*graph.point(a), *graph.point(b)) for a, b in ((0, 2), (2, 3))]
    assert route.length_m == pytest.approx(sum(legs))
    assert route.time_s == pytest.approx(sum(legs) / 25.0)
    slow = (haversine_m(*graph.point(0), *graph.point(1)) + 1000) / 5.0
    assert route.time_s < slow


def test_one_way_edges_are_one_way() -> None:
    graph = _square()
    back = graph.route(3, 1)  # 1 is reachable from 3 only through 0
    assert back is not None and back.nodes == (3, 0, 1)
    assert graph.route(1, 1) is not None


def test_unreachable_node_has_no_route_and_is_cut_as_an_island() -> None:
    p = [ORIGIN, offset(*ORIGIN, north_m=100, east_m=0), offset(*ORIGIN, north_m=5000, east_m=0)]
    graph = _graph(p, [(0, 1, 10.0), (1, 0, 10.0), (2, 0, 10.0)])
    assert graph.route(0, 2) is None
    main = graph.largest_component()
    assert main.node_count == 2 and main.edge_count == 2


def test_parallel_edges_keep_the_fastest() -> None:
    p = [ORIGIN, offset(*ORIGIN, north_m=1000, east_m=0)]
    graph = _graph(p, [(0, 1, 5.0), (0, 1, 20.0), (1, 0, 10.0)])
    route = graph.route(0, 1)
    assert route is not None and route.time_s == pytest.approx(route.length_m / 20.0)


def test_bad_graphs_are_refused() -> None:
    p = [ORIGIN, offset(*ORIGIN, north_m=100, east_m=0)]
    with pytest.raises(ValueError, match="does not exist"):
        _graph(p, [(0, 2, 10.0)])
    with pytest.raises(ValueError, match="positive"):
        _graph(p, [(0, 1, 0.0)])


def test_times_to_a_target_equal_times_from_each_origin() -> None:
    graph = generate_city(seed=3, width_m=3000, height_m=3000).graph
    to = graph.travel_times_to([5])[0]
    for origin in (0, 17, graph.node_count - 1):
        assert to[origin] == pytest.approx(graph.travel_times_from([origin])[0][5])


def test_the_generated_city_is_real_sized_connected_and_deterministic() -> None:
    city = generate_city(seed=7)
    graph = city.graph
    (south, west), (north, east) = city.bounds
    assert haversine_m(south, west, north, west) == pytest.approx(39_000, rel=0.01)
    assert haversine_m(south, west, south, east) == pytest.approx(25_000, rel=0.01)
    assert graph.node_count > 14_000  # a 250 m grid, less what the missing streets cut off
    # Strongly connected: every node reaches every other.
    assert np.isfinite(graph.travel_times_from([0])[0]).all()
    assert np.isfinite(graph.travel_times_to([0])[0]).all()
    again = generate_city(seed=7).graph
    assert np.array_equal(graph.lat, again.lat) and np.array_equal(graph.src, again.src)
    assert not np.array_equal(generate_city(seed=8).graph.src, graph.src)
    speeds = set(np.round(graph.speed_mps, 6))
    assert speeds == {round(c.speed_mps, 6) for c in RoadClass}
    assert city.hotspots[0].name == "downtown"
    for spot in city.hotspots:
        assert south < spot.point[0] < north and west < spot.point[1] < east


def test_a_long_trip_uses_the_faster_roads() -> None:
    graph = generate_city(seed=1).graph
    a = graph.nearest_node(offset(60.1699, 24.9384, north_m=-15_000, east_m=-10_000))
    b = graph.nearest_node(offset(60.1699, 24.9384, north_m=15_000, east_m=10_000))
    route = graph.route(a, b)
    assert route is not None
    average = route.length_m / route.time_s
    assert RoadClass.LOCAL.speed_mps < average < RoadClass.HIGHWAY.speed_mps


@settings(max_examples=40, deadline=None)
@given(
    st.floats(-12_000, 12_000), st.floats(-8_000, 8_000),
    st.floats(-12_000, 12_000), st.floats(-8_000, 8_000),
)  # fmt: skip
def test_road_eta_is_never_faster_than_the_straight_line_at_top_speed(
    n1: float, e1: float, n2: float, e2: float
) -> None:
    eta = RoadNetworkEta(_CITY.graph)
    a = offset(*_CITY.center, north_m=n1, east_m=e1)
    b = offset(*_CITY.center, north_m=n2, east_m=e2)
    (seconds,) = eta.times_s([(a, b)], at=NOON)
    assert seconds >= haversine_m(*a, *b) / RoadClass.HIGHWAY.speed_mps - 1e-6
    assert math.isfinite(seconds)


_CITY = generate_city(seed=2)


def test_road_eta_many_to_one_and_one_to_many_agree() -> None:
    eta = RoadNetworkEta(_CITY.graph, congestion=(2.0,) * 24)
    pickup = _CITY.center
    drivers = [offset(*pickup, north_m=400 * i, east_m=-300 * i) for i in range(1, 8)]
    many_to_one = asyncio.run(eta.travel_times_s([(d, pickup) for d in drivers], at=NOON))
    one_each = [eta.times_s([(d, pickup), (pickup, d)], at=NOON)[0] for d in drivers]
    assert many_to_one == pytest.approx(one_each)
    free = RoadNetworkEta(_CITY.graph).times_s([(drivers[3], pickup)], at=NOON)[0]
    # Congestion scales the road part only; the walk-up to the graph stays as it is.
    assert free < many_to_one[3] < 2 * free + 1e-9
    with pytest.raises(ValueError, match="24"):
        RoadNetworkEta(_CITY.graph, congestion=(1.0,) * 23)


def test_demand_has_two_peaks_and_is_reproducible() -> None:
    profile = DemandProfile(peak_per_min=100.0)
    assert profile.rate_per_min(8.0) == pytest.approx(100.0)
    assert profile.rate_per_min(17.5) == pytest.approx(100.0)
    assert profile.rate_per_min(12.5) < 0.5 * profile.rate_per_min(8.0)
    assert profile.rate_per_min(3.0) < profile.rate_per_min(12.5)
    peak = profile.arrivals(random.Random(5), start_h=7.5, minutes=60)
    midday = profile.arrivals(random.Random(5), start_h=12.0, minutes=60)
    # About 60 minutes x ~93/min around the morning peak; far fewer at midday.
    assert 4_500 < len(peak) < 6_500
    assert len(midday) < 0.6 * len(peak)
    assert peak == sorted(peak) and all(0 <= t < 3600 for t in peak)
    assert profile.arrivals(random.Random(5), start_h=7.5, minutes=60) == peak


def test_trip_ends_cluster_at_hotspots_and_stay_in_the_city() -> None:
    sampler = TripSampler(_CITY)
    rng = random.Random(11)
    trips = [sampler.trip(rng) for _ in range(2_000)]
    (south, west), (north, east) = _CITY.bounds
    downtown = _CITY.hotspots[0].point
    near_downtown = 0
    for a, b in trips:
        assert sampler.min_trip_m <= haversine_m(*a, *b) <= sampler.max_trip_m
        for lat, lon in (a, b):
            assert south <= lat <= north and west <= lon <= east
        near_downtown += haversine_m(*a, *downtown) < 3_000
    # Downtown (3 km around it is ~3 % of the city's area) holds far more than 3 % of starts.
    assert near_downtown / len(trips) > 0.15
    assert [sampler.trip(random.Random(3)) for _ in range(3)] == [
        sampler.trip(random.Random(3)) for _ in range(3)
    ]


def test_the_dispatcher_can_rank_by_road_time_over_the_generated_city() -> None:
    """A driver on the highway 1.5 km out reaches the pickup sooner than one 1 km away
    across local streets: road ETAs say so, the straight line says the opposite."""
    from ridehail.bootstrap import eta_provider
    from ridehail.dispatch import StraightLineEta
    from ridehail.settings import Settings

    road = eta_provider(Settings(dispatch_eta="road_network", road_network="generated:1"))
    assert isinstance(road, RoadNetworkEta)
    assert isinstance(eta_provider(Settings()), StraightLineEta)
    center = generate_city(seed=1).center
    on_highway = offset(*center, north_m=0, east_m=1_500)
    across_town = offset(*center, north_m=700, east_m=700)
    pairs = [(on_highway, center), (across_town, center)]
    highway_s, local_s = asyncio.run(road.travel_times_s(pairs, at=NOON))
    assert highway_s < local_s
    straight = asyncio.run(StraightLineEta().travel_times_s(pairs, at=NOON))
    assert straight[0] > straight[1]


def test_a_wandering_car_stays_within_its_time_budget_and_routes_add_up() -> None:
    graph = _CITY.graph
    start = graph.nearest_node(_CITY.center)
    for pick in (0.0, 0.5, 0.999):
        route = graph.wander(start, limit_s=120.0, pick=pick)
        assert route is not None and route.nodes[0] == start and route.nodes[-1] != start
        assert 0 < route.time_s <= 120.0
        times = graph.cumulative_times(route.nodes)
        assert times[0] == 0 and times[-1] == pytest.approx(route.time_s)
        assert (np.diff(times) > 0).all()
    long = graph.route(start, graph.nearest_node(offset(*_CITY.center, north_m=9000, east_m=0)))
    assert long is not None
    assert graph.cumulative_times(long.nodes)[-1] == pytest.approx(long.time_s)
