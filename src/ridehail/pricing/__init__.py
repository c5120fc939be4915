"""Pricing: fare estimates and final fares."""

from decimal import Decimal

from ridehail.pricing.domain import Fare, FarePolicy, compute_fare, estimate_fare, estimate_route
from ridehail.settings import Settings


def policy_from_settings(settings: Settings) -> FarePolicy:
    return FarePolicy(
        base=Decimal(settings.fare_base),
        per_km=Decimal(settings.fare_per_km),
        per_minute=Decimal(settings.fare_per_minute),
        minimum=Decimal(settings.fare_minimum),
        booking_fee=Decimal(settings.fare_booking_fee),
        currency=settings.currency,
        detour_factor=settings.fare_detour_factor,
        assumed_speed_kmh=settings.fare_assumed_speed_kmh,
    )


__all__ = [
    "Fare",
    "FarePolicy",
    "compute_fare",
    "estimate_fare",
    "estimate_route",
    "policy_from_settings",
]
