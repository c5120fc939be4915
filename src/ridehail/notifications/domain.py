"""Pure rules: who is told what about which event, on which channels; webhook signatures.

No I/O here: the service looks up names and preferences and stores what this decides.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ridehail.contracts import (
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    RideCancelled,
    RideCompleted,
    RideStatusChanged,
)


class Channel(StrEnum):
    IN_APP = "in_app"
    EMAIL = "email"
    SMS = "sms"


@dataclass(frozen=True)
class Preferences:
    """A user's channel choices. Defaults: in-app and email on, SMS off."""

    in_app: bool = True
    email: bool = True
    sms: bool = False

    def allows(self, channel: Channel) -> bool:
        return bool(getattr(self, channel.value))


DEFAULT_PREFERENCES = Preferences()

#: Every kind goes in-app; email carries what a person keeps (receipts, money), SMS what is
#: urgent (the car is here, the card was refused). Preferences then switch channels off.
IN_APP_ONLY = frozenset({Channel.IN_APP})
RECEIPT = frozenset({Channel.IN_APP, Channel.EMAIL})
URGENT = frozenset({Channel.IN_APP, Channel.SMS})
EVERYWHERE = frozenset(Channel)


@dataclass(frozen=True)
class DriverInfo:
    name: str
    vehicle: str


@dataclass(frozen=True)
class Planned:
    """One thing to tell one user (on each of ``channels`` the user allows)."""

    user_id: str
    kind: str
    title: str
    body: str
    channels: frozenset[Channel]
    data: dict[str, Any] = field(default_factory=dict)


def _money(amount: str, currency: str) -> str:
    return f"{amount} {currency}"


def _status_changed(event: RideStatusChanged, driver: DriverInfo | None) -> list[Planned]:
    data: dict[str, Any] = {"ride_id": event.ride_id, "status": event.status}
    if event.status == "driver_en_route":
        if driver is not None:
            body = f"{driver.name} is on the way in a {driver.vehicle}."
            data |= {"driver_id": event.driver_id, "driver_name": driver.name}
        else:
            body = "Your driver is on the way."
            data |= {"driver_id": event.driver_id}
        return [Planned(event.rider_id, "driver_assigned", "Driver assigned", body, URGENT, data)]
    if event.status == "driver_arrived":
        body = "Your driver has arrived at the pickup point."
        return [
            Planned(event.rider_id, "driver_arrived", "Your driver has arrived", body, URGENT, data)
        ]
    if event.status == "no_drivers_available":
        body = "No driver could take your ride. Please try again in a few minutes."
        return [
            Planned(
                event.rider_id,
                "no_drivers_available",
                "No drivers available",
                body,
                IN_APP_ONLY,
                data,
            )
        ]
    return []


def _completed(event: RideCompleted) -> list[Planned]:
    total = _money(event.amount, event.currency)
    receipt = {
        "ride_id": event.ride_id,
        "amount": {"amount": event.amount, "currency": event.currency},
        "fare": event.fare,
    }
    return [
        Planned(
            event.rider_id,
            "trip_completed",
            "Trip completed",
            f"Thanks for riding. Your fare: {total}.",
            RECEIPT,
            receipt,
        ),
        Planned(
            event.driver_id,
            "trip_completed",
            "Trip completed",
            f"Trip completed. Fare: {total}.",
            IN_APP_ONLY,
            receipt,
        ),
    ]


def _cancelled(event: RideCancelled) -> list[Planned]:
    data: dict[str, Any] = {"ride_id": event.ride_id, "cancelled_by": event.cancelled_by}
    fee_due = event.fee_kind is not None and event.fee_amount not in ("0", "0.00", "")
    fee_text = ""
    if fee_due:
        data["fee"] = {
            "kind": event.fee_kind,
            "amount": event.fee_amount,
            "currency": event.currency,
        }
        label = "no-show" if event.fee_kind == "no_show" else "cancellation"
        fee_text = f" A {label} fee of {_money(event.fee_amount, event.currency)} applies."
    planned: list[Planned] = []
    if event.cancelled_by != "rider" or fee_due:
        who = "You cancelled" if event.cancelled_by == "rider" else "Your ride was cancelled"
        body = f"{who} (ride {event.ride_id}).{fee_text}"
        channels = RECEIPT if fee_due else IN_APP_ONLY
        planned.append(
            Planned(event.rider_id, "ride_cancelled", "Ride cancelled", body, channels, data)
        )
    if event.driver_id is not None and event.cancelled_by != "driver":
        body = (
            f"The rider cancelled ride {event.ride_id}."
            if event.cancelled_by == "rider"
            else f"Ride {event.ride_id} was cancelled."
        )
        planned.append(
            Planned(event.driver_id, "ride_cancelled", "Ride cancelled", body, IN_APP_ONLY, data)
        )
    return planned


def _captured(event: PaymentCaptured) -> list[Planned]:
    total = _money(event.amount, event.currency)
    if event.method == "cash":
        how = "paid in cash"
    elif event.brand and event.last4:
        how = f"charged to {event.brand} ending in {event.last4}"
    else:
        how = "charged to your card"
    data = {
        "ride_id": event.ride_id,
        "payment_id": event.payment_id,
        "amount": {"amount": event.amount, "currency": event.currency},
        "method": event.method,
    }
    return [
        Planned(
            event.rider_id, "payment_captured", "Payment receipt", f"{total} {how}.", RECEIPT, data
        )
    ]


def _failed(event: PaymentFailed) -> list[Planned]:
    total = _money(event.amount, event.currency)
    data = {
        "ride_id": event.ride_id,
        "payment_id": event.payment_id,
        "amount": {"amount": event.amount, "currency": event.currency},
        "reason": event.reason,
    }
    body = (
        f"We could not charge {total} for your ride ({event.reason}). "
        "Please update your payment method."
    )
    return [Planned(event.rider_id, "payment_failed", "Payment failed", body, EVERYWHERE, data)]


def _refunded(event: PaymentRefunded) -> list[Planned]:
    total = _money(event.amount, event.currency)
    data = {
        "ride_id": event.ride_id,
        "payment_id": event.payment_id,
        "refund_id": event.refund_id,
        "amount": {"amount": event.amount, "currency": event.currency},
    }
    body = f"{total} is on its way back to you."
    return [Planned(event.rider_id, "payment_refunded", "Refund issued", body, RECEIPT, data)]


#: Topics that tell users something (every topic may still go to webhooks).
USER_TOPICS = frozenset(
    {
        RideStatusChanged.topic,
        RideCompleted.topic,
        RideCancelled.topic,
        PaymentCaptured.topic,
        PaymentFailed.topic,
        PaymentRefunded.topic,
    }
)


def plan(event: object, *, driver: DriverInfo | None = None) -> list[Planned]:
    """What ``event`` tells whom. ``driver`` (name, vehicle) enriches "driver assigned"."""
    if isinstance(event, RideStatusChanged):
        return _status_changed(event, driver)
    rules: list[tuple[type[Any], Callable[[Any], list[Planned]]]] = [
        (RideCompleted, _completed),
        (RideCancelled, _cancelled),
        (PaymentCaptured, _captured),
        (PaymentFailed, _failed),
        (PaymentRefunded, _refunded),
    ]
    for kind, rule in rules:
        if isinstance(event, kind):
            return rule(event)
    return []


# --- Webhook signatures (Stripe style) ---------------------------------------------------

SIGNATURE_HEADER = "Ridehail-Signature"
EVENT_ID_HEADER = "Ridehail-Event-Id"
DELIVERY_ID_HEADER = "Ridehail-Delivery-Id"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``: the receiver recomputes it
    with its copy of the secret and refuses an old ``t`` (replays)."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, header: str, body: bytes) -> bool:
    """What a receiver does (tests use it too)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(
        signature(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}"
    )
