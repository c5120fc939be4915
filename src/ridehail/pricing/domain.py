"""Fare maths. Pure: Decimal in, Decimal out; rounding happens once, at the end, to cents."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ridehail.kernel.geo import haversine_m
from ridehail.kernel.money import Money, round_money

_KM = Decimal(1000)
_MINUTE = Decimal(60)


@dataclass(frozen=True, slots=True)
class FarePolicy:
    base: Decimal
    per_km: Decimal
    per_minute: Decimal
    minimum: Decimal
    booking_fee: Decimal
    currency: str = "USD"
    detour_factor: float = 1.3
    assumed_speed_kmh: float = 25.0


@dataclass(frozen=True, slots=True)
class Fare:
    """An itemized fare. ``total`` is what the rider pays."""

    base: Money
    distance: Money
    time: Money
    booking_fee: Money
    minimum_adjustment: Money
    total: Money
    distance_m: int
    duration_s: int

    def as_json(self) -> dict[str, Any]:
        return {
            **self.total.as_json(),
            "distance_m": self.distance_m,
            "duration_s": self.duration_s,
            "breakdown": {
                "base": self.base.as_json()["amount"],
                "distance": self.distance.as_json()["amount"],
                "time": self.time.as_json()["amount"],
                "booking_fee": self.booking_fee.as_json()["amount"],
                "minimum_adjustment": self.minimum_adjustment.as_json()["amount"],
            },
        }


def compute_fare(policy: FarePolicy, *, distance_m: float, duration_s: float) -> Fare:
    """The fare for a trip of ``distance_m`` metres lasting ``duration_s`` seconds.

    Each line is rounded to cents, then summed, so the itemized lines always add up to the
    total shown. The minimum applies to the whole fare including the booking fee.
    """
    if distance_m < 0 or duration_s < 0:
        raise ValueError("distance and duration cannot be negative")
    meters = round(distance_m)
    seconds = round(duration_s)
    cur = policy.currency
    base = Money(round_money(policy.base), cur)
    distance = Money(round_money(policy.per_km * Decimal(meters) / _KM), cur)
    time = Money(round_money(policy.per_minute * Decimal(seconds) / _MINUTE), cur)
    fee = Money(round_money(policy.booking_fee), cur)
    subtotal = base + distance + time + fee
    adjustment = Money(max(Decimal(0), round_money(policy.minimum) - subtotal.amount), cur)
    return Fare(
        base=base,
        distance=distance,
        time=time,
        booking_fee=fee,
        minimum_adjustment=adjustment,
        total=subtotal + adjustment,
        distance_m=meters,
        duration_s=seconds,
    )


def estimate_route(
    policy: FarePolicy, *, start: tuple[float, float], end: tuple[float, float]
) -> tuple[float, float]:
    """(distance_m, duration_s) of a trip estimated from the straight line between two points:
    the road distance is the straight line times a detour factor, driven at an assumed speed."""
    straight = haversine_m(start[0], start[1], end[0], end[1])
    distance = straight * policy.detour_factor
    duration = distance / (policy.assumed_speed_kmh * 1000 / 3600)
    return distance, duration


def estimate_fare(
    policy: FarePolicy, *, start: tuple[float, float], end: tuple[float, float]
) -> Fare:
    distance, duration = estimate_route(policy, start=start, end=end)
    return compute_fare(policy, distance_m=distance, duration_s=duration)
