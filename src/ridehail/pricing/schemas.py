from __future__ import annotations

from pydantic import Field

from ridehail.web.schemas import ResponseBody


class FareEstimateOut(ResponseBody):
    amount: str = Field(examples=["12.40"], description="What the rider would pay")
    currency: str = Field(examples=["USD"])
    distance_m: int = Field(description="Estimated road distance")
    duration_s: int = Field(description="Estimated driving time")
    breakdown: dict[str, str] = Field(
        description="Itemized lines (base, distance, time, booking_fee, minimum_adjustment) "
        "as decimal strings; they add up to amount"
    )
