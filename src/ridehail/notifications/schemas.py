"""Request and response bodies of the notifications API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from ridehail.notifications.models import Notification, WebhookDelivery, WebhookEndpoint
from ridehail.web.schemas import RequestBody, ResponseBody


class NotificationOut(ResponseBody):
    notification_id: str
    kind: str = Field(examples=["trip_completed"])
    title: str
    body: str
    data: dict[str, Any] = Field(description="ride_id, amounts, ... depending on the kind")
    created_at: datetime
    read_at: datetime | None

    @classmethod
    def of(cls, notification: Notification) -> NotificationOut:
        return cls(
            notification_id=notification.id,
            kind=notification.kind,
            title=notification.title,
            body=notification.body,
            data=notification.data,
            created_at=notification.created_at,
            read_at=notification.read_at,
        )


class NotificationPage(ResponseBody):
    notifications: list[NotificationOut]
    next_page_token: str | None


class PreferencesBody(RequestBody):
    """Which channels the caller is told on (every kind of notification)."""

    in_app: bool
    email: bool
    sms: bool = Field(description="Needs a phone number on the account")


class PreferencesOut(ResponseBody):
    in_app: bool
    email: bool
    sms: bool


class WebhookCreate(RequestBody):
    url: Annotated[str, Field(min_length=1, max_length=2000, examples=["https://example.com/hook"])]
    events: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]],
        Field(min_length=1, max_length=50, examples=[["rides.completed", "payments.captured"]]),
    ]


class WebhookOut(ResponseBody):
    webhook_id: str
    url: str
    events: list[str]
    created_at: datetime

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookOut:
        return cls(
            webhook_id=endpoint.id,
            url=endpoint.url,
            events=endpoint.events,
            created_at=endpoint.created_at,
        )


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="HMAC-SHA256 key of the Ridehail-Signature header; shown only now"
    )

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookCreated:
        return cls(**WebhookOut.of(endpoint).model_dump(), secret=endpoint.secret)


class WebhookList(ResponseBody):
    webhooks: list[WebhookOut]


class DeliveryOut(ResponseBody):
    delivery_id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: str = Field(examples=["pending", "delivered", "dead", "cancelled"])
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryOut:
        return cls(
            delivery_id=delivery.id,
            webhook_id=delivery.endpoint_id,
            event_id=delivery.event_id,
            event_type=delivery.topic,
            status=delivery.status,
            attempts=delivery.attempts,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
            created_at=delivery.created_at,
            delivered_at=delivery.delivered_at,
        )


class DeliveryPage(ResponseBody):
    deliveries: list[DeliveryOut]
    next_page_token: str | None
