"""Notification use cases: turn an event into notification and webhook delivery rows,
preferences, in-app reads, webhook endpoints. They never commit."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail import accounts, drivers
from ridehail.contracts import ALL_EVENTS, IntegrationEvent, RideStatusChanged
from ridehail.db import is_postgresql
from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import Conflict, InvalidRequest, NotFound
from ridehail.kernel.ids import new_id
from ridehail.notifications import repository
from ridehail.notifications.destinations import refusal
from ridehail.notifications.domain import (
    DEFAULT_PREFERENCES,
    USER_TOPICS,
    Channel,
    DriverInfo,
    Preferences,
    plan,
)
from ridehail.notifications.models import Notification, WebhookDelivery, WebhookEndpoint

#: PostgreSQL NOTIFY channel: a commit that queued notifications wakes the senders.
WORK_CHANNEL = "ridehail_notifications"
#: Set in a session whose transaction queued work (for the after-commit nudge).
QUEUED = "ridehail.notifications.queued"

EVENT_TYPES: dict[str, type[IntegrationEvent]] = {e.topic: e for e in ALL_EVENTS}
WEBHOOK_TOPICS = frozenset(EVENT_TYPES)


@dataclass(frozen=True)
class Queued:
    notifications: int
    deliveries: int


async def _signal(session: AsyncSession) -> None:
    session.info[QUEUED] = True
    if is_postgresql(session):
        await session.execute(text(f"NOTIFY {WORK_CHANNEL}"))


def queued_work(session: AsyncSession) -> bool:
    return bool(session.info.get(QUEUED))


async def _driver_info(session: AsyncSession, driver_id: str | None) -> DriverInfo | None:
    if driver_id is None:
        return None
    try:
        driver = await drivers.get_driver(session, driver_id)
    except NotFound:
        return None
    vehicle = " ".join(
        p for p in (driver.vehicle_color, driver.vehicle_make, driver.vehicle_model) if p
    )
    return DriverInfo(name=driver.name, vehicle=f"{vehicle} ({driver.vehicle_plate})")


async def user_preferences(session: AsyncSession, user_ids: list[str]) -> dict[str, Preferences]:
    stored = await repository.preferences(session, user_ids)
    return {
        uid: Preferences(in_app=p.in_app, email=p.email, sms=p.sms)
        if (p := stored.get(uid)) is not None
        else DEFAULT_PREFERENCES
        for uid in user_ids
    }


async def queue_for_event(
    session: AsyncSession, *, event_id: str, topic: str, payload: Mapping[str, Any]
) -> Queued:
    """The rows this event asks for: one per (user, allowed channel), one per webhook
    endpoint that wants the topic. Rows already there (a redelivery) are skipped."""
    event_type = EVENT_TYPES.get(topic)
    if event_type is None:
        return Queued(0, 0)
    now = utcnow()
    notifications = 0
    if topic in USER_TOPICS:
        event = event_type.from_payload(dict(payload))
        driver = None
        if isinstance(event, RideStatusChanged) and event.status == "driver_en_route":
            driver = await _driver_info(session, event.driver_id)
        planned = plan(event, driver=driver)
        user_ids = sorted({p.user_id for p in planned})
        prefs = await user_preferences(session, user_ids)
        contacts = await accounts.contacts(session, user_ids)
        rows: list[dict[str, Any]] = []
        for item in planned:
            contact = contacts.get(item.user_id)
            for channel in sorted(item.channels):
                if not prefs[item.user_id].allows(channel):
                    continue
                address = None
                if channel is Channel.EMAIL:
                    address = contact.email if contact else None
                elif channel is Channel.SMS:
                    address = contact.phone if contact else None
                if channel is not Channel.IN_APP and not address:
                    continue
                rows.append(
                    {
                        "id": new_id("ntf"),
                        "user_id": item.user_id,
                        "channel": channel.value,
                        "kind": item.kind,
                        "event_id": event_id,
                        "title": item.title,
                        "body": item.body,
                        "data": item.data,
                        "address": address,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
        notifications = await repository.insert_new(session, Notification, rows)
    deliveries = await repository.insert_new(
        session,
        WebhookDelivery,
        [
            {
                "id": new_id("whd"),
                "endpoint_id": endpoint.id,
                "event_id": event_id,
                "topic": topic,
                "payload": {
                    "id": event_id,
                    "type": topic,
                    "created_at": payload.get("occurred_at"),
                    "data": dict(payload),
                },
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for endpoint in await repository.live_endpoints(session)
            if topic in endpoint.events
        ],
    )
    if notifications or deliveries:
        await _signal(session)
    return Queued(notifications, deliveries)


# --- The caller's in-app notifications and preferences --------------------------------


async def list_notifications(
    session: AsyncSession, *, user_id: str, before_id: str | None, limit: int
) -> list[Notification]:
    return await repository.list_in_app(session, user_id=user_id, before_id=before_id, limit=limit)


async def mark_read(session: AsyncSession, *, user_id: str, notification_id: str) -> Notification:
    notification = await repository.get_in_app(
        session, user_id=user_id, notification_id=notification_id
    )
    if notification is None:
        raise NotFound("notification not found")
    if notification.read_at is None:
        notification.read_at = utcnow()
        await session.flush()
    return notification


async def get_preferences(session: AsyncSession, *, user_id: str) -> Preferences:
    return (await user_preferences(session, [user_id]))[user_id]


async def set_preferences(
    session: AsyncSession, *, user_id: str, preferences: Preferences
) -> Preferences:
    await repository.save_preferences(
        session,
        user_id=user_id,
        in_app=preferences.in_app,
        email=preferences.email,
        sms=preferences.sms,
        at=utcnow(),
    )
    return preferences


# --- Webhook endpoints --------------------------------------------------------------------


def check_url(url: str, *, allow_private_networks: bool = False) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise InvalidRequest(f"url is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("url must be an absolute http or https URL")
    if parts.username or parts.password:
        raise InvalidRequest("url must not carry credentials")
    reason = None if allow_private_networks else refusal(parts.hostname)
    if reason is not None:
        raise InvalidRequest(
            f"url must name a public host, not the {reason} (webhooks are sent to public "
            "addresses only unless RIDEHAIL_WEBHOOK_ALLOW_PRIVATE_NETWORKS is set)"
        )
    return url


def check_topics(topics: list[str]) -> list[str]:
    unknown = sorted(set(topics) - WEBHOOK_TOPICS)
    if unknown:
        known = ", ".join(sorted(WEBHOOK_TOPICS))
        raise InvalidRequest(f"unknown event types {unknown}; known: {known}")
    return sorted(set(topics))


async def create_endpoint(
    session: AsyncSession,
    *,
    url: str,
    events: list[str],
    created_by: str,
    allow_private_networks: bool = False,
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        id=new_id("whk"),
        url=check_url(url, allow_private_networks=allow_private_networks),
        events=check_topics(events),
        secret="whsec_" + secrets.token_urlsafe(32),
        created_by=created_by,
        created_at=utcnow(),
    )
    return await repository.add_endpoint(session, endpoint)


async def list_endpoints(session: AsyncSession) -> list[WebhookEndpoint]:
    return await repository.live_endpoints(session)


async def get_endpoint(session: AsyncSession, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await repository.get_live_endpoint(session, endpoint_id)
    if endpoint is None:
        raise NotFound("webhook endpoint not found")
    return endpoint


async def delete_endpoint(session: AsyncSession, endpoint_id: str) -> None:
    endpoint = await get_endpoint(session, endpoint_id)
    now = utcnow()
    endpoint.deleted_at = now
    await repository.cancel_pending_deliveries(session, endpoint_id=endpoint_id, at=now)
    await session.flush()


async def list_deliveries(
    session: AsyncSession, *, endpoint_id: str, before_id: str | None, limit: int
) -> list[WebhookDelivery]:
    await get_endpoint(session, endpoint_id)
    return await repository.list_deliveries(
        session, endpoint_id=endpoint_id, before_id=before_id, limit=limit
    )


async def redeliver(
    session: AsyncSession, *, endpoint_id: str, delivery_id: str
) -> WebhookDelivery:
    """Send a delivered or dead delivery again, with a fresh set of attempts."""
    await get_endpoint(session, endpoint_id)
    delivery = await repository.get_delivery(
        session, endpoint_id=endpoint_id, delivery_id=delivery_id
    )
    if delivery is None:
        raise NotFound("webhook delivery not found")
    if delivery.status == "pending":
        raise Conflict("the delivery is still being attempted")
    now = utcnow()
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.updated_at = now
    delivery.last_error = None
    await session.flush()
    await _signal(session)
    return delivery
