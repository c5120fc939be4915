"""Surge maths on known supply and demand (pricing/surge.py): ratio over the k=1 disk,
score, steps, cap and hysteresis."""

from __future__ import annotations

from decimal import Decimal

import h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ridehail.kernel.geo import cell_reach_m, haversine_m
from ridehail.pricing.surge import (
    CellCounts,
    SurgePolicy,
    cell_of,
    centre_of,
    compute_surge,
    disk,
    next_multiplier,
    score,
    target_multiplier,
)

D = Decimal
POLICY = SurgePolicy()  # cap 3.0, step 0.1, hysteresis 0.2, sensitivity 0.5, threshold 1
LONE = SurgePolicy(neighbour_weight=D(0))  # no smoothing
CENTRE = cell_of(60.1699, 24.9384, 8)
RING = [c for c in disk(CENTRE) if c != CENTRE]


def test_the_disk_is_the_cell_and_its_six_neighbours() -> None:
    assert len(RING) == 6 and CENTRE in disk(CENTRE)
    assert all(h3.grid_distance(CENTRE, c) == 1 for c in RING)
    lat, lon = centre_of(CENTRE)
    assert cell_of(lat, lon, 8) == CENTRE


@pytest.mark.parametrize(
    ("demand", "supply", "expected"),
    [
        (0, 0, D("1.0")),  # nobody asks: no surge
        (1, 0, D("1.0")),  # ratio 1 (supply floored at 1): the threshold, no surge
        (3, 1, D("2.0")),  # ratio 3: 1 + 0.5 x 2
        (4, 2, D("1.5")),  # ratio 2
        (7, 3, D("1.6")),  # ratio 2.333: score 1.666.. rounded down to a step
        (10, 4, D("1.7")),  # ratio 2.5: score 1.75 -> 1.7 (down, never up)
        (20, 1, D("3.0")),  # score 10.5, capped
        (5, 10, D("1.0")),  # more drivers than requests
    ],
)
def test_golden_multiplier_of_a_lone_cell(demand: int, supply: int, expected: Decimal) -> None:
    cells = compute_surge({CENTRE: CellCounts(demand, supply)}, {}, LONE, cells=[CENTRE])
    assert cells[CENTRE].multiplier == expected
    assert (cells[CENTRE].demand, cells[CENTRE].supply) == (demand, supply)


def test_neighbouring_drivers_damp_a_busy_cell() -> None:
    # 6 requests, 1 driver in the cell: alone that is ratio 6 -> capped 3.0. Two free
    # drivers in each neighbour count half: supply 1 + 0.5 x 12 = 7 -> ratio 6/7 -> none.
    counts = {CENTRE: CellCounts(6, 1)} | {c: CellCounts(0, 2) for c in RING}
    assert compute_surge(counts, {}, LONE, cells=[CENTRE])[CENTRE].multiplier == D("3.0")
    assert compute_surge(counts, {}, POLICY, cells=[CENTRE])[CENTRE].multiplier == D("1.0")


def test_neighbouring_demand_spills_over_into_an_idle_cell() -> None:
    # The ring asks 2 each (6 in total at weight 0.5) around a centre with no one at all:
    # demand 6, supply floored at 1 -> score 3.5 -> capped 3.0; the centre counts 0 itself.
    counts = {c: CellCounts(2, 0) for c in RING}
    cell = compute_surge(counts, {}, POLICY, cells=[CENTRE])[CENTRE]
    assert cell.multiplier == D("3.0") and (cell.demand, cell.supply) == (0, 0)


def test_score_is_weighted_ratio_over_the_disk() -> None:
    own = CellCounts(4, 1)
    ring = [CellCounts(2, 1), CellCounts(0, 1)]
    # demand 4 + 0.5 x 2 = 5; supply 1 + 0.5 x 2 = 2; ratio 2.5; score 1 + 0.5 x 1.5
    assert score(own, ring, POLICY) == D("1.75")


def test_target_steps_down_and_clamps() -> None:
    assert target_multiplier(D("0.2"), POLICY) == D("1.0")
    assert target_multiplier(D("1.19"), POLICY) == D("1.1")
    assert target_multiplier(D("2.99"), POLICY) == D("2.9")
    assert target_multiplier(D("9"), POLICY) == D("3.0")
    quarter = SurgePolicy(step=D("0.25"), cap=D("2.6"))
    assert target_multiplier(D("1.74"), quarter) == D("1.5")
    assert target_multiplier(D("5"), quarter) == D("2.5")  # the cap rounded down to a step


def test_hysteresis_rises_at_once_and_falls_only_past_the_band() -> None:
    assert next_multiplier(D("2.0"), D("1.5"), POLICY) == D("2.0")  # up at once
    assert next_multiplier(D("1.85"), D("2.0"), POLICY) == D("2.0")  # 0.15 below: holds
    assert next_multiplier(D("1.81"), D("2.0"), POLICY) == D("2.0")
    assert next_multiplier(D("1.8"), D("2.0"), POLICY) == D("1.8")  # 0.2 below: falls
    assert next_multiplier(D("1.35"), D("2.0"), POLICY) == D("1.3")  # to the target
    # No demand at all scores 1 - 0.5 x 1 = 0.5: any surge ends.
    assert next_multiplier(D("0.5"), D("1.1"), POLICY) == D("1.0")


def test_a_wobbling_score_does_not_flicker_the_price() -> None:
    current = D("1.0")
    seen = []
    for value in ["1.12", "1.04", "1.13", "1.02", "1.11", "0.95", "0.5"]:
        current = next_multiplier(D(value), current, POLICY)
        seen.append(current)
    assert seen == [D(x) for x in ["1.1", "1.1", "1.1", "1.1", "1.1", "1.1", "1.0"]]


def test_compute_surge_carries_current_multipliers_and_lets_them_decay() -> None:
    counts = {CENTRE: CellCounts(3, 1)}
    first = compute_surge(counts, {}, LONE, cells=[CENTRE])
    assert first[CENTRE].multiplier == D("2.0")
    current = {CENTRE: first[CENTRE].multiplier}
    # A little less demand (ratio 2.8 -> score 1.9): within the band, holds 2.0.
    assert compute_surge({CENTRE: CellCounts(14, 5)}, current, LONE)[CENTRE].multiplier == D("2.0")
    # Demand gone: back to 1.0 in one update.
    assert compute_surge({}, current, LONE)[CENTRE].multiplier == D("1.0")


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="step"):
        SurgePolicy(step=D(0))
    with pytest.raises(ValueError, match="cap"):
        SurgePolicy(cap=D("0.5"))
    with pytest.raises(ValueError, match="finite"):
        SurgePolicy(sensitivity=D("NaN"))


@settings(max_examples=200, deadline=None)
@given(
    lat=st.floats(min_value=-85, max_value=85),
    lon=st.floats(min_value=-180, max_value=180),
    resolution=st.integers(min_value=5, max_value=10),
)
def test_cell_reach_holds_the_whole_cell(lat: float, lon: float, resolution: int) -> None:
    """The supply query around a cell's centre finds every driver in the cell: its corners
    and points along its edges are within reach, and the reach is not much more."""
    cell = cell_of(lat, lon, resolution)
    reach = cell_reach_m(cell)
    clat, clon = centre_of(cell)
    corners = list(h3.cell_to_boundary(cell))
    for (alat, alon), (blat, blon) in zip(corners, corners[1:] + corners[:1], strict=True):
        for t in (0.0, 0.25, 0.5, 0.75):
            plat, plon = alat + (blat - alat) * t, alon + (blon - alon) * t
            if abs(blon - alon) > 180:  # an edge across the antimeridian
                continue
            assert haversine_m(clat, clon, plat, plon) <= reach
    # One query per centre reached 5.6 average edges, to hold a whole k=1 disk.
    assert reach <= 2.0 * h3.average_hexagon_edge_length(resolution, unit="m")
