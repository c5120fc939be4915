"""The batch solver (ridehail.dispatch.assignment): hand-made cases whose answer is known,
then random small instances against brute force over every matching, and random larger
complete instances against scipy's dense linear_sum_assignment."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from ridehail.dispatch.assignment import (
    Edge,
    EdgeArrays,
    assign,
    build,
    candidate_edges,
    solve,
)

Triple = tuple[int, int, float]


def edges_of(triples: Sequence[Triple]) -> list[Edge]:
    return [Edge(r, d, c) for r, d, c in triples]


def cheapest(
    triples: Sequence[Triple], max_cost: float | None = None
) -> dict[tuple[int, int], float]:
    """The usable cost of each pair: duplicates keep the cheapest; above max_cost dropped."""
    best: dict[tuple[int, int], float] = {}
    for r, d, c in triples:
        if max_cost is not None and c > max_cost:
            continue
        best[r, d] = min(c, best.get((r, d), math.inf))
    return best


def total(pairs: Sequence[tuple[int, int]], costs: dict[tuple[int, int], float]) -> float:
    return sum(costs[p] for p in pairs)


def greedy_nearest_first(triples: Sequence[Triple]) -> list[tuple[int, int]]:
    """Cheapest edge first, taken whenever both ends are still free."""
    used_r: set[int] = set()
    used_d: set[int] = set()
    pairs = []
    for r, d, _ in sorted(triples, key=lambda t: (t[2], t[0], t[1])):
        if r not in used_r and d not in used_d:
            used_r.add(r)
            used_d.add(d)
            pairs.append((r, d))
    return sorted(pairs)


def assert_valid(
    pairs: Sequence[tuple[int, int]],
    costs: dict[tuple[int, int], float],
    n_requests: int,
    n_drivers: int,
) -> None:
    requests = [r for r, _ in pairs]
    drivers = [d for _, d in pairs]
    assert len(set(requests)) == len(requests), "a request matched twice"
    assert len(set(drivers)) == len(drivers), "a driver matched twice"
    assert all(0 <= r < n_requests and 0 <= d < n_drivers for r, d in pairs)
    assert all(p in costs for p in pairs), "a pair that is not a (usable) edge"
    assert requests == sorted(requests), "pairs come ordered by request"


# ---------------------------------------------------------------- hand-made cases


def test_optimal_beats_greedy_nearest_first() -> None:
    # Request 0's nearest driver (0, 1 s) is the only one request 1 can reach quickly.
    triples: list[Triple] = [(0, 0, 1.0), (0, 1, 2.0), (1, 0, 2.0), (1, 1, 10.0)]
    costs = cheapest(triples)
    greedy = greedy_nearest_first(triples)
    assert greedy == [(0, 0), (1, 1)]
    assert total(greedy, costs) == 11.0

    pairs = assign(2, 2, edges_of(triples))
    assert pairs == [(0, 1), (1, 0)]
    assert total(pairs, costs) == 4.0


def test_serving_more_requests_beats_a_cheaper_total() -> None:
    # Request 0 alone on driver 0 would cost 1 s; serving both costs 1,000,001 s.
    triples: list[Triple] = [(0, 0, 1.0), (0, 1, 1_000_000.0), (1, 0, 1.0)]
    pairs = assign(2, 2, edges_of(triples))
    assert pairs == [(0, 1), (1, 0)]
    assert total(pairs, cheapest(triples)) == 1_000_001.0


def test_unreachable_requests_and_drivers_stay_unmatched() -> None:
    # Three requests all want driver 1 only; requests 3 and 4 have no edge at all; drivers
    # 0 and 2 are nobody's candidate.
    triples: list[Triple] = [(0, 1, 30.0), (1, 1, 10.0), (2, 1, 20.0)]
    assert assign(5, 3, edges_of(triples)) == [(1, 1)]


def test_edges_above_max_cost_are_ignored() -> None:
    triples: list[Triple] = [(0, 0, 1.0), (0, 1, 100.0), (1, 0, 1.0)]
    # Without a cut-off both are served (previous test); at 50 s the 100 s edge is gone,
    # so only one request can have driver 0, at 1 s.
    pairs = assign(2, 2, edges_of(triples), max_cost=50.0)
    assert len(pairs) == 1
    assert pairs[0][1] == 0
    # The cut-off is inclusive.
    assert assign(2, 2, edges_of(triples), max_cost=100.0) == [(0, 1), (1, 0)]
    # A cut-off below every edge leaves nothing.
    assert assign(2, 2, edges_of(triples), max_cost=0.5) == []


@pytest.mark.parametrize("cheap_first", [True, False])
def test_duplicate_edges_keep_the_cheapest(cheap_first: bool) -> None:
    # With (0, 0) at 1 s: 0->0 + 1->1 = 4.5 beats 0->1 + 1->0 = 5.
    # Had the 5 s duplicate (or the sum, 6 s) been kept, the answer would flip.
    dup: list[Triple] = [(0, 0, 1.0), (0, 0, 5.0)]
    if not cheap_first:
        dup.reverse()
    triples: list[Triple] = [*dup, (0, 1, 3.0), (1, 0, 2.0), (1, 1, 3.5)]
    pairs = assign(2, 2, edges_of(triples))
    assert pairs == [(0, 0), (1, 1)]
    assert build(2, 2, edges_of(triples)).edges == 4


def test_zero_cost_edges_are_edges() -> None:
    # scipy reads a stored zero as "no edge"; the solver must not.
    triples: list[Triple] = [(0, 0, 0.0), (1, 0, 0.0), (1, 1, 0.0)]
    assert assign(2, 2, edges_of(triples)) == [(0, 0), (1, 1)]
    assert assign(1, 1, [Edge(0, 0, 0.0)]) == [(0, 0)]


def test_empty_inputs() -> None:
    assert assign(0, 0, []) == []
    assert assign(3, 0, []) == []
    assert assign(0, 3, []) == []
    assert assign(3, 3, []) == []
    no_ids = np.array([], dtype=np.int64)
    assert assign(3, 3, EdgeArrays(no_ids, no_ids, np.array([]))) == []
    assert solve(build(0, 0, [])) == []


def test_edge_arrays_and_edge_objects_agree() -> None:
    triples: list[Triple] = [(0, 0, 1.0), (0, 1, 2.0), (1, 0, 2.0), (1, 1, 10.0), (2, 1, 0.5)]
    arrays = EdgeArrays(
        np.array([t[0] for t in triples]),
        np.array([t[1] for t in triples]),
        np.array([t[2] for t in triples]),
    )
    assert len(arrays) == 5
    assert assign(3, 2, arrays) == assign(3, 2, edges_of(triples)) == [(0, 0), (2, 1)]


def test_candidate_edges_from_a_k_nearest_table() -> None:
    # As cKDTree.query pads it: index n (here 3) and cost inf for a missing neighbour.
    drivers = np.array([[0, 1], [0, 3], [3, 3]])
    costs = np.array([[1.0, 2.0], [2.0, np.inf], [np.inf, np.inf]])
    edges = candidate_edges(drivers, costs)
    assert edges.requests.tolist() == [0, 0, 1]
    assert edges.drivers.tolist() == [0, 1, 0]
    assert edges.costs.tolist() == [1.0, 2.0, 2.0]
    assert assign(3, 3, edges) == [(0, 1), (1, 0)]


@pytest.mark.parametrize(
    ("triples", "message"),
    [
        ([(1, 0, 1.0)], "indices"),
        ([(0, 1, 1.0)], "indices"),
        ([(-1, 0, 1.0)], "indices"),
        ([(0, 0, -1.0)], "costs"),
        ([(0, 0, math.nan)], "costs"),
        ([(0, 0, math.inf)], "costs"),
    ],
)
def test_bad_edges_are_rejected(triples: list[Triple], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        assign(1, 1, edges_of(triples))


def test_mismatched_arrays_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        EdgeArrays(np.array([0, 1]), np.array([0]), np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="integers"):
        EdgeArrays(np.array([0.0]), np.array([0]), np.array([1.0]))


# ---------------------------------------------------------------- against brute force


def brute_force(n_requests: int, costs: dict[tuple[int, int], float]) -> tuple[int, float]:
    """(most requests served, least total cost among those) over every matching."""
    by_request: dict[int, list[tuple[int, float]]] = {}
    for (r, d), c in costs.items():
        by_request.setdefault(r, []).append((d, c))
    best = (0, 0.0)

    def walk(r: int, used: frozenset[int], count: int, cost: float) -> None:
        nonlocal best
        if r == n_requests:
            if count > best[0] or (count == best[0] and cost < best[1]):
                best = (count, cost)
            return
        walk(r + 1, used, count, cost)  # request r not served
        for d, c in by_request.get(r, []):
            if d not in used:
                walk(r + 1, used | {d}, count + 1, cost + c)

    walk(0, frozenset(), 0, 0.0)
    return best


@st.composite
def instances(draw: st.DrawFn) -> tuple[int, int, list[Triple], float | None]:
    n_requests = draw(st.integers(0, 6))
    n_drivers = draw(st.integers(0, 6))
    triples: list[Triple] = []
    if n_requests and n_drivers:
        cost = st.one_of(
            st.integers(0, 20).map(float),  # small integers: many ties and zeros
            st.floats(0, 1_000, allow_nan=False, allow_infinity=False),
        )
        triples = draw(
            st.lists(
                st.tuples(st.integers(0, n_requests - 1), st.integers(0, n_drivers - 1), cost),
                max_size=3 * max(n_requests, n_drivers),
            )
        )
    max_cost = draw(st.none() | st.floats(0, 1_000, allow_nan=False))
    return n_requests, n_drivers, triples, max_cost


@settings(max_examples=300, deadline=None)
@given(instance=instances(), as_arrays=st.booleans())
def test_matches_brute_force(
    instance: tuple[int, int, list[Triple], float | None], as_arrays: bool
) -> None:
    n_requests, n_drivers, triples, max_cost = instance
    edges: EdgeArrays | list[Edge] = edges_of(triples)
    if as_arrays:
        edges = EdgeArrays(
            np.array([t[0] for t in triples], dtype=np.int64),
            np.array([t[1] for t in triples], dtype=np.int64),
            np.array([t[2] for t in triples], dtype=np.float64),
        )
    pairs = assign(n_requests, n_drivers, edges, max_cost=max_cost)
    costs = cheapest(triples, max_cost)
    assert_valid(pairs, costs, n_requests, n_drivers)
    count, cost = brute_force(n_requests, costs)
    assert len(pairs) == count
    assert total(pairs, costs) == pytest.approx(cost, abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_complete_instances_match_dense_linear_sum_assignment(seed: int) -> None:
    # Every request can reach every driver, so every maximum matching serves
    # min(n_requests, n_drivers) and scipy's dense solver gives the least total.
    rng = np.random.default_rng(seed)
    n_requests, n_drivers = int(rng.integers(20, 60)), int(rng.integers(20, 60))
    matrix = rng.uniform(0, 2_000, size=(n_requests, n_drivers)).round(1)
    matrix[rng.random(matrix.shape) < 0.05] = 0.0
    rows, cols = np.indices(matrix.shape)
    pairs = assign(n_requests, n_drivers, EdgeArrays(rows.ravel(), cols.ravel(), matrix.ravel()))
    dense_rows, dense_cols = linear_sum_assignment(matrix)
    assert len(pairs) == min(n_requests, n_drivers)
    got = sum(matrix[r, d] for r, d in pairs)
    assert got == pytest.approx(matrix[dense_rows, dense_cols].sum(), abs=1e-6)
