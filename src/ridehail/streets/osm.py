"""A street graph from a real OpenStreetMap extract (``.osm.pbf``), read with pyrosm.

The drivable network is pyrosm's ``driving`` filter (OSMnx's ``drive``: public roads a car
may use, ``access=no`` and the like left out), split at every node so that ways connect
where they share one. What this module assumes on top of the data, stated once:

* **Direction.** ``oneway=yes|true|1`` is one way along the way's drawing order,
  ``oneway=-1|reverse`` against it; anything else (``no``, missing, ``reversible``,
  ``alternating``: a direction that changes by the hour) is two-way. Without a ``oneway``
  tag, ``highway=motorway``/``motorway_link`` and ``junction=roundabout``/``circular`` are
  one way (OSM's implied oneway); an explicit ``oneway=no`` still wins.
* **Speed.** The ``maxspeed`` tag when it parses (see :func:`parse_maxspeed`: km/h by
  default, ``mph`` and ``knots`` converted, the lowest of ``;``-separated values), else by
  ``highway`` class in km/h (assumed typical free-flow speeds, not measured): motorway 100,
  trunk 80, primary 60, secondary 50, tertiary 40, unclassified and residential 30, service
  20, living_street 10; a ``*_link`` like its road; any other class 30. Traffic, turn costs
  and ``maxspeed:forward``/``:backward`` are not modelled.
* **Length.** The segment length pyrosm measures (metres), else the great-circle distance
  between its two nodes; at least 0.1 m (two nodes drawn at one spot).
* **Extent.** The largest strongly connected component, so every node reaches every other.

pyrosm (and through it geopandas and pandas) is imported only when a file is loaded: it
is the optional extra ``ridehail[osm]``, and ``import ridehail.streets`` stays light.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ridehail.kernel.geo import EARTH_RADIUS_M
from ridehail.streets.city import City, Hotspot
from ridehail.streets.graph import StreetGraph

#: Assumed free-flow speeds (km/h) by ``highway`` class when ``maxspeed`` does not parse.
HIGHWAY_SPEED_KMH: dict[str, float] = {
    "motorway": 100.0,
    "trunk": 80.0,
    "primary": 60.0,
    "secondary": 50.0,
    "tertiary": 40.0,
    "unclassified": 30.0,
    "residential": 30.0,
    "living_street": 10.0,
    "service": 20.0,
}
DEFAULT_SPEED_KMH = 30.0
MIN_LENGTH_M = 0.1

_FORWARD = frozenset({"yes", "true", "1"})
_BACKWARD = frozenset({"-1", "reverse"})
_IMPLIED_ONEWAY_HIGHWAYS = frozenset({"motorway", "motorway_link"})
_IMPLIED_ONEWAY_JUNCTIONS = frozenset({"roundabout", "circular"})

_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)\s*(km/h|kmh|kph|mph|knots)?$")
_UNIT_KMH = {None: 1.0, "km/h": 1.0, "kmh": 1.0, "kph": 1.0, "mph": 1.609344, "knots": 1.852}
#: Country-coded implicit limits that mean the same everywhere (``FI:urban``, ``DE:zone30``).
#: ``rural`` and ``motorway`` differ too much by country: those fall back to the class.
_ZONE = re.compile(r"^[a-z]{2}(?:-[a-z0-9]+)?:(?:zone:?(\d+)|(urban)|(living_street))$")
_MAX_KMH = 300.0


def parse_maxspeed(value: object) -> float | None:
    """A ``maxspeed`` tag in km/h, or None when it does not say a usable number.

    ``"50"``, ``"50 km/h"``, ``"50kmh"``, ``"30 mph"``, ``"10 knots"``, ``"50;30"`` (the
    lowest), ``"walk"`` (6), ``"FI:urban"`` (50), ``"DE:zone30"``/``"DE:zone:30"`` (30),
    ``"XX:living_street"`` (20). ``"none"``, ``"signals"``, ``"variable"``, ``"FI:rural"``,
    zero, negative or above 300 km/h: None.
    """
    if not isinstance(value, str):
        return None
    speeds = [s for part in value.split(";") if (s := _one_maxspeed(part)) is not None]
    return min(speeds) if speeds else None


def _one_maxspeed(text: str) -> float | None:
    text = text.strip().lower()
    if text == "walk":
        return 6.0
    if match := _NUMBER.match(text):
        kmh = float(match.group(1)) * _UNIT_KMH[match.group(2)]
    elif zone := _ZONE.match(text):
        zone_kmh, urban, _living = zone.groups()
        kmh = float(zone_kmh) if zone_kmh else 50.0 if urban else 20.0
    else:
        return None
    return kmh if 0 < kmh <= _MAX_KMH else None


def highway_speed_kmh(highway: object) -> float:
    """The assumed speed of a ``highway`` class; ``*_link`` like its road."""
    if not isinstance(highway, str):
        return DEFAULT_SPEED_KMH
    road = highway.strip().lower().removesuffix("_link")
    return HIGHWAY_SPEED_KMH.get(road, DEFAULT_SPEED_KMH)


def direction(oneway: object, highway: object = None, junction: object = None) -> int:
    """+1 one way along the drawing, -1 one way against it, 0 both ways."""
    tag = oneway.strip().lower() if isinstance(oneway, str) else ""
    if tag in _FORWARD:
        return 1
    if tag in _BACKWARD:
        return -1
    if tag:  # "no", "reversible", "alternating", anything else stated
        return 0
    if isinstance(highway, str) and highway in _IMPLIED_ONEWAY_HIGHWAYS:
        return 1
    if isinstance(junction, str) and junction in _IMPLIED_ONEWAY_JUNCTIONS:
        return 1
    return 0


def load_osm(path: Path | str) -> StreetGraph:
    """The drivable street graph of an ``.osm.pbf`` file (module docstring: assumptions).

    Raises FileNotFoundError for a missing file, ModuleNotFoundError (with the install
    hint) without pyrosm, and ValueError when the file has no drivable roads."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no OpenStreetMap extract at {path}")
    try:
        import pyrosm
    except ModuleNotFoundError as exc:  # pragma: no cover - the dev install has it
        raise ModuleNotFoundError(
            "reading OpenStreetMap extracts needs pyrosm: pip install 'ridehail[osm]'"
        ) from exc
    network = pyrosm.OSM(str(path)).get_network(
        network_type="driving", nodes=True, extra_attributes=["junction"]
    )
    if network is None:
        raise ValueError(f"{path} has no drivable roads")
    nodes, edges = network
    return _graph_from_frames(nodes, edges, source=path)


def _column(frame: Any, name: str) -> list[object]:
    """A column as plain Python values (None where missing or NaN)."""
    if name not in frame.columns:
        return [None] * len(frame)
    return [v if isinstance(v, str) else None for v in frame[name].tolist()]


def _graph_from_frames(nodes: Any, edges: Any, *, source: Path) -> StreetGraph:
    """pyrosm's node and segment frames (``id``/``lat``/``lon``; ``u``/``v``/tags) to a
    StreetGraph, cut to its largest strongly connected component."""
    if edges is None or nodes is None or len(edges) == 0:
        raise ValueError(f"{source} has no drivable roads")
    u = edges["u"].to_numpy(dtype=np.int64)
    v = edges["v"].to_numpy(dtype=np.int64)
    node_ids = nodes["id"].to_numpy(dtype=np.int64)
    order = np.argsort(node_ids, kind="stable")
    sorted_ids = node_ids[order]
    node_lat = nodes["lat"].to_numpy(dtype=np.float64)[order]
    node_lon = nodes["lon"].to_numpy(dtype=np.float64)[order]

    def index(ids: NDArray[np.int64]) -> NDArray[np.int64]:
        pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        return np.where(sorted_ids[pos] == ids, pos, -1).astype(np.int64)

    iu, iv = index(u), index(v)
    usable = (iu >= 0) & (iv >= 0) & (iu != iv)  # a segment with a known node at each end

    highway = _column(edges, "highway")
    speed_cache: dict[tuple[object, object], float] = {}
    speed_kmh = np.empty(len(edges))
    for k, key in enumerate(zip(_column(edges, "maxspeed"), highway, strict=True)):
        if key not in speed_cache:
            speed_cache[key] = parse_maxspeed(key[0]) or highway_speed_kmh(key[1])
        speed_kmh[k] = speed_cache[key]
    heading = np.array(
        [
            direction(o, h, j)
            for o, h, j in zip(
                _column(edges, "oneway"), highway, _column(edges, "junction"), strict=True
            )
        ],
        dtype=np.int64,
    )

    lat1, lon1 = node_lat[np.maximum(iu, 0)], node_lon[np.maximum(iu, 0)]
    lat2, lon2 = node_lat[np.maximum(iv, 0)], node_lon[np.maximum(iv, 0)]
    measured = (
        edges["length"].to_numpy(dtype=np.float64, na_value=np.nan)
        if "length" in edges.columns
        else np.full(len(edges), np.nan)
    )
    length = np.where(
        np.isfinite(measured) & (measured > 0), measured, _haversine(lat1, lon1, lat2, lon2)
    )
    length = np.maximum(length, MIN_LENGTH_M)

    # Renumber the nodes that some usable segment touches: 0..n-1.
    used = np.unique(np.concatenate((iu[usable], iv[usable])))
    if len(used) == 0:
        raise ValueError(f"{source} has no drivable roads")
    renumber = np.full(len(sorted_ids), -1, dtype=np.int64)
    renumber[used] = np.arange(len(used))
    a, b = renumber[iu[usable]], renumber[iv[usable]]
    seg_len, seg_speed, seg_dir = length[usable], speed_kmh[usable] / 3.6, heading[usable]
    along, against = seg_dir >= 0, seg_dir <= 0
    return StreetGraph(
        lat=node_lat[used],
        lon=node_lon[used],
        src=np.concatenate((a[along], b[against])),
        dst=np.concatenate((b[along], a[against])),
        length_m=np.concatenate((seg_len[along], seg_len[against])),
        speed_mps=np.concatenate((seg_speed[along], seg_speed[against])),
    ).largest_component()


def _haversine(
    lat1: NDArray[np.float64],
    lon1: NDArray[np.float64],
    lat2: NDArray[np.float64],
    lon2: NDArray[np.float64],
) -> NDArray[np.float64]:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (
        np.sin((p2 - p1) / 2) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    )
    result: NDArray[np.float64] = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    return result


def city_from_osm(path: Path | str, *, hotspot_count: int = 5) -> City:
    """The City of an OpenStreetMap extract (see :func:`city_from_graph`)."""
    return city_from_graph(load_osm(path), hotspot_count=hotspot_count)


def city_from_graph(graph: StreetGraph, *, hotspot_count: int = 5) -> City:
    """A City around a real graph: centred on the mean of its nodes, the box wide and high
    enough to hold every node, and hotspots at the densest areas of nodes (intersections and
    short blocks cluster where a city is busiest; an assumption, not trip data).

    The hotspots come from a grid of about ten cells across the longer side (at least
    200 m): the cells with the most nodes, no two adjacent, each placed at the mean of its
    nodes with a weight by its count. Deterministic: ties go to the lower cell."""
    if graph.node_count == 0:
        raise ValueError("an empty graph has no city")
    lat0, lon0 = float(np.mean(graph.lat)), float(np.mean(graph.lon))
    x = np.radians(graph.lon - lon0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    y = np.radians(graph.lat - lat0) * EARTH_RADIUS_M
    # A little margin so that nodes on the edge stay strictly inside after rounding.
    width_m = max(2 * float(np.abs(x).max()), 1.0) * 1.001
    height_m = max(2 * float(np.abs(y).max()), 1.0) * 1.001
    return City(
        graph=graph,
        hotspots=_dense_hotspots(graph, x, y, hotspot_count),
        center=(lat0, lon0),
        width_m=width_m,
        height_m=height_m,
    )


def _dense_hotspots(
    graph: StreetGraph, x: NDArray[np.float64], y: NDArray[np.float64], count: int
) -> tuple[Hotspot, ...]:
    extent = max(float(np.ptp(x)), float(np.ptp(y)))
    cell = max(200.0, extent / 10)
    col = np.floor((x - x.min()) / cell).astype(np.int64)
    row = np.floor((y - y.min()) / cell).astype(np.int64)
    cols = int(col.max()) + 1
    key = row * cols + col
    cells, counts = np.unique(key, return_counts=True)
    ranked = cells[np.lexsort((cells, -counts))]  # most nodes first, then the lower cell
    by_cell = dict(zip(cells.tolist(), counts.tolist(), strict=True))
    chosen: list[int] = []
    for c in ranked.tolist():
        if len(chosen) == count:
            break
        r, q = divmod(c, cols)
        if all(max(abs(r - r2), abs(q - q2)) > 1 for r2, q2 in (divmod(o, cols) for o in chosen)):
            chosen.append(c)
    top = by_cell[chosen[0]] if chosen else 1
    spots = []
    for rank, c in enumerate(chosen):
        members = key == c
        name = "downtown" if rank == 0 else f"dense area {rank + 1}"
        point = (float(graph.lat[members].mean()), float(graph.lon[members].mean()))
        weight = 4.0 * by_cell[c] / top
        spots.append(Hotspot(name, point, weight=weight, spread_m=cell / 2))
    return tuple(spots)
