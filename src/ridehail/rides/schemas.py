from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from ridehail.rides.models import Ride
from ridehail.web.schemas import Latitude, Longitude, Point, RequestBody, ResponseBody


class RideCreate(RequestBody):
    start_latitude: Latitude
    start_longitude: Longitude
    end_latitude: Latitude
    end_longitude: Longitude
    seats: int = Field(default=1, ge=1, le=8, description="Passenger seats needed")


class RideCancel(RequestBody):
    reason: str | None = Field(default=None, max_length=500)


class DriverSummary(ResponseBody):
    driver_id: str
    name: str


class Vehicle(ResponseBody):
    make: str
    model: str
    plate: str
    color: str | None = None
    seats: int | None = None


class FareOut(ResponseBody):
    amount: str = Field(examples=["12.40"])
    currency: str = Field(examples=["USD"])
    distance_m: int
    duration_s: int
    breakdown: dict[str, str]


class PaymentOut(ResponseBody):
    status: str


class RideOut(ResponseBody):
    ride_id: str
    status: str
    rider_id: str
    driver: DriverSummary | None
    vehicle: Vehicle | None
    start: Point
    end: Point
    seats: int
    fare_estimate: FareOut
    fare: FareOut | None
    payment: PaymentOut | None
    distance_m: float | None = Field(description="Distance actually travelled, when completed")
    duration_s: float | None
    cancel_reason: str | None
    cancelled_by: str | None
    created_at: datetime
    updated_at: datetime
    accepted_at: datetime | None
    arrived_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None

    @classmethod
    def of(cls, ride: Ride) -> RideOut:
        snap: dict[str, Any] = ride.driver_snapshot or {}
        driver = (
            DriverSummary(driver_id=ride.driver_id, name=snap.get("name", ""))
            if ride.driver_id
            else None
        )
        vehicle = Vehicle(**snap["vehicle"]) if ride.driver_id and snap.get("vehicle") else None
        return cls(
            ride_id=ride.id,
            status=ride.status,
            rider_id=ride.rider_id,
            driver=driver,
            vehicle=vehicle,
            start=Point(latitude=ride.start_latitude, longitude=ride.start_longitude),
            end=Point(latitude=ride.end_latitude, longitude=ride.end_longitude),
            seats=ride.seats,
            fare_estimate=FareOut(**ride.fare_estimate),
            fare=FareOut(**ride.fare) if ride.fare else None,
            payment=None,
            distance_m=ride.distance_m,
            duration_s=ride.duration_s,
            cancel_reason=ride.cancel_reason,
            cancelled_by=ride.cancelled_by,
            created_at=ride.created_at,
            updated_at=ride.updated_at,
            accepted_at=ride.accepted_at,
            arrived_at=ride.arrived_at,
            started_at=ride.started_at,
            completed_at=ride.completed_at,
            cancelled_at=ride.cancelled_at,
        )


class RidePage(ResponseBody):
    rides: list[RideOut]
    next_page_token: str | None
