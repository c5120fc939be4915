"""Optimal batch assignment of waiting ride requests to free drivers.

Why a batch beats nearest-first. Giving each request, in turn, the nearest free car is
locally sensible and globally wasteful: the first request may take the only car that the
second one could reach, leaving the second a far worse pickup (or none), although a
slightly longer pickup for the first would have served both well. Uber and Lyft describe
batch matching instead: gather the requests and free drivers of a short window and solve
one bipartite assignment on pickup ETA. DiDi replaced sequential, order-by-order taxi
dispatch with a combinatorial optimisation over many orders at once and raised its global
request success rate from 80 % to 84 % in A/B tests (Zhang et al., "A Taxi Order Dispatch
Model based On Combinatorial Optimization", KDD 2017).

What is solved. Requests are rows, drivers are columns, and each candidate pair is an edge
whose cost is the pickup ETA in seconds; usually only a request's k nearest drivers are
candidates, so the matrix is sparse. Among all matchings that serve the greatest possible
number of requests, :func:`assign` returns one of least total cost: serving one more rider
always wins over saving seconds for the others.

How. ``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` (LAPJVsp) needs a matching
that covers every row, which a sparse instance may not have. So every row gets a private
dummy column of its own, at a cost ``big`` larger than the real cost of any whole matching
(``min(rows, columns) * (max real cost + 1) + 1``). A full matching then always exists; a
row matched to its dummy column is "unassigned"; and a matching with one more real pair
always costs less, so the optimum first maximises the number of real pairs, then minimises
their cost. Two details: scipy reads an explicitly stored zero as a missing
edge, so every real cost is shifted by +1 (the same shift for every pair; all matchings
of maximum size have the same number of pairs, so the shift does not change which is
cheapest); and duplicate (request, driver) edges keep their cheapest cost.

Pure and synchronous: numpy and scipy only, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

__all__ = [
    "Edge",
    "EdgeArrays",
    "Problem",
    "assign",
    "build",
    "candidate_edges",
    "solve",
]

#: Added to every real cost so that a zero-second pickup is not read as a missing edge.
_SHIFT = 1.0

Pairs = list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Edge:
    """One candidate pair: request ``request`` (row) could be picked up by driver ``driver``
    (column) in ``cost`` seconds (finite, >= 0)."""

    request: int
    driver: int
    cost: float


def _int_array(values: ArrayLike, name: str) -> NDArray[np.int64]:
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be integers, not {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64).reshape(-1)


def _check_costs(costs: NDArray[np.float64]) -> None:
    if costs.size and not (np.isfinite(costs).all() and (costs >= 0).all()):
        raise ValueError("costs must be finite and >= 0")


@dataclass(frozen=True, slots=True)
class EdgeArrays:
    """Edges as three parallel 1-D arrays (what the solver works on): edge ``i`` joins
    request ``requests[i]`` and driver ``drivers[i]`` at ``costs[i]`` seconds.

    Any array-likes are accepted and converted (indices to int64, costs to float64); costs
    must be finite and >= 0."""

    requests: NDArray[np.int64]
    drivers: NDArray[np.int64]
    costs: NDArray[np.float64]

    def __post_init__(self) -> None:
        requests = _int_array(self.requests, "requests")
        drivers = _int_array(self.drivers, "drivers")
        costs = np.ascontiguousarray(self.costs, dtype=np.float64).reshape(-1)
        if not requests.size == drivers.size == costs.size:
            raise ValueError(
                f"requests, drivers and costs differ in length "
                f"({requests.size}, {drivers.size}, {costs.size})"
            )
        _check_costs(costs)
        object.__setattr__(self, "requests", requests)
        object.__setattr__(self, "drivers", drivers)
        object.__setattr__(self, "costs", costs)

    def __len__(self) -> int:
        return int(self.costs.size)

    @classmethod
    def of(cls, edges: Iterable[Edge]) -> EdgeArrays:
        """From :class:`Edge` objects (convenient for small instances and tests)."""
        items = list(edges)
        return cls(
            np.fromiter((e.request for e in items), dtype=np.int64, count=len(items)),
            np.fromiter((e.driver for e in items), dtype=np.int64, count=len(items)),
            np.fromiter((e.cost for e in items), dtype=np.float64, count=len(items)),
        )


def candidate_edges(drivers: ArrayLike, costs: ArrayLike) -> EdgeArrays:
    """Edges from a k-nearest table: row ``i`` of the two ``(n_requests, k)`` arrays holds
    request ``i``'s candidate drivers and their costs. A slot with a non-finite cost or a
    negative driver index means "no candidate" and is skipped: ``scipy.spatial.cKDTree``
    pads rows with fewer than k neighbours within ``distance_upper_bound`` with distance
    ``inf`` (and index ``n``), so its tables can be passed as they are."""
    table = np.asarray(drivers)
    cost_table = np.asarray(costs, dtype=np.float64)
    if table.shape != cost_table.shape or table.ndim != 2:
        raise ValueError(
            f"drivers and costs must be (n_requests, k) arrays of one shape, "
            f"not {table.shape} and {cost_table.shape}"
        )
    if table.size and not np.issubdtype(table.dtype, np.integer):
        raise TypeError(f"drivers must be integers, not {table.dtype}")
    rows = np.repeat(np.arange(table.shape[0], dtype=np.int64), table.shape[1])
    flat_drivers = table.reshape(-1).astype(np.int64, copy=False)
    flat_costs = cost_table.reshape(-1)
    present = np.isfinite(flat_costs) & (flat_drivers >= 0)
    return EdgeArrays(rows[present], flat_drivers[present], flat_costs[present])


@dataclass(frozen=True, slots=True)
class Problem:
    """A prepared instance: the compacted sparse cost matrix with its dummy columns.

    ``matrix`` has one row per request that has at least one usable edge (``requests`` maps
    row -> request index) and one column per driver that appears in an edge (``drivers``
    maps column -> driver index), followed by one dummy column per row."""

    matrix: Any  # scipy.sparse.csr_matrix, n_rows x (n_cols + n_rows)
    requests: NDArray[np.int64]
    drivers: NDArray[np.int64]

    @property
    def edges(self) -> int:
        """Distinct usable (request, driver) edges, dummies not counted."""
        return int(self.matrix.nnz - self.requests.size) if self.requests.size else 0


def _empty_problem() -> Problem:
    none = np.zeros(0, dtype=np.int64)
    return Problem(matrix=None, requests=none, drivers=none.copy())


def build(
    n_requests: int,
    n_drivers: int,
    edges: EdgeArrays | Iterable[Edge],
    *,
    max_cost: float | None = None,
) -> Problem:
    """Validate the edges and build the sparse matrix (see the module docstring).

    Raises ValueError for an index outside ``0..n_requests-1`` / ``0..n_drivers-1`` or a
    negative or non-finite cost. Edges costing more than ``max_cost`` are dropped; of
    duplicate (request, driver) edges the cheapest is kept."""
    if n_requests < 0 or n_drivers < 0:
        raise ValueError("n_requests and n_drivers must be >= 0")
    arrays = edges if isinstance(edges, EdgeArrays) else EdgeArrays.of(edges)
    req, drv, cost = arrays.requests, arrays.drivers, arrays.costs
    if req.size and not (
        req.min() >= 0 and req.max() < n_requests and drv.min() >= 0 and drv.max() < n_drivers
    ):
        raise ValueError(
            f"edge indices must lie in 0..{n_requests - 1} (requests) "
            f"and 0..{n_drivers - 1} (drivers)"
        )
    if max_cost is not None:
        keep = cost <= max_cost
        req, drv, cost = req[keep], drv[keep], cost[keep]
    if req.size == 0:
        return _empty_problem()

    # Sort by request, then driver, then cost: the first of each (request, driver) run is
    # the cheapest duplicate, and rows come out grouped and in order.
    order = np.lexsort((cost, drv, req))
    req, drv, cost = req[order], drv[order], cost[order]
    first = np.ones(req.size, dtype=bool)
    first[1:] = (req[1:] != req[:-1]) | (drv[1:] != drv[:-1])
    req, drv, cost = req[first], drv[first], cost[first]

    requests, row_of = np.unique(req, return_inverse=True)
    drivers, col_of = np.unique(drv, return_inverse=True)
    n_rows, n_cols, n_edges = requests.size, drivers.size, req.size
    shifted = cost + _SHIFT
    # A matching has at most min(n_rows, n_cols) real pairs, each costing at most
    # max(shifted); one more real pair (saving ``big``) therefore always pays.
    big = min(n_rows, n_cols) * float(shifted.max()) + 1.0

    # CSR by hand: row r holds its real edges (sorted by column) and then its dummy column
    # n_cols + r. Real edge j of row r sits at j + r (r dummies precede it); row r's dummy
    # sits just before row r + 1 starts.
    per_row = np.bincount(row_of, minlength=n_rows)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(per_row + 1, out=indptr[1:])
    data = np.empty(n_edges + n_rows, dtype=np.float64)
    indices = np.empty(n_edges + n_rows, dtype=np.int64)
    real_at = np.arange(n_edges, dtype=np.int64) + row_of
    dummy_at = indptr[1:] - 1
    data[real_at] = shifted
    indices[real_at] = col_of
    data[dummy_at] = big
    indices[dummy_at] = n_cols + np.arange(n_rows, dtype=np.int64)
    matrix = csr_matrix((data, indices, indptr), shape=(n_rows, n_cols + n_rows))
    return Problem(matrix=matrix, requests=requests, drivers=drivers)


def solve(problem: Problem) -> Pairs:
    """The optimal (request, driver) pairs of a prepared problem, ordered by request."""
    if problem.requests.size == 0:
        return []
    rows, cols = min_weight_full_bipartite_matching(problem.matrix)
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    real = cols < problem.drivers.size
    requests = problem.requests[rows[real]]
    drivers = problem.drivers[cols[real]]
    order = np.argsort(requests, kind="stable")
    return list(zip(requests[order].tolist(), drivers[order].tolist(), strict=True))


def assign(
    n_requests: int,
    n_drivers: int,
    edges: EdgeArrays | Iterable[Edge],
    *,
    max_cost: float | None = None,
) -> Pairs:
    """Match requests to drivers: each at most once, only along the given edges (those
    costing more than ``max_cost`` ignored), serving as many requests as possible and,
    among such matchings, minimising the total cost. Returns (request, driver) pairs
    ordered by request; requests left out have no driver this round."""
    return solve(build(n_requests, n_drivers, edges, max_cost=max_cost))
