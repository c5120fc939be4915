"""Simulated drivers: where they are (moving along streets at road speeds), what they are
doing, and what they decide. Pure state and decisions; the engine does the talking.

A driver's day: online from ``joins_s`` until ``leaves_s`` (then offline once idle);
idle, they wait or cruise their neighbourhood; offered a ride, they think for a few
seconds, then accept with their own probability; on the way to a pickup a few give the
ride back; at the pickup the rider takes a moment to board; then the trip.
"""

from __future__ import annotations

import bisect
import enum
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ridehail.streets import Point, StreetGraph


class Phase(enum.Enum):
    OFF = "off"  # not yet on shift, or gone home
    IDLE = "idle"
    TO_PICKUP = "to_pickup"
    AT_PICKUP = "at_pickup"
    ON_TRIP = "on_trip"


@dataclass(frozen=True, slots=True)
class Behaviour:
    """The population's habits (each driver draws their own from these)."""

    accept_low: float = 0.7
    accept_high: float = 0.98
    reaction_s: tuple[float, float] = (2.0, 8.0)
    give_back_share: float = 0.02
    cruise_share: float = 0.5
    cruise_limit_s: float = 180.0
    wait_s: tuple[float, float] = (30.0, 180.0)
    boarding_s: tuple[float, float] = (20.0, 90.0)
    late_join_share: float = 0.15
    early_leave_share: float = 0.1


@dataclass
class Leg:
    """Driving along ``nodes`` from ``start_s`` (simulated seconds)."""

    nodes: tuple[int, ...]
    start_s: float
    offsets_s: list[float]

    @property
    def end_s(self) -> float:
        return self.start_s + self.offsets_s[-1]


@dataclass
class Driver:
    index: int
    rng: random.Random
    node: int
    accept_p: float
    joins_s: float
    leaves_s: float
    driver_id: str = ""
    token: str = ""
    phase: Phase = Phase.OFF
    leg: Leg | None = None
    idle_until_s: float = 0.0
    ride_id: str | None = None
    pickup_node: int | None = None
    dropoff_node: int | None = None
    board_until_s: float = 0.0
    #: When (simulated) this driver will give the accepted ride back; None: they won't.
    give_back_s: float | None = None
    #: An API call for this driver is in flight: make no new decision meanwhile.
    busy: bool = False
    #: A location report is still on its way: the next one waits (no pile-up when the
    #: service is slow).
    reporting: bool = False
    #: Opening the stream again is under way / not before this simulated time.
    reopening: bool = False
    reopen_at_s: float = 0.0
    offers_seen: set[str] = field(default_factory=set)
    last_report: Point | None = None

    def position(self, graph: StreetGraph, now_s: float) -> Point:
        leg = self.leg
        if leg is None:
            return graph.point(self.node)
        t = now_s - leg.start_s
        offsets = leg.offsets_s
        if t >= offsets[-1]:
            return graph.point(leg.nodes[-1])
        if t <= 0:
            return graph.point(leg.nodes[0])
        i = bisect.bisect_right(offsets, t) - 1
        a, b = graph.point(leg.nodes[i]), graph.point(leg.nodes[i + 1])
        span = offsets[i + 1] - offsets[i]
        f = (t - offsets[i]) / span if span > 0 else 1.0
        return a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f

    def arrived(self, now_s: float) -> bool:
        return self.leg is not None and now_s >= self.leg.end_s

    def finish_leg(self) -> None:
        if self.leg is not None:
            self.node = self.leg.nodes[-1]
        self.leg = None

    def drive(self, graph: StreetGraph, nodes: tuple[int, ...], now_s: float) -> None:
        """Start along ``nodes`` from wherever the car is now (its current leg ends where it
        stands: the nearest node passed)."""
        if self.leg is not None:
            self.node = self._node_now(now_s)
            self.leg = None
        if len(nodes) < 2:
            return
        offsets = graph.cumulative_times(nodes).tolist()
        self.leg = Leg(nodes=nodes, start_s=now_s, offsets_s=offsets)

    def _node_now(self, now_s: float) -> int:
        leg = self.leg
        assert leg is not None
        i = bisect.bisect_right(leg.offsets_s, now_s - leg.start_s) - 1
        return leg.nodes[max(0, min(i, len(leg.nodes) - 1))]

    def node_now(self, now_s: float) -> int:
        return self._node_now(now_s) if self.leg is not None else self.node


def new_driver(
    index: int, *, seed: int, node: int, behaviour: Behaviour, duration_s: float
) -> Driver:
    """Driver ``index`` of the run seeded ``seed``: the same habits every time."""
    rng = random.Random(f"{seed}:driver:{index}")  # noqa: S311 - a seeded simulation
    joins = rng.uniform(0, duration_s * 0.5) if rng.random() < behaviour.late_join_share else 0.0
    leaves = (
        rng.uniform(duration_s * 0.5, duration_s)
        if rng.random() < behaviour.early_leave_share
        else float("inf")
    )
    return Driver(
        index=index,
        rng=rng,
        node=node,
        accept_p=rng.uniform(behaviour.accept_low, behaviour.accept_high),
        joins_s=joins,
        leaves_s=leaves,
    )


def idle_plan(
    driver: Driver, graph: StreetGraph, behaviour: Behaviour, now_s: float
) -> dict[str, Any]:
    """What an idle driver does next: wait where they are for a while, or cruise to a
    nearby spot. Returns what was decided (for tests)."""
    if driver.rng.random() < behaviour.cruise_share:
        route = graph.wander(
            driver.node_now(now_s), limit_s=behaviour.cruise_limit_s, pick=driver.rng.random()
        )
        if route is not None:
            driver.drive(graph, route.nodes, now_s)
            driver.idle_until_s = driver.leg.end_s if driver.leg else now_s
            return {"cruise": route.nodes[-1]}
    driver.finish_leg()
    driver.idle_until_s = now_s + driver.rng.uniform(*behaviour.wait_s)
    return {"wait_until": driver.idle_until_s}


def spread(graph: StreetGraph, points: list[Point]) -> list[int]:
    nodes, _ = graph.nearest_nodes(points)
    return [int(n) for n in np.asarray(nodes)]
