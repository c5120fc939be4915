from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from ridehail.dispatch.models import Offer
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


class DispatchLog(ResponseBody):
    ride_id: str
    ride_status: str
    search: SearchOut | None
    candidates: list[CandidateOut]
