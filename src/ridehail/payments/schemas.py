"""API request and response bodies of the payments domain."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ridehail.payments.ledger import DailyPayable, EarningLine
from ridehail.payments.models import Payment, PaymentMethod, Refund
from ridehail.web.schemas import MoneyOut, RequestBody, ResponseBody

#: A decimal string with at most two decimals ("12.40"); never a JSON number.
AmountString = Annotated[
    str, Field(pattern=r"^\d{1,10}(\.\d{1,2})?$", examples=["5.00"], max_length=13)
]


def money(amount: Decimal, currency: str) -> MoneyOut:
    return MoneyOut(amount=f"{amount:.2f}", currency=currency)


# --- payment methods -----------------------------------------------------------------------


class CardMethodCreate(RequestBody):
    """A card, as the provider's token from its tokenization (the card number never comes
    here); the provider tells us the brand, last four digits and expiry."""

    type: Literal["card"]
    token: str = Field(
        pattern=r"^tok_[A-Za-z0-9_]{1,100}$", examples=["tok_visa"], description="Provider token"
    )
    make_default: bool = False


class CashMethodCreate(RequestBody):
    type: Literal["cash"]
    make_default: bool = False


PaymentMethodCreate = Annotated[CardMethodCreate | CashMethodCreate, Field(discriminator="type")]


class PaymentMethodOut(ResponseBody):
    payment_method_id: str
    type: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    is_default: bool
    created_at: datetime

    @classmethod
    def of(cls, method: PaymentMethod) -> PaymentMethodOut:
        return cls(
            payment_method_id=method.id,
            type=method.type,
            brand=method.brand,
            last4=method.last4,
            exp_month=method.exp_month,
            exp_year=method.exp_year,
            is_default=method.is_default,
            created_at=method.created_at,
        )


class PaymentMethodList(ResponseBody):
    payment_methods: list[PaymentMethodOut] = Field(description="The default first")


# --- payments and refunds ------------------------------------------------------------------


class RefundOut(ResponseBody):
    refund_id: str
    payment_id: str
    amount: MoneyOut
    status: str = Field(description="processing, pending (being retried), succeeded, failed")
    reason: str | None
    failure_reason: str | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, refund: Refund) -> RefundOut:
        return cls(
            refund_id=refund.id,
            payment_id=refund.payment_id,
            amount=money(refund.amount, refund.currency),
            status=refund.status,
            reason=refund.reason,
            failure_reason=refund.failure_reason,
            created_at=refund.created_at,
            completed_at=refund.completed_at,
        )


class PaymentOut(ResponseBody):
    """A ride's payment: its fare (or fee) and how collecting it went."""

    status: str = Field(description="pending, processing, captured or failed")
    payment_id: str
    ride_id: str
    kind: str = Field(description="ride, cancellation or no_show")
    method: str = Field(description="card or cash")
    brand: str | None
    last4: str | None
    amount: MoneyOut
    refunded_amount: MoneyOut
    attempts: int
    failure_code: str | None
    failure_reason: str | None
    created_at: datetime
    captured_at: datetime | None
    failed_at: datetime | None
    refunds: list[RefundOut]

    @classmethod
    def of(cls, payment: Payment, refunds: list[Refund]) -> PaymentOut:
        return cls(
            status=payment.status,
            payment_id=payment.id,
            ride_id=payment.ride_id,
            kind=payment.kind,
            method=payment.method,
            brand=payment.brand,
            last4=payment.last4,
            amount=money(payment.amount, payment.currency),
            refunded_amount=money(payment.refunded_amount, payment.currency),
            attempts=payment.attempts,
            failure_code=payment.failure_code,
            failure_reason=payment.failure_reason,
            created_at=payment.created_at,
            captured_at=payment.captured_at,
            failed_at=payment.failed_at,
            refunds=[RefundOut.of(r) for r in refunds],
        )


class PaymentPage(ResponseBody):
    payments: list[PaymentOut]
    next_page_token: str | None


class PaymentRetry(RequestBody):
    payment_method_id: str | None = Field(
        default=None,
        max_length=40,
        description="A card of the payment's rider; default: their default card",
    )


class RefundCreate(RequestBody):
    amount: AmountString | None = Field(
        default=None, description="Decimal string; default: all that is left to refund"
    )
    reason: str | None = Field(default=None, max_length=500)

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: str | None) -> str | None:
        if value is not None and Decimal(value) <= 0:
            raise ValueError("amount must be more than zero")
        return value


# --- earnings and payouts ------------------------------------------------------------------


class EarningLineOut(ResponseBody):
    ride_id: str | None
    payment_id: str | None
    kind: str
    method: str | None
    gross: MoneyOut = Field(description="Fare less booking fee (or the fee)")
    commission: MoneyOut
    net: MoneyOut = Field(description="What the driver earned: gross - commission")
    cash_collected: MoneyOut = Field(description="Cash the driver took from the rider")
    posted_at: datetime

    @classmethod
    def of(cls, line: EarningLine) -> EarningLineOut:
        c = line.currency
        return cls(
            ride_id=line.ride_id,
            payment_id=line.payment_id,
            kind=line.kind,
            method=line.method,
            gross=money(line.gross, c),
            commission=money(line.commission, c),
            net=money(line.net, c),
            cash_collected=money(line.cash_collected, c),
            posted_at=line.posted_at,
        )


class EarningsTotals(ResponseBody):
    gross: MoneyOut
    commission: MoneyOut
    net: MoneyOut
    cash_collected: MoneyOut
    payable: MoneyOut = Field(description="net - cash_collected: what the platform owes")


class EarningsOut(ResponseBody):
    driver_id: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    lines: list[EarningLineOut]
    totals: EarningsTotals


class DriverPayoutOut(ResponseBody):
    driver_id: str
    net_payable: MoneyOut = Field(description="Negative: the driver owes the platform")
    transactions: int

    @classmethod
    def of(cls, item: DailyPayable) -> DriverPayoutOut:
        return cls(
            driver_id=item.driver_id,
            net_payable=money(item.net_payable, item.currency),
            transactions=item.transactions,
        )


class PayoutDayOut(ResponseBody):
    date: date
    drivers: list[DriverPayoutOut]


class PayoutsOut(ResponseBody):
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    timezone: str
    days: list[PayoutDayOut]
