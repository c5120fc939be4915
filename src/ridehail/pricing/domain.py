"""Fare maths. Pure: Decimal in, Decimal out, no framework.

Rounding rules (the golden tests in tests/unit/test_fares.py hold them):

* Every line is computed exactly in Decimal and rounded once, to cents, half away from zero
  (:func:`~ridehail.kernel.money.round_money`); the total is the sum of the rounded lines,
  so the itemized lines always add up to the amount shown.
* Surge multiplies the trip's metered part only: ``surge`` is its own line,
  ``round(base + distance + time) x (multiplier - 1)`` computed from the three rounded
  lines. The booking fee, the waiting charge and the cancellation and no-show fees are
  never surged.
* The waiting charge is ``waiting_per_minute`` per minute (pro rata, by the whole second)
  of waiting at pickup beyond ``waiting_free_s``.
* The minimum fare applies to the trip fare, i.e. to the sum of every other line
  (base, distance, time, surge, waiting, booking fee): ``minimum_adjustment`` tops that
  sum up to ``minimum``. Fees for a ride that never happened (cancellation, no-show) are
  fixed amounts and know no minimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ridehail.kernel.geo import haversine_m
from ridehail.kernel.money import Money, round_money

_KM = Decimal(1000)
_MINUTE = Decimal(60)
ONE = Decimal(1)
ZERO = Decimal("0.00")

#: The fee kinds of a ride that ended without a trip, as RideCancelled names them.
CANCELLATION = "cancellation"
NO_SHOW = "no_show"
#: The product whose prices are the fare_* settings; others override some of them.
STANDARD = "standard"


@dataclass(frozen=True, slots=True)
class FarePolicy:
    """One product's prices ("standard", or one of the configured fare_products)."""

    base: Decimal
    per_km: Decimal
    per_minute: Decimal
    minimum: Decimal
    booking_fee: Decimal
    currency: str = "USD"
    detour_factor: float = 1.3
    assumed_speed_kmh: float = 25.0
    waiting_free_s: float = 120.0
    waiting_per_minute: Decimal = Decimal("0.30")
    cancellation_grace_s: float = 120.0
    cancellation_fee: Decimal = Decimal("5.00")
    no_show_wait_s: float = 300.0
    no_show_fee: Decimal = Decimal("5.00")
    product: str = STANDARD


def format_multiplier(multiplier: Decimal) -> str:
    """A multiplier as it is stored and shown: one decimal at least ("1.0", "1.5", "2.25")."""
    text = f"{multiplier.normalize():f}"
    return text if "." in text else f"{text}.0"


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
    surge: Money | None = None
    waiting: Money | None = None
    surge_multiplier: Decimal = ONE
    waiting_s: int = 0
    product: str = STANDARD

    def lines(self) -> dict[str, Money]:
        cur = self.total.currency
        return {
            "base": self.base,
            "distance": self.distance,
            "time": self.time,
            "surge": self.surge or Money(ZERO, cur),
            "waiting": self.waiting or Money(ZERO, cur),
            "booking_fee": self.booking_fee,
            "minimum_adjustment": self.minimum_adjustment,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            **self.total.as_json(),
            "distance_m": self.distance_m,
            "duration_s": self.duration_s,
            "breakdown": {k: m.as_json()["amount"] for k, m in self.lines().items()},
            "surge_multiplier": format_multiplier(self.surge_multiplier),
            "waiting_s": self.waiting_s,
            "product": self.product,
        }


def _money(amount: Decimal, currency: str) -> Money:
    return Money(round_money(amount), currency)


def compute_fare(
    policy: FarePolicy,
    *,
    distance_m: float,
    duration_s: float,
    surge_multiplier: Decimal = ONE,
    waiting_s: float = 0.0,
) -> Fare:
    """The fare for a trip of ``distance_m`` metres lasting ``duration_s`` seconds, at the
    surge multiplier locked at request time, after ``waiting_s`` seconds of waiting at
    pickup. Rounding: see the module docstring."""
    if distance_m < 0 or duration_s < 0 or waiting_s < 0:
        raise ValueError("distance, duration and waiting cannot be negative")
    if (
        not isinstance(surge_multiplier, Decimal)
        or not surge_multiplier.is_finite()
        or surge_multiplier < ONE
    ):
        raise ValueError("the surge multiplier is a Decimal of at least 1")
    meters = round(distance_m)
    seconds = round(duration_s)
    waited = round(waiting_s)
    cur = policy.currency
    base = _money(policy.base, cur)
    distance = _money(policy.per_km * Decimal(meters) / _KM, cur)
    time = _money(policy.per_minute * Decimal(seconds) / _MINUTE, cur)
    metered = base + distance + time
    surge = _money(metered.amount * (surge_multiplier - ONE), cur)
    chargeable_wait = max(0, waited - round(policy.waiting_free_s))
    waiting = _money(policy.waiting_per_minute * Decimal(chargeable_wait) / _MINUTE, cur)
    fee = _money(policy.booking_fee, cur)
    subtotal = metered + surge + waiting + fee
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
        surge=surge,
        waiting=waiting,
        surge_multiplier=surge_multiplier,
        waiting_s=waited,
        product=policy.product,
    )


def estimate_difference(final: dict[str, Any], estimate: dict[str, Any]) -> str:
    """Final minus estimated amount, a signed decimal string ("1.20", "-0.40", "0.00")."""
    diff = round_money(Decimal(final["amount"]) - Decimal(estimate["amount"]))
    return f"{diff:f}"


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
    policy: FarePolicy,
    *,
    start: tuple[float, float],
    end: tuple[float, float],
    surge_multiplier: Decimal = ONE,
) -> Fare:
    """The fare of the estimated route at ``surge_multiplier``, with no waiting."""
    distance, duration = estimate_route(policy, start=start, end=end)
    return compute_fare(
        policy, distance_m=distance, duration_s=duration, surge_multiplier=surge_multiplier
    )


@dataclass(frozen=True, slots=True)
class Fee:
    """What a ride that ended without a trip costs the rider."""

    kind: str  # CANCELLATION or NO_SHOW
    amount: Money

    def as_json(self) -> dict[str, Any]:
        """Shaped like a fare (ride.fare), with the fee as its only line."""
        return {
            **self.amount.as_json(),
            "distance_m": 0,
            "duration_s": 0,
            "breakdown": {f"{self.kind}_fee": self.amount.as_json()["amount"]},
            "fee_kind": self.kind,
        }


def rider_cancellation_fee(policy: FarePolicy, *, since_accepted_s: float) -> Fee | None:
    """The fee a rider owes for cancelling ``since_accepted_s`` seconds after a driver
    accepted (the caller asks only while the driver is on the way or waiting): none within
    the grace period (the boundary itself included), the cancellation fee after it. A zero
    fee is no fee."""
    if since_accepted_s <= policy.cancellation_grace_s:
        return None
    amount = round_money(policy.cancellation_fee)
    return Fee(CANCELLATION, Money(amount, policy.currency)) if amount > 0 else None


def no_show_due(policy: FarePolicy, *, waited_s: float) -> bool:
    """Whether a driver who has waited ``waited_s`` at pickup may report a no-show: only
    once the wait is at least the limit."""
    return waited_s >= policy.no_show_wait_s


def no_show_fee(policy: FarePolicy) -> Fee | None:
    amount = round_money(policy.no_show_fee)
    return Fee(NO_SHOW, Money(amount, policy.currency)) if amount > 0 else None
