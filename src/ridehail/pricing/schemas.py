from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ridehail.web.schemas import ResponseBody


class FareEstimateOut(ResponseBody):
    amount: str = Field(examples=["12.40"], description="What the rider would pay")
    currency: str = Field(examples=["USD"])
    distance_m: int = Field(description="Estimated road distance")
    duration_s: int = Field(description="Estimated driving time")
    breakdown: dict[str, str] = Field(
        description="Itemized lines (base, distance, time, surge, waiting, booking_fee, "
        "minimum_adjustment) as decimal strings; they add up to amount"
    )
    surge_multiplier: str = Field(
        default="1.0",
        examples=["1.4"],
        description="The surge at the pickup now (a ride requested now locks it in)",
    )
    waiting_s: int = Field(default=0, description="Waiting at pickup priced (none in estimates)")
    product: str = Field(default="standard", description="The product whose prices apply")


class SurgeCellOut(ResponseBody):
    cell: str = Field(description="H3 cell index (hex)")
    resolution: int
    multiplier: str = Field(examples=["1.5"])
    demand: int = Field(description="Rides requested with their pickup here in the window")
    supply: int = Field(description="Free drivers with a fresh position here")
    latitude: float = Field(description="The cell's centre")
    longitude: float
    updated_at: datetime


class SurgeMap(ResponseBody):
    resolution: int
    window_s: float
    cells: list[SurgeCellOut]
