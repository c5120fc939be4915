"""Pickup-time estimates over a street graph: the dispatcher's EtaProvider port
(``ridehail.dispatch.eta``) answered by routing instead of a straight line.

Each point joins the graph at its nearest node, covering the gap in a straight line at
local-street speed. Many origins to few destinations (drivers to one pickup) are answered
with one Dijkstra per destination over the reversed graph; otherwise one per origin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ridehail.streets.graph import Point, RoadClass, StreetGraph

#: Seconds reported for a pair the graph cannot connect: never preferred, still finite.
UNREACHABLE_S = 24 * 3600.0


@dataclass(frozen=True)
class RoadNetworkEta:
    graph: StreetGraph
    #: Travel times are multiplied by this for the local hour (1.0: free flow all day).
    congestion: tuple[float, ...] = (1.0,) * 24
    access_speed_mps: float = RoadClass.LOCAL.speed_mps

    def __post_init__(self) -> None:
        if len(self.congestion) != 24 or min(self.congestion) <= 0:
            raise ValueError("congestion needs 24 positive hourly factors")

    async def travel_times_s(
        self, pairs: Sequence[tuple[Point, Point]], *, at: datetime
    ) -> list[float]:
        return self.times_s(pairs, at=at)

    def times_s(self, pairs: Sequence[tuple[Point, Point]], *, at: datetime) -> list[float]:
        if not pairs:
            return []
        origins, o_gap = self.graph.nearest_nodes([a for a, _ in pairs])
        targets, t_gap = self.graph.nearest_nodes([b for _, b in pairs])
        unique_o = np.unique(origins)
        unique_t = np.unique(targets)
        if len(unique_t) <= len(unique_o):
            table = self.graph.travel_times_to(unique_t.tolist())
            rows = np.searchsorted(unique_t, targets)
            road = table[rows, origins]
        else:
            table = self.graph.travel_times_from(unique_o.tolist())
            rows = np.searchsorted(unique_o, origins)
            road = table[rows, targets]
        factor = self.congestion[at.hour]
        access = (o_gap + t_gap) / self.access_speed_mps
        return [
            float(r * factor + g) if math.isfinite(r) else UNREACHABLE_S
            for r, g in zip(road, access, strict=True)
        ]
