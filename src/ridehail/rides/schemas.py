from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from ridehail import payments, pricing
from ridehail.rides.models import Ride
from ridehail.web.schemas import Latitude, Longitude, Point, RequestBody, ResponseBody


class RideCreate(RequestBody):
    start_latitude: Latitude
    start_longitude: Longitude
    end_latitude: Latitude
    end_longitude: Longitude
    seats: int = Field(default=1, ge=1, le=8, description="Passenger seats needed")
    product: str = Field(
        default="standard",
        min_length=1,
        max_length=32,
        description="The product (fare policy): standard or one configured in fare_products",
    )
    payment_method_id: str | None = Field(
        default=None,
        max_length=40,
        description="One of the rider's payment methods; default: their default method, else cash",
    )


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
    breakdown: dict[str, str] = Field(
        description="Itemized lines as decimal strings adding up to amount: base, distance, "
        "time, surge, waiting, booking_fee, minimum_adjustment for a trip; cancellation_fee "
        "or no_show_fee for a ride that ended without one"
    )
    surge_multiplier: str | None = Field(
        default=None, examples=["1.5"], description="The multiplier locked at request time"
    )
    waiting_s: int | None = Field(default=None, description="Seconds waited at pickup")
    product: str | None = Field(default=None, description="The product whose prices applied")
    estimate_amount: str | None = Field(
        default=None, description="Final fares: the amount estimated at request"
    )
    estimate_difference: str | None = Field(
        default=None,
        examples=["-0.40"],
        description="Final fares: final minus estimated amount (signed decimal string)",
    )
    fee_kind: str | None = Field(
        default=None, description="Fees: 'cancellation' or 'no_show'", examples=["no_show"]
    )


#: The ride's payment as the payments domain shows it ({"status", ...}).
PaymentOut = payments.PaymentOut


class RideOut(ResponseBody):
    ride_id: str
    status: str
    rider_id: str
    driver: DriverSummary | None
    vehicle: Vehicle | None
    start: Point
    end: Point
    seats: int
    product: str = Field(default="standard", description="The product the ride is priced as")
    surge_multiplier: str = Field(
        default="1.0", description="Surge locked at request; the estimate and the fare use it"
    )
    fare_estimate: pricing.FareEstimateOut
    fare: FareOut | None
    payment: PaymentOut | None
    payment_method_id: str | None = Field(
        description="The rider's payment method chosen at request; null is cash"
    )
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
    def of(cls, ride: Ride, payment: PaymentOut | None = None) -> RideOut:
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
            product=ride.product,
            surge_multiplier=ride.surge_multiplier or "1.0",
            fare_estimate=pricing.FareEstimateOut(**ride.fare_estimate),
            fare=FareOut(**ride.fare) if ride.fare else None,
            payment=payment,
            payment_method_id=ride.payment_method_id,
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


class ReceiptOut(ResponseBody):
    """What a finished ride cost and why: a completed trip, or the fee of a ride that
    ended without one."""

    ride_id: str
    status: str
    rider_id: str
    driver: DriverSummary | None
    vehicle: Vehicle | None
    pickup: Point
    dropoff: Point
    route: list[Point] = Field(description="The trip's recorded points (thinned), in order")
    distance_m: float | None = Field(description="Distance driven, when completed")
    duration_s: float | None
    surge_multiplier: str
    fare: FareOut = Field(description="The itemized final fare, or the fee")
    estimate: pricing.FareEstimateOut = Field(description="The itemized estimate given at request")
    estimate_difference: str | None = Field(
        description="Final minus estimated amount; null for a fee", examples=["1.20"]
    )
    payment: PaymentOut | None = Field(
        description="The payment of this ride; null until the payments domain has opened it"
    )
    cancel_reason: str | None
    cancelled_by: str | None
    requested_at: datetime
    accepted_at: datetime | None
    arrived_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None

    @classmethod
    def of(cls, ride: Ride, *, payment: PaymentOut | None) -> ReceiptOut:
        if ride.fare is None:
            raise ValueError("a receipt needs a fare")
        snap: dict[str, Any] = ride.driver_snapshot or {}
        fare = FareOut(**ride.fare)
        return cls(
            ride_id=ride.id,
            status=ride.status,
            rider_id=ride.rider_id,
            driver=DriverSummary(driver_id=ride.driver_id, name=snap.get("name", ""))
            if ride.driver_id
            else None,
            vehicle=Vehicle(**snap["vehicle"]) if snap.get("vehicle") else None,
            pickup=Point(latitude=ride.start_latitude, longitude=ride.start_longitude),
            dropoff=Point(latitude=ride.end_latitude, longitude=ride.end_longitude),
            route=[Point(latitude=lat, longitude=lon) for lat, lon in ride.route_points or []],
            distance_m=ride.distance_m,
            duration_s=ride.duration_s,
            surge_multiplier=ride.surge_multiplier or "1.0",
            fare=fare,
            estimate=pricing.FareEstimateOut(**ride.fare_estimate),
            estimate_difference=fare.estimate_difference,
            payment=payment,
            cancel_reason=ride.cancel_reason,
            cancelled_by=ride.cancelled_by,
            requested_at=ride.created_at,
            accepted_at=ride.accepted_at,
            arrived_at=ride.arrived_at,
            started_at=ride.started_at,
            completed_at=ride.completed_at,
            cancelled_at=ride.cancelled_at,
        )
