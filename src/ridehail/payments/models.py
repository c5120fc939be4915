"""The payments domain's tables. Rides and drivers are referenced by id only."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ridehail.db import Base, UTCDateTime

Amount = Numeric(12, 2, asdecimal=True)

_ACTIVE_DEFAULT_SQL = "is_default AND removed_at IS NULL"
_ACTIVE_CASH_SQL = "type = 'cash' AND removed_at IS NULL"


class PaymentMethod(Base):
    """A rider's way to pay: a card (the provider's token plus what it told us about the
    card: never its number) or cash."""

    __tablename__ = "payments_methods"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    rider_id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(8))
    provider_token: Mapped[str | None] = mapped_column(String(120), nullable=True)
    brand: Mapped[str | None] = mapped_column(String(20), nullable=True)
    last4: Mapped[str | None] = mapped_column(String(4), nullable=True)
    exp_month: Mapped[int | None] = mapped_column(Integer, nullable=True)
    exp_year: Mapped[int | None] = mapped_column(Integer, nullable=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Removed methods are kept: payments still name them.
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_payments_methods_rider_id_id", "rider_id", "id"),
        Index(
            "uq_payments_methods_one_default_per_rider",
            "rider_id",
            unique=True,
            postgresql_where=text(_ACTIVE_DEFAULT_SQL),
            sqlite_where=text(_ACTIVE_DEFAULT_SQL),
        ),
        Index(
            "uq_payments_methods_one_cash_per_rider",
            "rider_id",
            unique=True,
            postgresql_where=text(_ACTIVE_CASH_SQL),
            sqlite_where=text(_ACTIVE_CASH_SQL),
        ),
    )


class Payment(Base):
    """What a rider owes for one ride (its fare, or a cancellation or no-show fee), and
    how collecting it is going. One per ride."""

    __tablename__ = "payments_payments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    ride_id: Mapped[str] = mapped_column(String(40), unique=True)
    rider_id: Mapped[str] = mapped_column(String(40))
    driver_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(8))
    payment_method_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    provider_token: Mapped[str | None] = mapped_column(String(120), nullable=True)
    brand: Mapped[str | None] = mapped_column(String(20), nullable=True)
    last4: Mapped[str | None] = mapped_column(String(4), nullable=True)
    amount: Mapped[Decimal] = mapped_column(Amount)
    currency: Mapped[str] = mapped_column(String(3))
    #: The split, fixed when the payment is opened (a later rate change does not move it).
    booking_fee: Mapped[Decimal] = mapped_column(Amount)
    commission: Mapped[Decimal] = mapped_column(Amount)
    driver_earning: Mapped[Decimal] = mapped_column(Amount)
    status: Mapped[str] = mapped_column(String(12))
    #: Provider calls made; also the fencing token of the claim that made the last one.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Part of the idempotency key; a new one only when an admin retries after a definite
    #: failure, so a retry after an unknown outcome can never charge twice.
    generation: Mapped[int] = mapped_column(Integer, default=1)
    #: ``attempts`` when an admin last retried: attempts - this = attempts since then.
    attempts_at_retry: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_outcome: Mapped[str | None] = mapped_column(String(12), nullable=True)
    failure_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    provider_charge_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    refunded_amount: Mapped[Decimal] = mapped_column(Amount)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_payments_payments_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_payments_payments_rider_id_id", "rider_id", "id"),
    )

    @property
    def idempotency_key(self) -> str:
        return f"{self.id}:{self.generation}"


class Refund(Base):
    __tablename__ = "payments_refunds"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(40))
    amount: Mapped[Decimal] = mapped_column(Amount)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    provider_refund_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_payments_refunds_payment_id", "payment_id"),
        Index("ix_payments_refunds_status_next_attempt_at", "status", "next_attempt_at"),
    )

    @property
    def idempotency_key(self) -> str:
        return f"refund:{self.id}"


class LedgerTransaction(Base):
    """One money movement; its entries sum to zero per currency. Append-only."""

    __tablename__ = "payments_ledger_transactions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: What caused it ("capture:<payment>", "refund:<refund>"): at most one transaction each.
    reference: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    payment_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    ride_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    driver_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    method: Mapped[str | None] = mapped_column(String(8), nullable=True)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_payments_ledger_transactions_posted_at", "posted_at"),
        Index("ix_payments_ledger_transactions_driver_id_posted_at", "driver_id", "posted_at"),
    )


class LedgerEntry(Base):
    """One side of a transaction: debits positive, credits negative. Append-only."""

    __tablename__ = "payments_ledger_entries"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    transaction_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("payments_ledger_transactions.id")
    )
    account: Mapped[str] = mapped_column(String(80))
    amount: Mapped[Decimal] = mapped_column(Amount)
    currency: Mapped[str] = mapped_column(String(3))
    #: What the entry is within its transaction (charge, earning, commission, ...).
    line: Mapped[str] = mapped_column(String(24))

    __table_args__ = (
        Index("ix_payments_ledger_entries_transaction_id", "transaction_id"),
        Index("ix_payments_ledger_entries_account", "account"),
    )
