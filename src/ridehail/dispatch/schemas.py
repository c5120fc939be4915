from __future__ import annotations

from datetime import datetime
from typing import Any

from ridehail.dispatch.models import Offer
from ridehail.web.schemas import Point, ResponseBody


class OfferOut(ResponseBody):
    offer_id: str
    ride_id: str
    pickup: Point
    dropoff: Point
    distance_to_pickup_m: float
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
            fare_estimate=offer.fare_estimate,
            expires_at=offer.expires_at,
        )


class OfferList(ResponseBody):
    offers: list[OfferOut]


class Declined(ResponseBody):
    ride_id: str
    status: str = "declined"
