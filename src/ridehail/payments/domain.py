"""Payment rules without I/O: statuses, who gets what of a fare, retry timing, and the
double-entry postings each money movement makes."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from ridehail.kernel.money import round_money

ZERO = Decimal("0.00")


class PaymentStatus(StrEnum):
    PENDING = "pending"  # due (now or after a backoff)
    PROCESSING = "processing"  # claimed by a worker, a provider call in flight
    CAPTURED = "captured"
    FAILED = "failed"


class RefundStatus(StrEnum):
    PROCESSING = "processing"
    PENDING = "pending"  # the provider's answer was lost; a worker asks again
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PaymentKind(StrEnum):
    RIDE = "ride"
    CANCELLATION = "cancellation"
    NO_SHOW = "no_show"


class MethodType(StrEnum):
    CARD = "card"
    CASH = "cash"


class Outcome(StrEnum):
    """What one provider call came to."""

    SUCCEEDED = "succeeded"
    DECLINED = "declined"  # a definite no (the card network said so): not retried
    UNKNOWN = "unknown"  # timed out: it may have happened; retried with the same key
    ERROR = "error"  # the provider failed before acting: retried with the same key


#: Outcomes after which the next attempt must reuse the idempotency key (the provider may
#: have acted): only a definite answer lets an admin's retry start a new generation.
UNCERTAIN = frozenset({Outcome.UNKNOWN, Outcome.ERROR})


@dataclass(frozen=True, slots=True)
class Split:
    """Who gets what of an amount the rider pays."""

    booking_fee: Decimal  # all the platform's
    commission: Decimal  # the platform's share of the rest
    driver_earning: Decimal

    @property
    def gross(self) -> Decimal:
        """What the driver's work earned before commission (the amount less booking fee)."""
        return self.commission + self.driver_earning


def split(
    amount: Decimal, *, booking_fee: Decimal, rate: Decimal, has_driver: bool = True
) -> Split:
    """The booking fee goes to the platform; of the rest the platform keeps ``rate``
    (rounded half up to cents) and the driver earns the remainder, so the three parts
    always add up to ``amount`` exactly. Without a driver everything is the platform's."""
    amount = round_money(amount)
    booking_fee = min(round_money(booking_fee), amount)
    rest = amount - booking_fee
    if not has_driver:
        return Split(booking_fee=booking_fee, commission=rest, driver_earning=ZERO)
    commission = round_money(rest * rate)
    return Split(booking_fee=booking_fee, commission=commission, driver_earning=rest - commission)


def retry_delay_s(attempts: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter" after the ``attempts``-th failed attempt:
    half the capped delay fixed, half random, so workers that failed together spread out."""
    ceiling = min(cap_s, base_s * 2.0 ** min(max(attempts - 1, 0), 32))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


# --- Ledger postings -----------------------------------------------------------------------

#: Money at the card processor, owed to us (an asset: debits increase it).
PROVIDER_CLEARING = "provider_clearing"
PLATFORM_COMMISSION = "platform:commission"
PLATFORM_BOOKING_FEES = "platform:booking_fees"
#: Money the platform gave back (an expense: refunds are borne by the platform).
PLATFORM_REFUNDS = "platform:refunds"


def driver_account(driver_id: str) -> str:
    """What the platform owes the driver (credit-normal: a credit is money owed to them; a
    negative balance is money the driver owes, e.g. commission on cash fares)."""
    return f"driver:{driver_id}"


@dataclass(frozen=True, slots=True)
class Posting:
    """One ledger entry: debits positive, credits negative."""

    account: str
    amount: Decimal
    currency: str
    line: str


class UnbalancedTransaction(ValueError):
    pass


def check_balanced(postings: list[Posting]) -> None:
    """Every transaction has two entries at least and sums to zero per currency; amounts are
    whole cents and never zero."""
    if len(postings) < 2:
        raise UnbalancedTransaction("a transaction needs at least two entries")
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for p in postings:
        if p.amount == 0 or round_money(p.amount) != p.amount:
            raise UnbalancedTransaction(f"entry amount {p.amount} is zero or not whole cents")
        totals[p.currency] += p.amount
    unbalanced = {c: t for c, t in totals.items() if t != 0}
    if unbalanced:
        raise UnbalancedTransaction(f"entries do not sum to zero: {unbalanced}")


def _nonzero(postings: list[Posting]) -> list[Posting]:
    return [p for p in postings if p.amount != 0]


def capture_postings(
    *, method: MethodType, amount: Decimal, currency: str, parts: Split, driver_id: str | None
) -> list[Posting]:
    """A captured charge. Card: the processor owes us the amount; we owe the driver their
    earning. Cash: the driver holds the whole amount already, so their account is debited
    with it and credited with their earning: they owe the platform its share."""
    c = currency
    postings = [
        Posting(PLATFORM_COMMISSION, -parts.commission, c, "commission"),
        Posting(PLATFORM_BOOKING_FEES, -parts.booking_fee, c, "booking_fee"),
    ]
    if driver_id is not None:
        postings.append(Posting(driver_account(driver_id), -parts.driver_earning, c, "earning"))
    if method is MethodType.CARD:
        postings.append(Posting(PROVIDER_CLEARING, amount, c, "charge"))
    else:
        if driver_id is None:
            raise ValueError("a cash payment needs the driver who collected it")
        postings.append(Posting(driver_account(driver_id), amount, c, "cash_collected"))
    postings = _nonzero(postings)
    check_balanced(postings)
    return postings


def refund_postings(*, amount: Decimal, currency: str) -> list[Posting]:
    """Money back to the rider's card: the processor pays it out of what it owes us."""
    postings = [
        Posting(PLATFORM_REFUNDS, amount, currency, "refund"),
        Posting(PROVIDER_CLEARING, -amount, currency, "refund"),
    ]
    check_balanced(postings)
    return postings
