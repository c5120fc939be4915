from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from ridehail.dispatch.models import Candidate, Offer, Search
from ridehail.web.schemas import Point, ResponseBody


class OfferOut(ResponseBody):
    offer_id: str
    ride_id: str
    pickup: Point
    dropoff: Point
    distance_to_pickup_m: float
    eta_s: float | None = Field(description="Estimated seconds to drive to the pickup")
    fare_estimate: dict[str, Any]
    expires_at: datetime

    @classmethod
    def of(cls, offer: Offer) -> OfferOut:
        return cls(
            offer_id=offer.id,
            ride_id=offer.ride_id,
            pickup=Point(**offer.pickup),
            dropoff=Point(**offer.dropoff),
            distance_to_pickup_m=offer.distance_to_pickup_m,
            eta_s=offer.eta_s,
            fare_estimate=offer.fare_estimate,
            expires_at=offer.expires_at,
        )


class OfferList(ResponseBody):
    offers: list[OfferOut]


class Declined(ResponseBody):
    ride_id: str
    status: str = "declined"


class SearchOut(ResponseBody):
    state: str = Field(description="active or closed")
    outcome: str | None = Field(
        description="Why it closed: accepted, cancelled, no_drivers_available, ..."
    )
    rounds: int = Field(description="Candidate searches run")
    offers_made: int
    radius_m: float | None = Field(description="The widest ring the last round searched")
    seats: int
    created_at: datetime
    deadline_at: datetime
    next_check_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, search: Search) -> SearchOut:
        return cls(
            state=search.state,
            outcome=search.outcome,
            rounds=search.rounds,
            offers_made=search.attempts,
            radius_m=search.radius_m,
            seats=search.seats,
            created_at=search.created_at,
            deadline_at=search.deadline_at,
            next_check_at=search.next_check_at,
            closed_at=search.closed_at,
        )


class CandidateOut(ResponseBody):
    round: int
    strategy: str
    driver_id: str
    distance_m: float
    eta_s: float | None = Field(description="Estimated pickup time")
    score: float | None = Field(description="Ranking score in seconds; lower ranks first")
    acceptance_rate: float | None
    idle_s: float | None
    decision: str = Field(description="offered, skipped or passed_over")
    reason: str | None = Field(
        description="Why skipped (unavailable, on_trip, holding_offer, too_few_seats, "
        "already_offered) or passed over (ranked_lower, matched_elsewhere, offer_refused)"
    )
    outcome: str = Field(
        description="For an offer: open, accepted, declined, expired or withdrawn; "
        "otherwise the decision"
    )
    offer_id: str | None
    responded_at: datetime | None
    considered_at: datetime

    @classmethod
    def of(cls, c: Candidate, offer: Offer | None) -> CandidateOut:
        """``offer``: the offer this candidate was made, if the decision was to offer."""
        if offer is None:
            outcome = c.decision
        else:
            outcome = "open" if offer.status == "pending" else offer.status
        return cls(
            round=c.round,
            strategy=c.strategy,
            driver_id=c.driver_id,
            distance_m=c.distance_m,
            eta_s=c.eta_s,
            score=c.score,
            acceptance_rate=c.acceptance_rate,
            idle_s=c.idle_s,
            decision=c.decision,
            reason=c.reason,
            outcome=outcome,
            offer_id=offer.id if offer else None,
            responded_at=offer.responded_at if offer else None,
            considered_at=c.considered_at,
        )


class DispatchLog(ResponseBody):
    ride_id: str
    ride_status: str
    search: SearchOut | None
    candidates: list[CandidateOut]

    @classmethod
    def of(
        cls,
        *,
        ride_id: str,
        ride_status: str,
        search: Search | None,
        considered: list[Candidate],
        offers: list[Offer],
    ) -> DispatchLog:
        by_driver = {o.driver_id: o for o in offers}
        return cls(
            ride_id=ride_id,
            ride_status=ride_status,
            search=None if search is None else SearchOut.of(search),
            candidates=[
                CandidateOut.of(c, by_driver.get(c.driver_id) if c.decision == "offered" else None)
                for c in considered
            ],
        )
