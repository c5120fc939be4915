"""How dispatch behaves: the strategy and every number it works with, from settings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Strategy(StrEnum):
    #: One driver at a time; a decline or an expiry moves on to the next best.
    SEQUENTIAL = "sequential"
    #: The best ``broadcast_k`` drivers see the ride at once; the first to accept gets it.
    BROADCAST = "broadcast"
    #: Requests are gathered for ``batch_window_s``, then matched to drivers all together by
    #: minimum total pickup time (an optimal assignment, not nearest-first).
    BATCH = "batch"


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    strategy: Strategy = Strategy.SEQUENTIAL
    #: Rings searched: first_radius_m, then + radius_step_m each time, up to radius_m.
    first_radius_m: float = 1_000.0
    radius_step_m: float = 1_000.0
    radius_m: float = 5_000.0
    #: Drivers asked of the location store per ring (and logged per round) ...
    candidates: int = 20
    #: ... doubled, up to this, while a full page holds too few eligible drivers.
    max_candidates: int = 160
    #: Candidates written to the dispatch log per search and round (best first, then the
    #: nearest skipped ones); any offered driver is always logged.
    log_limit: int = 10
    #: Dispatch log rows are deleted this long after they were written.
    log_retention_s: float = 30 * 86_400.0
    offer_ttl_s: float = 15.0
    search_timeout_s: float = 120.0
    #: A search that found nobody tries again after retry_interval_s, and less often as
    #: it ages (a tenth of its age, at most retry_max_s): most of a fruitless search's
    #: rounds otherwise go to asking again where nothing changed.
    retry_interval_s: float = 2.0
    retry_max_s: float = 10.0
    stale_after_s: float = 30.0
    broadcast_k: int = 3
    batch_window_s: float = 2.0
    #: Drivers per request in the batch's cost matrix (the k best, so the matrix is sparse).
    batch_k: int = 10
    #: Searches one batch round takes at most (SKIP LOCKED shares the rest out).
    batch_max_rides: int = 1_000
    #: Sequential and broadcast: due searches advanced together in one transaction.
    round_size: int = 50
    #: Score = ETA + acceptance_weight_s x (1 - acceptance rate) - idle_weight x idle seconds
    #: (idle capped at idle_cap_s). Defaults: a driver who never accepts ranks as if one
    #: minute further away; 10 minutes idle is worth 30 s of pickup time, at most 90 s.
    acceptance_weight_s: float = 60.0
    idle_weight: float = 0.05
    idle_cap_s: float = 1_800.0
    #: Prior for the acceptance rate: a driver with no history counts as having answered
    #: acceptance_prior_weight offers at this rate.
    #: Rides 'searching' this long without an active search are adopted by the sweep.
    orphan_after_s: float = 15.0
    acceptance_prior: float = 0.8
    acceptance_prior_weight: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.first_radius_m <= self.radius_m:
            raise ValueError("need 0 < first_radius_m <= radius_m")
        if self.radius_step_m <= 0:
            raise ValueError("radius_step_m must be positive")
        if self.max_candidates < self.candidates:
            raise ValueError("max_candidates must be at least candidates")

    def rings(self) -> list[float]:
        radii = []
        radius = self.first_radius_m
        while radius < self.radius_m:
            radii.append(radius)
            radius += self.radius_step_m
        radii.append(self.radius_m)
        return radii

    def retry_after_s(self, age_s: float) -> float:
        return min(
            max(self.retry_interval_s, age_s / 10), max(self.retry_max_s, self.retry_interval_s)
        )

    @property
    def offers_per_round(self) -> int:
        return self.broadcast_k if self.strategy is Strategy.BROADCAST else 1

    @property
    def wanted(self) -> int:
        """Eligible drivers a round looks for before it stops widening the ring: batch
        matching needs a choice of drivers per ride, the others only the offers they make."""
        return self.batch_k if self.strategy is Strategy.BATCH else self.offers_per_round
