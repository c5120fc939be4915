"""The notifications domain's tables: what each user is told on which channel, their
preferences, and the webhook endpoints of integrators with one delivery row per event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ridehail.db import Base, UTCDateTime

_PENDING = "status = 'pending'"


class Notification(Base):
    """One message to one user on one channel. The unique (event, user, channel) key makes
    a redelivered event's second insert a no-op, so nobody is told twice."""

    __tablename__ = "notifications_notifications"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40))
    #: "in_app", "email" or "sms".
    channel: Mapped[str] = mapped_column(String(10))
    kind: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(String(2000))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Email address or phone number as they were when the event arrived; None for in-app.
    address: Mapped[str | None] = mapped_column(String(320), nullable=True)
    #: "pending", "sent" or "failed" (every attempt failed).
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    #: When a sender may (next) take it; a claim pushes it out by the lease.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index(
            "uq_notifications_once_per_event_user_channel",
            "event_id",
            "user_id",
            "channel",
            unique=True,
        ),
        Index("ix_notifications_user_channel_id", "user_id", "channel", "id"),
        Index(
            "ix_notifications_due",
            "next_attempt_at",
            postgresql_where=text(_PENDING),
            sqlite_where=text(_PENDING),
        ),
    )


class NotificationPreference(Base):
    """A user's channel choices; a user without a row has the defaults."""

    __tablename__ = "notifications_preferences"

    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    in_app: Mapped[bool] = mapped_column(Boolean)
    email: Mapped[bool] = mapped_column(Boolean)
    sms: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookEndpoint(Base):
    """An integrator's URL and the event topics it wants, signed with its own secret."""

    __tablename__ = "notifications_webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    #: The HMAC key (it has to be kept to sign); shown to the admin only when created.
    secret: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Deleted endpoints stay for their delivery history; they receive nothing more.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebhookDelivery(Base):
    """One event for one endpoint, retried with backoff until a 2xx or dead."""

    __tablename__ = "notifications_webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(40))
    topic: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: "pending", "delivered", "dead" (every attempt failed) or "cancelled" (endpoint gone).
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index(
            "uq_notifications_webhook_once_per_endpoint_event",
            "endpoint_id",
            "event_id",
            unique=True,
        ),
        Index(
            "ix_notifications_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text(_PENDING),
            sqlite_where=text(_PENDING),
        ),
    )
