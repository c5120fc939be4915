"""A directed street graph and travel-time routing over it.

Nodes are points (latitude, longitude); edges carry a length in metres and a road class
with its speed. Routing is Dijkstra over travel time (scipy's compiled csgraph), and the
nearest node to a point comes from a k-d tree on a local metric projection. The graph is
immutable once built, so one instance can serve the simulator and the dispatcher's ETAs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from ridehail.kernel.geo import EARTH_RADIUS_M

#: A (latitude, longitude) pair in degrees.
Point = tuple[float, float]


class RoadClass(Enum):
    """Road classes with assumed free-flow speeds in km/h (typical urban limits, assumed)."""

    LOCAL = 30.0
    ARTERIAL = 50.0
    HIGHWAY = 80.0

    @property
    def speed_mps(self) -> float:
        return self.value / 3.6


@dataclass(frozen=True, slots=True)
class Route:
    nodes: tuple[int, ...]
    length_m: float
    time_s: float


@dataclass(frozen=True)
class StreetGraph:
    """Nodes ``0..n-1`` at ``lat``/``lon``; edge ``k`` goes ``src[k] -> dst[k]``."""

    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    src: NDArray[np.int64]
    dst: NDArray[np.int64]
    length_m: NDArray[np.float64]
    speed_mps: NDArray[np.float64]
    _times: csr_matrix = field(init=False, repr=False)
    _lengths: csr_matrix = field(init=False, repr=False)
    _reverse: csr_matrix = field(init=False, repr=False)
    _tree: cKDTree = field(init=False, repr=False)
    _origin: Point = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.lat)
        if len(self.lon) != n:
            raise ValueError("lat and lon must have the same length")
        m = len(self.src)
        if not (len(self.dst) == len(self.length_m) == len(self.speed_mps) == m):
            raise ValueError("edge arrays must have the same length")
        if m and (self.src.min() < 0 or max(self.src.max(), self.dst.max()) >= n):
            raise ValueError("an edge refers to a node that does not exist")
        if m and (self.length_m.min() <= 0 or self.speed_mps.min() <= 0):
            raise ValueError("edge lengths and speeds must be positive")
        times = self.length_m / self.speed_mps
        # Parallel edges: csr_matrix would add them up; keep the fastest of each pair.
        order = np.lexsort((times, self.dst, self.src))
        src, dst = self.src[order], self.dst[order]
        first = np.ones(m, dtype=bool)
        first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
        keep = order[first]
        shape = (n, n)
        object.__setattr__(
            self, "_times", csr_matrix((times[keep], (self.src[keep], self.dst[keep])), shape)
        )
        object.__setattr__(self, "_reverse", self._times.T.tocsr())
        object.__setattr__(
            self,
            "_lengths",
            csr_matrix((self.length_m[keep], (self.src[keep], self.dst[keep])), shape),
        )
        origin = (float(np.mean(self.lat)), float(np.mean(self.lon))) if n else (0.0, 0.0)
        object.__setattr__(self, "_origin", origin)
        object.__setattr__(self, "_tree", cKDTree(self._project(self.lat, self.lon)))

    @property
    def node_count(self) -> int:
        return len(self.lat)

    @property
    def edge_count(self) -> int:
        return len(self.src)

    def point(self, node: int) -> Point:
        return float(self.lat[node]), float(self.lon[node])

    def _project(self, lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.float64]:
        """Equirectangular metres around the graph's centre: exact enough within a city."""
        lat0, lon0 = self._origin
        x = np.radians(lon - lon0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
        y = np.radians(lat - lat0) * EARTH_RADIUS_M
        return np.column_stack((x, y))

    def nearest_nodes(
        self, points: Sequence[Point]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """The nearest node of each point, and its straight-line distance in metres."""
        if not points:
            return np.empty(0, dtype=np.int64), np.empty(0)
        arr = np.asarray(points, dtype=np.float64)
        distances, nodes = self._tree.query(self._project(arr[:, 0], arr[:, 1]))
        return nodes.astype(np.int64), distances

    def nearest_node(self, point: Point) -> int:
        return int(self.nearest_nodes([point])[0][0])

    def travel_times_from(
        self, sources: Sequence[int], *, limit_s: float = math.inf
    ) -> NDArray[np.float64]:
        """Seconds from each source to every node (``inf`` where unreachable or past
        ``limit_s``): one row per source."""
        result = dijkstra(self._times, directed=True, indices=list(sources), limit=limit_s)
        return np.atleast_2d(result)

    def travel_times_to(
        self, targets: Sequence[int], *, limit_s: float = math.inf
    ) -> NDArray[np.float64]:
        """Seconds from every node to each target: one row per target (Dijkstra over the
        reversed edges, so many origins to one pickup cost one search)."""
        result = dijkstra(self._reverse, directed=True, indices=list(targets), limit=limit_s)
        return np.atleast_2d(result)

    def wander(self, a: int, *, limit_s: float, pick: float) -> Route | None:
        """A route from ``a`` to one of the nodes reachable within ``limit_s`` (the one at
        position ``pick`` in [0, 1) of their list: the caller's random draw). A bounded
        search: an idle car cruising its neighbourhood costs little."""
        times, pred = dijkstra(
            self._times, directed=True, indices=a, limit=limit_s, return_predecessors=True
        )
        reachable = np.flatnonzero(np.isfinite(times))
        reachable = reachable[reachable != a]
        if len(reachable) == 0:
            return None
        b = int(reachable[min(len(reachable) - 1, int(pick * len(reachable)))])
        return self._path(a, b, times, pred)

    def route(self, a: int, b: int) -> Route | None:
        """The fastest route from node ``a`` to node ``b``; None if there is none."""
        times, pred = dijkstra(self._times, directed=True, indices=a, return_predecessors=True)
        if not math.isfinite(times[b]):
            return None
        return self._path(a, b, times, pred)

    def _path(self, a: int, b: int, times: NDArray[np.float64], pred: NDArray[np.int32]) -> Route:
        path = [b]
        while path[-1] != a:
            path.append(int(pred[path[-1]]))
        path.reverse()
        length = sum(float(self._lengths[u, v]) for u, v in itertools.pairwise(path))
        return Route(nodes=tuple(path), length_m=length, time_s=float(times[b]))

    def cumulative_times(self, nodes: Sequence[int]) -> NDArray[np.float64]:
        """Seconds from the first node of a route to each of its nodes (0 first)."""
        if len(nodes) < 2:
            return np.zeros(len(nodes))
        path = np.asarray(nodes)
        legs = np.asarray(self._times[path[:-1], path[1:]]).ravel()
        return np.concatenate(([0.0], np.cumsum(legs)))

    def largest_component(self) -> StreetGraph:
        """The subgraph of the largest strongly connected component (every node reachable
        from every other), renumbered; a generated or imported map may have islands."""
        _, labels = connected_components(self._times, directed=True, connection="strong")
        biggest = np.bincount(labels).argmax()
        keep = labels == biggest
        if keep.all():
            return self
        renumber = np.full(self.node_count, -1, dtype=np.int64)
        renumber[keep] = np.arange(int(keep.sum()))
        edges = keep[self.src] & keep[self.dst]
        return StreetGraph(
            lat=self.lat[keep],
            lon=self.lon[keep],
            src=renumber[self.src[edges]],
            dst=renumber[self.dst[edges]],
            length_m=self.length_m[edges],
            speed_mps=self.speed_mps[edges],
        )
