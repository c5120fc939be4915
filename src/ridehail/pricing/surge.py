"""Surge maths. Pure: counts in, Decimal multipliers out (no I/O, no framework).

Per H3 cell, over the last window:

* **demand** - rides requested with their pickup in the cell;
* **supply** - drivers who are available, not on a ride, and whose live position (fresh)
  lies in the cell.

**Smoothing.** A cell's ratio is taken over its k=1 disk (itself and its six neighbours),
each neighbour weighted ``neighbour_weight``::

    ratio = (d_cell + w x sum(d_neighbours)) / max(1, s_cell + w x sum(s_neighbours))

so that a busy block next to idle drivers a few hundred metres away does not surge, and
a lone request in a cell with no driver (ratio at most 1) neither.

**Score and multiplier.** ``score = 1 + sensitivity x (ratio - threshold)`` (unclamped: it
falls below 1 when supply outweighs demand). The target multiplier is the score rounded
*down* to a multiple of ``step``, clamped to [1, cap] (the cap itself rounded down to a
step).

**Hysteresis.** A multiplier rises to the target at once; it falls (to the target) only
when the score is at least ``hysteresis`` below the current multiplier; otherwise it stays.
Because the unclamped score drops well below 1 when demand vanishes (1 - sensitivity x
threshold with no demand at all), a surging cell always returns to 1.0 once demand is
gone, while a score wobbling by less than the band around a step boundary does not make
the price flicker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

import h3

ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class SurgePolicy:
    cap: Decimal = Decimal("3.0")
    step: Decimal = Decimal("0.1")
    hysteresis: Decimal = Decimal("0.2")
    sensitivity: Decimal = Decimal("0.5")
    threshold: Decimal = Decimal("1.0")
    neighbour_weight: Decimal = Decimal("0.5")

    def __post_init__(self) -> None:
        for name in ("cap", "step", "hysteresis", "sensitivity", "threshold", "neighbour_weight"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(f"{name} must be a finite, non-negative Decimal")
        if self.step <= 0 or self.cap < ONE:
            raise ValueError("step must be positive and cap at least 1")


@dataclass(frozen=True, slots=True)
class CellCounts:
    demand: int = 0
    supply: int = 0


@dataclass(frozen=True, slots=True)
class SurgeCell:
    """One cell's new state: its own counts and the multiplier now in force."""

    cell: str
    demand: int
    supply: int
    multiplier: Decimal


def _floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def score(own: CellCounts, neighbours: Iterable[CellCounts], policy: SurgePolicy) -> Decimal:
    """The unclamped score of a cell from its own and its neighbours' counts."""
    w = policy.neighbour_weight
    demand = Decimal(own.demand)
    supply = Decimal(own.supply)
    for n in neighbours:
        demand += w * n.demand
        supply += w * n.supply
    ratio = demand / max(supply, ONE)
    return ONE + policy.sensitivity * (ratio - policy.threshold)


def target_multiplier(value: Decimal, policy: SurgePolicy) -> Decimal:
    """``value`` rounded down to a step and clamped to [1, cap]."""
    cap = max(ONE, _floor_to_step(policy.cap, policy.step))
    stepped = _floor_to_step(value, policy.step)
    return min(cap, max(ONE, stepped))


def next_multiplier(value: Decimal, current: Decimal, policy: SurgePolicy) -> Decimal:
    """The multiplier after one update, from the score ``value`` and the ``current`` one
    (rises at once; falls only past the hysteresis band)."""
    target = target_multiplier(value, policy)
    if target >= current:
        return target
    if value <= current - policy.hysteresis:
        return target
    return current


def disk(cell: str) -> list[str]:
    """The cell and its neighbours (H3 k=1 disk; five neighbours at a pentagon)."""
    return list(h3.grid_disk(cell, 1))


def compute_surge(
    counts: Mapping[str, CellCounts],
    current: Mapping[str, Decimal],
    policy: SurgePolicy,
    *,
    cells: Iterable[str] | None = None,
    neighbours_of: Callable[[str], Iterable[str]] = disk,
) -> dict[str, SurgeCell]:
    """The new state of ``cells`` (default: every cell in ``counts`` or ``current``).
    Cells missing from ``counts`` count zero; from ``current``, 1.0."""
    wanted = set(counts) | set(current) if cells is None else set(cells)
    empty = CellCounts()
    result: dict[str, SurgeCell] = {}
    for cell in sorted(wanted):
        own = counts.get(cell, empty)
        around = [counts.get(n, empty) for n in neighbours_of(cell) if n != cell]
        value = score(own, around, policy)
        multiplier = next_multiplier(value, current.get(cell, ONE), policy)
        result[cell] = SurgeCell(cell, own.demand, own.supply, multiplier)
    return result


def cell_of(latitude: float, longitude: float, resolution: int) -> str:
    """The H3 cell (hex string) of a point at ``resolution``."""
    return str(h3.latlng_to_cell(latitude, longitude, resolution))


def centre_of(cell: str) -> tuple[float, float]:
    lat, lon = h3.cell_to_latlng(cell)
    return float(lat), float(lon)
