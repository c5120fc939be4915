from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ridehail.kernel.money import Money, round_money
from ridehail.pricing.domain import (
    CANCELLATION,
    NO_SHOW,
    Fare,
    FarePolicy,
    Fee,
    compute_fare,
    estimate_difference,
    estimate_fare,
    estimate_route,
    format_multiplier,
    no_show_due,
    no_show_fee,
    rider_cancellation_fee,
)

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
    lines = list(fare.lines().values())
    assert sum((m.amount for m in lines), Decimal(0)) == fare.total.amount
    assert fare.total.amount >= POLICY.minimum
    assert fare.total.amount == round_money(fare.total.amount)


def test_money_refuses_float_and_mixed_currency() -> None:
    with pytest.raises(TypeError):
        Money(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="combine"):
        _ = Money.of("1.00", "USD") + Money.of("1.00", "EUR")


# --- every fee and rounding rule (issue 5) --------------------------------------------

FEES = FarePolicy(
    base=Decimal("2.50"),
    per_km=Decimal("1.20"),
    per_minute=Decimal("0.30"),
    minimum=Decimal("6.00"),
    booking_fee=Decimal("1.00"),
    waiting_free_s=120,
    waiting_per_minute=Decimal("0.45"),
    cancellation_grace_s=120,
    cancellation_fee=Decimal("4.99"),
    no_show_wait_s=300,
    no_show_fee=Decimal("7.50"),
)


def _lines(fare: Fare) -> dict[str, str]:
    return dict(fare.as_json()["breakdown"])


def test_golden_surge_multiplies_base_distance_and_time_only() -> None:
    # metered 2.50 + 12.00 + 6.00 = 20.50; x1.5 -> surge line 10.25; booking fee unsurged.
    fare = compute_fare(FEES, distance_m=10_000, duration_s=1_200, surge_multiplier=Decimal("1.5"))
    assert _lines(fare) == {
        "base": "2.50",
        "distance": "12.00",
        "time": "6.00",
        "surge": "10.25",
        "waiting": "0.00",
        "booking_fee": "1.00",
        "minimum_adjustment": "0.00",
    }
    assert fare.total.amount == Decimal("31.75")
    assert fare.as_json()["surge_multiplier"] == "1.5"


def test_golden_surge_line_rounds_half_up_from_the_rounded_lines() -> None:
    # metered 2.50 + 1.22 (1.215 half up) + 0.23 (0.225 half up) = 3.95; x1.3 -> 1.185 -> 1.19
    fare = compute_fare(FEES, distance_m=1_012.9, duration_s=45, surge_multiplier=Decimal("1.3"))
    assert (fare.distance.amount, fare.time.amount) == (Decimal("1.22"), Decimal("0.23"))
    assert fare.surge == Money(Decimal("1.19"))


def test_golden_waiting_after_the_free_period_is_charged_unsurged() -> None:
    # 10 min waiting, 2 free: 8 min x 0.45 = 3.60, the same at any surge.
    plain = compute_fare(FEES, distance_m=10_000, duration_s=1_200, waiting_s=600)
    surged = compute_fare(
        FEES, distance_m=10_000, duration_s=1_200, waiting_s=600, surge_multiplier=Decimal(2)
    )
    assert plain.waiting == surged.waiting == Money(Decimal("3.60"))
    assert plain.total.amount == Decimal("25.10")  # 21.50 + 3.60
    assert plain.as_json()["waiting_s"] == 600


def test_golden_waiting_pro_rata_by_the_second_half_up() -> None:
    # 121 s: one chargeable second x 0.45 / 60 = 0.0075 -> 0.01; 120 s: free (boundary).
    assert compute_fare(FEES, distance_m=0, duration_s=0, waiting_s=121).waiting == Money(
        Decimal("0.01")
    )
    assert compute_fare(FEES, distance_m=0, duration_s=0, waiting_s=120).waiting == Money(
        Decimal("0.00")
    )
    # 0.45 x 2.2 s / 60 rounds 2.2 s to 2 s first: 0.015 -> 0.02 (half up, not to even)
    assert compute_fare(FEES, distance_m=0, duration_s=0, waiting_s=122.2).waiting == Money(
        Decimal("0.02")
    )


def test_golden_minimum_tops_up_the_whole_trip_fare_including_surge_and_waiting() -> None:
    # 2.50 + 0.60 + 0.30 = 3.40 metered, x1.2 -> 0.68 surge, 0.45 waiting (1 min), 1.00 fee
    # = 5.53 -> topped up by 0.47 to 6.00.
    fare = compute_fare(
        FEES, distance_m=500, duration_s=60, surge_multiplier=Decimal("1.2"), waiting_s=180
    )
    assert fare.surge == Money(Decimal("0.68"))
    assert fare.waiting == Money(Decimal("0.45"))
    assert fare.minimum_adjustment == Money(Decimal("0.47"))
    assert fare.total.amount == Decimal("6.00")


def test_surge_multiplier_must_be_a_decimal_of_at_least_one() -> None:
    for bad in (Decimal("0.9"), Decimal("NaN"), 1.5):
        with pytest.raises(ValueError, match="surge"):
            compute_fare(FEES, distance_m=1, duration_s=1, surge_multiplier=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        compute_fare(FEES, distance_m=1, duration_s=1, waiting_s=-1)


def test_estimate_carries_the_surge_and_no_waiting() -> None:
    start, end = (60.0, 24.0), (60.05, 24.0)
    plain = estimate_fare(FEES, start=start, end=end)
    surged = estimate_fare(FEES, start=start, end=end, surge_multiplier=Decimal("2.0"))
    metered = plain.base.amount + plain.distance.amount + plain.time.amount
    assert surged.surge == Money(metered)
    assert surged.total.amount == plain.total.amount + metered
    assert surged.waiting == Money(Decimal("0.00"))


def test_golden_cancellation_fee_only_after_the_grace_period() -> None:
    assert rider_cancellation_fee(FEES, since_accepted_s=0) is None
    assert rider_cancellation_fee(FEES, since_accepted_s=120) is None  # the boundary is grace
    fee = rider_cancellation_fee(FEES, since_accepted_s=120.001)
    assert fee == Fee(CANCELLATION, Money(Decimal("4.99")))
    assert fee.as_json() == {
        "amount": "4.99",
        "currency": "USD",
        "distance_m": 0,
        "duration_s": 0,
        "breakdown": {"cancellation_fee": "4.99"},
        "fee_kind": "cancellation",
    }


def test_golden_no_show_fee_after_the_wait_limit() -> None:
    assert not no_show_due(FEES, waited_s=299.9)
    assert no_show_due(FEES, waited_s=300)
    fee = no_show_fee(FEES)
    assert fee is not None and fee.as_json()["breakdown"] == {"no_show_fee": "7.50"}
    assert fee.kind == NO_SHOW


def test_fees_round_half_up_and_a_zero_fee_is_none() -> None:
    odd = FarePolicy(
        base=Decimal(0),
        per_km=Decimal(0),
        per_minute=Decimal(0),
        minimum=Decimal(0),
        booking_fee=Decimal(0),
        cancellation_fee=Decimal("2.345"),
        no_show_fee=Decimal("0.004"),
    )
    fee = rider_cancellation_fee(odd, since_accepted_s=1_000)
    assert fee is not None and fee.amount.amount == Decimal("2.35")
    assert no_show_fee(odd) is None  # rounds to 0.00


def test_estimate_difference_is_signed_final_minus_estimate() -> None:
    assert estimate_difference({"amount": "12.40"}, {"amount": "11.20"}) == "1.20"
    assert estimate_difference({"amount": "10.00"}, {"amount": "10.40"}) == "-0.40"
    assert estimate_difference({"amount": "6.00"}, {"amount": "6.00"}) == "0.00"


def test_multipliers_are_shown_with_one_decimal_at_least() -> None:
    assert format_multiplier(Decimal(1)) == "1.0"
    assert format_multiplier(Decimal("2.50")) == "2.5"
    assert format_multiplier(Decimal("1.25")) == "1.25"


@given(
    distance=st.floats(min_value=0, max_value=500_000, allow_nan=False),
    duration=st.floats(min_value=0, max_value=36_000, allow_nan=False),
    waiting=st.floats(min_value=0, max_value=7_200, allow_nan=False),
    tenths=st.integers(min_value=10, max_value=30),
)
def test_surged_breakdown_adds_up(
    distance: float, duration: float, waiting: float, tenths: int
) -> None:
    fare = compute_fare(
        FEES,
        distance_m=distance,
        duration_s=duration,
        waiting_s=waiting,
        surge_multiplier=Decimal(tenths) / 10,
    )
    data = fare.as_json()
    assert sum(Decimal(v) for v in data["breakdown"].values()) == Decimal(data["amount"])
    assert fare.total.amount >= FEES.minimum
