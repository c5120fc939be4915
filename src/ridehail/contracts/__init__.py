"""Integration events: what one domain tells the others, in the past tense.

They travel as JSON through the outbox and the event bus, so every field is a plain value.
Consumers must be idempotent: the same event may arrive more than once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Self

from ridehail.kernel.clock import utcnow
from ridehail.kernel.ids import new_id


@dataclass(frozen=True, kw_only=True)
class IntegrationEvent:
    topic: ClassVar[str] = ""
    event_id: str = field(default_factory=lambda: new_id("evt"))
    occurred_at: datetime = field(default_factory=utcnow)

    @property
    def aggregate_id(self) -> str:
        raise NotImplementedError

    def to_payload(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["occurred_at"] = self.occurred_at.isoformat()
        return data

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Self:
        data = dict(payload)
        data["occurred_at"] = datetime.fromisoformat(data["occurred_at"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, kw_only=True)
class RideRequested(IntegrationEvent):
    topic: ClassVar[str] = "rides.requested"
    ride_id: str
    rider_id: str
    pickup_latitude: float
    pickup_longitude: float
    seats: int = 1

    @property
    def aggregate_id(self) -> str:
        return self.ride_id


@dataclass(frozen=True, kw_only=True)
class RideStatusChanged(IntegrationEvent):
    """Every transition of a ride after it was requested."""

    topic: ClassVar[str] = "rides.status_changed"
    ride_id: str
    rider_id: str
    driver_id: str | None
    previous_status: str
    status: str
    reason: str | None = None

    @property
    def aggregate_id(self) -> str:
        return self.ride_id


@dataclass(frozen=True, kw_only=True)
class DriverWentOffline(IntegrationEvent):
    topic: ClassVar[str] = "drivers.offline"
    driver_id: str

    @property
    def aggregate_id(self) -> str:
        return self.driver_id


@dataclass(frozen=True, kw_only=True)
class RideCompleted(IntegrationEvent):
    """A trip ended with a final fare: the rider owes ``amount``. Written in the same
    transaction as the ride's move to 'completed'."""

    topic: ClassVar[str] = "rides.completed"
    ride_id: str
    rider_id: str
    driver_id: str
    #: The total the rider pays, a decimal string ("12.40"); never a float.
    amount: str
    currency: str
    #: The itemized final fare exactly as the ride shows it (amount, breakdown, ...).
    fare: dict[str, Any]
    #: The rider's payment method chosen at request time; None means cash.
    payment_method_id: str | None = None

    @property
    def aggregate_id(self) -> str:
        return self.ride_id


@dataclass(frozen=True, kw_only=True)
class RideCancelled(IntegrationEvent):
    """A ride ended without a trip. ``fee_amount`` is "0.00" unless a cancellation fee (the
    rider cancelled after the grace period) or a no-show fee (the driver waited past the
    limit) is due."""

    topic: ClassVar[str] = "rides.cancelled"
    ride_id: str
    rider_id: str
    driver_id: str | None
    cancelled_by: str
    reason: str | None = None
    #: "cancellation", "no_show" or None.
    fee_kind: str | None = None
    fee_amount: str = "0.00"
    currency: str = "USD"
    payment_method_id: str | None = None

    @property
    def aggregate_id(self) -> str:
        return self.ride_id


@dataclass(frozen=True, kw_only=True)
class PaymentCaptured(IntegrationEvent):
    """The rider's money for a ride is ours (card captured, or cash collected by the driver)."""

    topic: ClassVar[str] = "payments.captured"
    payment_id: str
    ride_id: str
    rider_id: str
    driver_id: str | None
    amount: str
    currency: str
    #: "card" or "cash".
    method: str
    #: Card brand and last four digits for receipts; None for cash.
    brand: str | None = None
    last4: str | None = None

    @property
    def aggregate_id(self) -> str:
        return self.ride_id


@dataclass(frozen=True, kw_only=True)
class PaymentFailed(IntegrationEvent):
    """Every attempt to charge failed (a decline, or retries exhausted); an admin may retry."""

    topic: ClassVar[str] = "payments.failed"
    payment_id: str
    ride_id: str
    rider_id: str
    amount: str
    currency: str
    reason: str
    attempts: int

    @property
    def aggregate_id(self) -> str:
        return self.ride_id


@dataclass(frozen=True, kw_only=True)
class PaymentRefunded(IntegrationEvent):
    """Money went back to the rider (all of a payment or part of it)."""

    topic: ClassVar[str] = "payments.refunded"
    refund_id: str
    payment_id: str
    ride_id: str
    rider_id: str
    amount: str
    currency: str
    reason: str | None = None

    @property
    def aggregate_id(self) -> str:
        return self.ride_id


ALL_EVENTS: tuple[type[IntegrationEvent], ...] = (
    RideRequested,
    RideStatusChanged,
    DriverWentOffline,
    RideCompleted,
    RideCancelled,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
)
