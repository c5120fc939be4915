"""Every query of the notifications domain."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.db import is_postgresql, upsert_into
from ridehail.notifications.models import (
    Notification,
    NotificationPreference,
    WebhookDelivery,
    WebhookEndpoint,
)

#: The two kinds of outgoing work the sender claims, sends and finishes the same way.
Outgoing = TypeVar("Outgoing", Notification, WebhookDelivery)


async def insert_new(
    session: AsyncSession, model: type[Outgoing], rows: Sequence[dict[str, Any]]
) -> int:
    """Insert, skipping any row whose unique key ((event, user, channel) for a
    notification, (endpoint, event) for a webhook delivery) is already there; returns how
    many are new."""
    if not rows:
        return 0
    stmt = upsert_into(session, model).values(list(rows)).on_conflict_do_nothing()
    result = await session.execute(stmt)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def preferences(
    session: AsyncSession, user_ids: Collection[str]
) -> dict[str, NotificationPreference]:
    if not user_ids:
        return {}
    result = await session.execute(
        select(NotificationPreference).where(NotificationPreference.user_id.in_(list(user_ids)))
    )
    return {p.user_id: p for p in result.scalars()}


async def save_preferences(
    session: AsyncSession, *, user_id: str, in_app: bool, email: bool, sms: bool, at: datetime
) -> None:
    values = {"in_app": in_app, "email": email, "sms": sms, "updated_at": at}
    stmt = upsert_into(session, NotificationPreference).values(user_id=user_id, **values)
    await session.execute(stmt.on_conflict_do_update(index_elements=["user_id"], set_=values))


async def list_in_app(
    session: AsyncSession, *, user_id: str, before_id: str | None, limit: int
) -> list[Notification]:
    """The user's in-app notifications, newest first (ids sort by creation time)."""
    stmt = select(Notification).where(
        Notification.user_id == user_id, Notification.channel == "in_app"
    )
    if before_id is not None:
        stmt = stmt.where(Notification.id < before_id)
    result = await session.execute(stmt.order_by(Notification.id.desc()).limit(limit))
    return list(result.scalars())


async def get_in_app(
    session: AsyncSession, *, user_id: str, notification_id: str
) -> Notification | None:
    result = await session.execute(
        select(Notification).where(
            Notification.id == notification_id,
            Notification.user_id == user_id,
            Notification.channel == "in_app",
        )
    )
    return result.scalar_one_or_none()


async def claim(
    session: AsyncSession,
    model: type[Outgoing],
    *,
    now: datetime,
    lease_until: datetime,
    limit: int,
) -> list[Outgoing]:
    """Up to ``limit`` due pending rows, leased to this sender until ``lease_until``
    (another sender takes them after that, if this one died). SKIP LOCKED lets several
    senders share the table (PostgreSQL); SQLite has one writer anyway."""
    stmt = (
        select(model)
        .where(model.status == "pending", model.next_attempt_at <= now)
        .order_by(model.next_attempt_at)
        .limit(limit)
    )
    if is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list((await session.execute(stmt)).scalars())
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = lease_until
        if isinstance(row, WebhookDelivery):
            row.updated_at = now
    return rows


async def finish(
    session: AsyncSession,
    model: type[Outgoing],
    *,
    row_id: str,
    attempt: int,
    values: dict[str, Any],
) -> None:
    """Record an attempt's outcome unless another sender has taken the row since (its
    ``attempts`` moved on: the fencing token of the lease)."""
    await session.execute(
        update(model)
        .where(model.id == row_id, model.status == "pending", model.attempts == attempt)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def prune(session: AsyncSession, model: type[Outgoing], *, before_id: str, limit: int) -> int:
    """Delete up to ``limit`` rows created before the row ``before_id`` would be (ids are
    time-ordered) that are no longer pending; returns how many."""
    oldest = (
        select(model.id)
        .where(model.id < before_id, model.status != "pending")
        .order_by(model.id)
        .limit(limit)
    )
    result = await session.execute(
        delete(model).where(model.id.in_(oldest)).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def live_endpoints(session: AsyncSession) -> list[WebhookEndpoint]:
    result = await session.execute(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.deleted_at.is_(None))
        .order_by(WebhookEndpoint.id.desc())
    )
    return list(result.scalars())


async def endpoints_by_id(
    session: AsyncSession, endpoint_ids: Collection[str]
) -> dict[str, WebhookEndpoint]:
    if not endpoint_ids:
        return {}
    result = await session.execute(
        select(WebhookEndpoint).where(WebhookEndpoint.id.in_(list(endpoint_ids)))
    )
    return {e.id: e for e in result.scalars()}


async def get_live_endpoint(session: AsyncSession, endpoint_id: str) -> WebhookEndpoint | None:
    result = await session.execute(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.deleted_at.is_(None)
        )
    )
    return result.scalar_one_or_none()


async def add_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    session.add(endpoint)
    await session.flush()
    return endpoint


async def cancel_pending_deliveries(
    session: AsyncSession, *, endpoint_id: str, at: datetime
) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
        .values(status="cancelled", updated_at=at)
        .execution_options(synchronize_session=False)
    )


async def list_deliveries(
    session: AsyncSession, *, endpoint_id: str, before_id: str | None, limit: int
) -> list[WebhookDelivery]:
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if before_id is not None:
        stmt = stmt.where(WebhookDelivery.id < before_id)
    result = await session.execute(stmt.order_by(WebhookDelivery.id.desc()).limit(limit))
    return list(result.scalars())


async def get_delivery(
    session: AsyncSession, *, endpoint_id: str, delivery_id: str
) -> WebhookDelivery | None:
    result = await session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id)
        .with_for_update()
    )
    return result.scalar_one_or_none()
