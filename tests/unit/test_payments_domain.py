"""Payment rules: the split of a fare, retry timing, and balanced postings."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from ridehail.payments.domain import (
    MethodType,
    Posting,
    UnbalancedTransaction,
    capture_postings,
    check_balanced,
    refund_postings,
    retry_delay_s,
    split,
)

D = Decimal


@pytest.mark.parametrize(
    ("amount", "booking", "rate", "commission", "driver"),
    [
        ("12.40", "1.00", "0.20", "2.28", "9.12"),
        ("6.00", "1.00", "0.20", "1.00", "4.00"),
        ("10.03", "1.00", "0.25", "2.26", "6.77"),  # 9.03 * 0.25 = 2.2575 -> 2.26 (half up)
        ("5.00", "0.00", "0.20", "1.00", "4.00"),  # a fee: no booking fee
        ("0.50", "1.00", "0.20", "0.00", "0.00"),  # booking fee capped at the amount
        ("7.77", "0.00", "0", "0.00", "7.77"),
        ("7.77", "0.00", "1", "7.77", "0.00"),
    ],
)
def test_split_adds_up_to_the_amount(
    amount: str, booking: str, rate: str, commission: str, driver: str
) -> None:
    parts = split(D(amount), booking_fee=D(booking), rate=D(rate))
    assert (parts.commission, parts.driver_earning) == (D(commission), D(driver))
    assert parts.booking_fee + parts.commission + parts.driver_earning == D(amount)


def test_split_without_a_driver_is_all_the_platforms() -> None:
    parts = split(D("5.00"), booking_fee=D("0"), rate=D("0.2"), has_driver=False)
    assert (parts.commission, parts.driver_earning) == (D("5.00"), D("0.00"))


def test_retry_delay_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    for attempts, ceiling in ((1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0), (50, 60.0)):
        delays = [retry_delay_s(attempts, base_s=2.0, cap_s=60.0, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 10  # jittered, not lockstep


@pytest.mark.parametrize("method", [MethodType.CARD, MethodType.CASH])
def test_captures_balance(method: MethodType) -> None:
    parts = split(D("12.40"), booking_fee=D("1.00"), rate=D("0.20"))
    postings = capture_postings(
        method=method, amount=D("12.40"), currency="USD", parts=parts, driver_id="drv_1"
    )
    assert sum(p.amount for p in postings) == 0
    driver = sum(p.amount for p in postings if p.account == "driver:drv_1")
    # Card: the platform owes the driver the earning. Cash: the driver owes the platform.
    assert driver == (D("-9.12") if method is MethodType.CARD else D("3.28"))


def test_refunds_balance() -> None:
    assert sum(p.amount for p in refund_postings(amount=D("3.00"), currency="USD")) == 0


@pytest.mark.parametrize(
    "postings",
    [
        [Posting("a", D("1.00"), "USD", "x")],
        [Posting("a", D("1.00"), "USD", "x"), Posting("b", D("-0.99"), "USD", "x")],
        [Posting("a", D("1.00"), "USD", "x"), Posting("b", D("-1.00"), "EUR", "x")],
        [Posting("a", D("1.005"), "USD", "x"), Posting("b", D("-1.005"), "USD", "x")],
        [Posting("a", D("0"), "USD", "x"), Posting("b", D("0"), "USD", "x")],
    ],
)
def test_unbalanced_transactions_are_refused(postings: list[Posting]) -> None:
    with pytest.raises(UnbalancedTransaction):
        check_balanced(postings)
