from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ridehail.kernel.money import Money, round_money
from ridehail.pricing.domain import FarePolicy, compute_fare, estimate_fare, estimate_route

POLICY = FarePolicy(
    base=Decimal("2.50"),
    per_km=Decimal("1.20"),
    per_minute=Decimal("0.30"),
    minimum=Decimal("6.00"),
    booking_fee=Decimal("1.00"),
)


def test_golden_fare_ten_km_twenty_minutes() -> None:
    fare = compute_fare(POLICY, distance_m=10_000, duration_s=1_200)
    assert fare.base.amount == Decimal("2.50")
    assert fare.distance.amount == Decimal("12.00")
    assert fare.time.amount == Decimal("6.00")
    assert fare.booking_fee.amount == Decimal("1.00")
    assert fare.minimum_adjustment.amount == Decimal("0.00")
    assert fare.total == Money(Decimal("21.50"), "USD")


def test_minimum_fare_tops_up_short_trips() -> None:
    fare = compute_fare(POLICY, distance_m=500, duration_s=60)
    # 2.50 + 0.60 + 0.30 + 1.00 = 4.40 -> topped up by 1.60 to the 6.00 minimum
    assert fare.minimum_adjustment.amount == Decimal("1.60")
    assert fare.total.amount == Decimal("6.00")


def test_lines_round_half_up_to_cents() -> None:
    # 1.20 * 1.0125 km = 1.215 -> 1.22 (half up); 0.30 * 0.75 min = 0.225 -> 0.23
    fare = compute_fare(POLICY, distance_m=1_012.5 + 0.4, duration_s=45)
    assert fare.distance.amount == Decimal("1.22")
    assert fare.time.amount == Decimal("0.23")


def test_json_is_decimal_strings() -> None:
    data = compute_fare(POLICY, distance_m=10_000, duration_s=1_200).as_json()
    assert data["amount"] == "21.50" and data["currency"] == "USD"
    assert data["breakdown"]["distance"] == "12.00"
    assert all(isinstance(v, str) for v in data["breakdown"].values())


def test_negative_inputs_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        compute_fare(POLICY, distance_m=-1, duration_s=0)


def test_estimate_uses_detour_factor_and_assumed_speed() -> None:
    # about 1.1 km north along a meridian
    start, end = (60.0, 24.0), (60.01, 24.0)
    distance, duration = estimate_route(POLICY, start=start, end=end)
    assert distance == pytest.approx(1_111.95 * 1.3, rel=1e-3)
    assert duration == pytest.approx(distance / (25_000 / 3600))
    assert estimate_fare(POLICY, start=start, end=end).distance_m == round(distance)


@given(
    distance=st.floats(min_value=0, max_value=500_000, allow_nan=False),
    duration=st.floats(min_value=0, max_value=36_000, allow_nan=False),
)
def test_breakdown_always_adds_up_and_respects_minimum(distance: float, duration: float) -> None:
    fare = compute_fare(POLICY, distance_m=distance, duration_s=duration)
    lines = [fare.base, fare.distance, fare.time, fare.booking_fee, fare.minimum_adjustment]
    assert sum((m.amount for m in lines), Decimal(0)) == fare.total.amount
    assert fare.total.amount >= POLICY.minimum
    assert fare.total.amount == round_money(fare.total.amount)


def test_money_refuses_float_and_mixed_currency() -> None:
    with pytest.raises(TypeError):
        Money(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="combine"):
        _ = Money.of("1.00", "USD") + Money.of("1.00", "EUR")
