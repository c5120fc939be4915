"""A generated city the size of a real one: a grid of local streets, faster arterials every
couple of kilometres, two highways through the centre, some streets missing or one-way, and
a few hotspots where trips start and end more often. Deterministic for a seed.

The default is about 25 x 39 km (the area of a large European capital region), centred on
Helsinki's coordinates so that the rest of the project's examples fall inside it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from ridehail.kernel.geo import EARTH_RADIUS_M, offset
from ridehail.streets.graph import Point, RoadClass, StreetGraph

DEFAULT_CENTER: Point = (60.1699, 24.9384)


@dataclass(frozen=True, slots=True)
class Hotspot:
    name: str
    point: Point
    #: Relative share of trip ends drawn around this hotspot.
    weight: float
    #: Standard deviation of the trip ends around it, in metres.
    spread_m: float


@dataclass(frozen=True)
class City:
    graph: StreetGraph
    hotspots: tuple[Hotspot, ...]
    center: Point
    width_m: float
    height_m: float

    @property
    def bounds(self) -> tuple[Point, Point]:
        """(south-west, north-east) corners."""
        south_west = offset(*self.center, north_m=-self.height_m / 2, east_m=-self.width_m / 2)
        north_east = offset(*self.center, north_m=self.height_m / 2, east_m=self.width_m / 2)
        return south_west, north_east


_HOTSPOT_NAMES = ("downtown", "central station", "university", "harbour", "mall", "airport")


def generate_city(
    *,
    seed: int = 1,
    width_m: float = 25_000.0,
    height_m: float = 39_000.0,
    center: Point = DEFAULT_CENTER,
    block_m: float = 250.0,
    arterial_every: int = 8,
    missing_share: float = 0.08,
    one_way_share: float = 0.05,
) -> City:
    """The city for ``seed``. Local streets every ``block_m``; every ``arterial_every``-th
    street is an arterial; the middle row and column are highways. ``missing_share`` of the
    local street segments do not exist (parks, rails, water) and ``one_way_share`` are one
    way; what is left is cut to its largest strongly connected part."""
    if block_m <= 0 or width_m < block_m or height_m < block_m:
        raise ValueError("the city must be at least one block wide and high")
    if not (0 <= missing_share < 0.5 and 0 <= one_way_share < 0.5):
        raise ValueError("missing_share and one_way_share must be in [0, 0.5)")
    rng = random.Random(seed)  # noqa: S311 - a reproducible city, not a secret
    cols = int(width_m // block_m) + 1
    rows = int(height_m // block_m) + 1
    x0, y0 = -(cols - 1) * block_m / 2, -(rows - 1) * block_m / 2
    lat = np.empty(rows * cols)
    lon = np.empty(rows * cols)
    for r in range(rows):
        for c in range(cols):
            # Streets are not ruled lines: nudge each crossing by up to a tenth of a block.
            north = y0 + r * block_m + rng.uniform(-0.1, 0.1) * block_m
            east = x0 + c * block_m + rng.uniform(-0.1, 0.1) * block_m
            lat[r * cols + c], lon[r * cols + c] = offset(*center, north_m=north, east_m=east)

    def road(index: int, count: int) -> RoadClass:
        if index == count // 2:
            return RoadClass.HIGHWAY
        if index % arterial_every == 0:
            return RoadClass.ARTERIAL
        return RoadClass.LOCAL

    src: list[int] = []
    dst: list[int] = []
    speed: list[float] = []

    def link(a: int, b: int, cls: RoadClass) -> None:
        if cls is RoadClass.LOCAL:
            draw = rng.random()
            if draw < missing_share:
                return
            if draw < missing_share + one_way_share:
                a, b = (a, b) if rng.random() < 0.5 else (b, a)
                src.append(a)
                dst.append(b)
                speed.append(cls.speed_mps)
                return
        src.extend((a, b))
        dst.extend((b, a))
        speed.extend((cls.speed_mps, cls.speed_mps))

    for r in range(rows):
        for c in range(cols):
            here = r * cols + c
            if c + 1 < cols:  # along the row: an east-west street
                link(here, here + 1, road(r, rows))
            if r + 1 < rows:  # along the column: a north-south street
                link(here, here + cols, road(c, cols))
    src_arr = np.asarray(src, dtype=np.int64)
    dst_arr = np.asarray(dst, dtype=np.int64)
    length = _lengths(lat, lon, src_arr, dst_arr)
    graph = StreetGraph(
        lat=lat,
        lon=lon,
        src=src_arr,
        dst=dst_arr,
        length_m=length,
        speed_mps=np.asarray(speed, dtype=np.float64),
    ).largest_component()
    return City(
        graph=graph,
        hotspots=_hotspots(rng, center, width_m, height_m),
        center=center,
        width_m=width_m,
        height_m=height_m,
    )


def _lengths(lat: np.ndarray, lon: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Great-circle length of each edge, vectorised."""
    p1, p2 = np.radians(lat[src]), np.radians(lat[dst])
    dl = np.radians(lon[dst] - lon[src])
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    result: np.ndarray = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    return result


def _hotspots(
    rng: random.Random, center: Point, width_m: float, height_m: float
) -> tuple[Hotspot, ...]:
    """Downtown at the centre, the rest spread out: the airport far out, the others within
    the inner half of the city."""
    spots = [Hotspot("downtown", center, weight=4.0, spread_m=1_500.0)]
    for name in _HOTSPOT_NAMES[1:]:
        far = name == "airport"
        reach = 0.45 if far else 0.25
        angle = rng.uniform(0, 2 * math.pi)
        north = math.sin(angle) * height_m * reach * rng.uniform(0.6, 1.0)
        east = math.cos(angle) * width_m * reach * rng.uniform(0.6, 1.0)
        spots.append(
            Hotspot(
                name,
                offset(*center, north_m=north, east_m=east),
                weight=1.0 if far else rng.uniform(1.0, 2.0),
                spread_m=800.0 if far else 1_000.0,
            )
        )
    return tuple(spots)
