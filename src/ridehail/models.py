"""Every table of every domain, gathered for Alembic and for tests. Nothing else imports it."""

from ridehail.accounts.models import Account
from ridehail.db import Base
from ridehail.db.idempotency import IdempotencyRecord
from ridehail.db.outbox import OutboxEvent
from ridehail.db.processed import ProcessedEvent
from ridehail.dispatch.models import Candidate, DriverState, Offer, Search
from ridehail.drivers.models import Driver
from ridehail.notifications.models import (
    Notification,
    NotificationPreference,
    WebhookDelivery,
    WebhookEndpoint,
)
from ridehail.payments.models import (
    LedgerEntry,
    LedgerTransaction,
    Payment,
    PaymentMethod,
    Refund,
)
from ridehail.pricing.models import SurgeCellRow
from ridehail.rides.models import Ride

metadata = Base.metadata

__all__ = [
    "Account",
    "Candidate",
    "Driver",
    "DriverState",
    "IdempotencyRecord",
    "LedgerEntry",
    "LedgerTransaction",
    "Notification",
    "NotificationPreference",
    "Offer",
    "OutboxEvent",
    "Payment",
    "PaymentMethod",
    "ProcessedEvent",
    "Refund",
    "Ride",
    "Search",
    "SurgeCellRow",
    "WebhookDelivery",
    "WebhookEndpoint",
    "metadata",
]
