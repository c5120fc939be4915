"""Retention: finished notifications and webhook deliveries are deleted once past their
retention, pending ones and recent ones are kept; the sender applies it in slices."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ridehail.kernel.clock import utcnow
from ridehail.kernel.ids import first_id_at, new_id
from ridehail.notifications import sender as sender_module
from ridehail.notifications.models import Notification, WebhookDelivery
from tests.api.conftest import AppFactory, Backend
from tests.api.notify_support import app_factory, settings


@pytest.fixture
def make_api(backend: Backend) -> AppFactory:
    """Without the payments role, as the other notification tests (notify_support)."""
    return app_factory(backend)


def id_at(prefix: str, when: datetime) -> str:
    """An id as ``new_id`` would have made it at ``when`` (random tail)."""
    head = first_id_at(prefix, when)[: len(prefix) + 1 + 10]  # prefix, "_", 48-bit time
    return head + "".join(secrets.choice("0123456789abcdefghjkmnpqrstvwxyz") for _ in range(16))


def test_ids_made_at_a_time_sort_after_first_id_at_and_before_later_ones() -> None:
    now = utcnow()
    made = new_id("ntf")
    assert first_id_at("ntf", now - timedelta(milliseconds=5)) < made
    assert made < first_id_at("ntf", now + timedelta(seconds=1))
    assert id_at("ntf", now - timedelta(days=1)) < first_id_at("ntf", now)


def note(user_id: str, age: timedelta, status: str, now: datetime) -> Notification:
    created = now - age
    return Notification(
        id=id_at("ntf", created),
        user_id=user_id,
        channel="in_app",
        kind="test",
        event_id=new_id("evt"),
        title="t",
        body="b",
        data={},
        address=None,
        status=status,
        attempts=1,
        next_attempt_at=created,
        last_error=None,
        created_at=created,
        sent_at=created if status == "sent" else None,
        read_at=None,
    )


def delivery(age: timedelta, status: str, now: datetime) -> WebhookDelivery:
    created = now - age
    return WebhookDelivery(
        id=id_at("whd", created),
        endpoint_id="whk_gone",
        event_id=new_id("evt"),
        topic="rides.completed",
        payload={},
        status=status,
        attempts=1,
        # Far ahead: the running sender must not claim the pending ones meanwhile.
        next_attempt_at=now + timedelta(days=1),
        last_status_code=None,
        last_error=None,
        created_at=created,
        updated_at=created,
        delivered_at=created if status == "delivered" else None,
    )


async def test_finished_rows_past_retention_are_deleted_in_slices(
    make_api: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender_module, "PRUNE_SLICE", 2)
    async with make_api(
        **settings(tmp_path, notifications_retention_days=90, webhook_deliveries_retention_days=30)
    ) as api:
        sender = api.app.state.container.notifications
        await sender.stop()  # its own loop prunes too; called by hand below
        rider = await api.rider()
        now = utcnow()
        day = timedelta(days=1)
        notes = {
            "old sent": note(rider.id, 120 * day, "sent", now),
            "old failed": note(rider.id, 91 * day, "failed", now),
            "old sent too": note(rider.id, 100 * day, "sent", now),
            "old pending": note(rider.id, 100 * day, "pending", now),
            "recent": note(rider.id, 89 * day, "sent", now),
        }
        notes["old pending"].next_attempt_at = now + day  # not claimed by the sender
        deliveries = {
            "old delivered": delivery(40 * day, "delivered", now),
            "old dead": delivery(31 * day, "dead", now),
            "old cancelled": delivery(60 * day, "cancelled", now),
            "old pending": delivery(40 * day, "pending", now),
            "recent": delivery(29 * day, "delivered", now),
        }
        runtime = api.app.state.runtime
        async with runtime.db.transaction() as session:
            session.add_all([*notes.values(), *deliveries.values()])

        assert await sender.prune(now=now) == 6
        assert await sender.prune(now=now) == 0  # nothing left to do

        kept = {"old pending", "recent"}
        async with runtime.db.read_only() as session:
            note_ids = set((await session.scalars(select(Notification.id))).all())
            delivery_ids = set((await session.scalars(select(WebhookDelivery.id))).all())
        assert {k for k, n in notes.items() if n.id in note_ids} == kept
        assert {k for k, d in deliveries.items() if d.id in delivery_ids} == kept

        listed = await api.http.get("/api/v1/notifications", headers=rider.headers)
        assert listed.status_code == 200
        shown = [n["notification_id"] for n in listed.json()["notifications"]]
        assert [k for k, n in notes.items() if n.id in shown] == ["old pending", "recent"]
