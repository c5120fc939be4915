"""The notification sender: takes due notifications and webhook deliveries, sends them,
records the outcome.

A claim leases rows (their next attempt moves out by the lease) in one short transaction;
the sending happens outside any transaction, so a slow webhook holds no connection; the
outcome is written in a second one, only if the lease was not taken over meanwhile. A
sender that dies mid-send leaves its rows to be taken again when the lease runs out: the
email/SMS provider gets the same idempotency key (the notification id) and the webhook
receiver the same event id, so a resend is recognised as one.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx
import structlog
from prometheus_client import Counter

from ridehail.background import BackgroundLoop
from ridehail.db import Database
from ridehail.kernel.clock import utcnow
from ridehail.kernel.ids import first_id_at
from ridehail.messaging import PubSub
from ridehail.messaging.ports import RetryPolicy
from ridehail.notifications import repository
from ridehail.notifications.channels import EmailSender, SmsSender
from ridehail.notifications.destinations import webhook_client
from ridehail.notifications.domain import (
    DELIVERY_ID_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    signature,
)
from ridehail.notifications.models import Notification, WebhookDelivery, WebhookEndpoint
from ridehail.notifications.schemas import NotificationOut
from ridehail.notifications.service import WORK_CHANNEL

log = structlog.get_logger("ridehail.notifications")

SENT = Counter(
    "ridehail_notifications_sent_total",
    "Notification attempts by channel and outcome",
    ["channel", "outcome"],
)
WEBHOOKS = Counter(
    "ridehail_webhook_attempts_total", "Webhook delivery attempts by outcome", ["outcome"]
)


#: Retention is applied this often, in slices of this many rows.
PRUNE_EVERY_S = 600.0
PRUNE_SLICE = 1_000


def user_channel(user_id: str) -> str:
    """The pub/sub channel of a user's live notifications (every socket of theirs)."""
    return f"user:{user_id}:notifications"


@dataclass(frozen=True)
class SenderPolicy:
    #: Rows of each kind one claim takes.
    batch: int
    #: A claimed row not finished within this long is taken again (its sender died).
    lease_s: float
    #: Email, SMS and in-app push: attempts (then "failed") and backoff with jitter.
    retry: RetryPolicy
    #: Webhooks: attempts (then "dead") and backoff with jitter.
    webhook_retry: RetryPolicy
    webhook_timeout_s: float
    #: Send webhooks to loopback and private addresses too (see destinations).
    webhook_allow_private_networks: bool = False
    #: Finished notifications, and finished webhook deliveries, are deleted this long after
    #: they were created.
    retention: timedelta = timedelta(days=90)
    webhook_retention: timedelta = timedelta(days=30)


def push_message(notification: Notification) -> dict[str, Any]:
    return {"type": "notification", **NotificationOut.of(notification).model_dump(mode="json")}


def _short(error: str) -> str:
    return error[:500]


class NotificationSender(BackgroundLoop):
    name = "notification-sender"

    def __init__(
        self,
        *,
        db: Database,
        pubsub: PubSub,
        email: EmailSender,
        sms: SmsSender,
        policy: SenderPolicy,
        poll_s: float,
    ) -> None:
        super().__init__(
            interval_s=poll_s,
            listen=None if db.is_sqlite else partial(db.listen, WORK_CHANNEL),
        )
        self._db = db
        self._pubsub = pubsub
        self._email = email
        self._sms = sms
        self._policy = policy
        self._http: httpx.AsyncClient | None = None
        self._last_prune = 0.0

    async def start(self) -> None:
        self._http = webhook_client(
            timeout_s=self._policy.webhook_timeout_s,
            allow_private_networks=self._policy.webhook_allow_private_networks,
        )
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def step(self) -> None:
        while not self.stopping:
            done = await self.send_due()
            if done < self._policy.batch:
                break
        if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
            await self.prune(now=utcnow())
            self._last_prune = time.monotonic()

    async def prune(self, *, now: datetime) -> int:
        """Delete notifications and webhook deliveries past their retention that are no
        longer pending, a slice per transaction (no long lock on a busy table); returns how
        many. Every sender process may run it: a row is deleted once whoever gets there."""
        deleted = await self._prune(
            Notification, first_id_at("ntf", now - self._policy.retention)
        ) + await self._prune(
            WebhookDelivery, first_id_at("whd", now - self._policy.webhook_retention)
        )
        if deleted:
            log.info("notifications_pruned", rows=deleted)
        return deleted

    async def send_due(self) -> int:
        """Claim, send and record one batch of each kind; returns the most of either."""
        now = utcnow()
        lease_until = now + timedelta(seconds=self._policy.lease_s)
        async with self._db.transaction() as session:
            batch = self._policy.batch
            notes = await repository.claim(
                session, Notification, now=now, lease_until=lease_until, limit=batch
            )
            deliveries = await repository.claim(
                session, WebhookDelivery, now=now, lease_until=lease_until, limit=batch
            )
            endpoints = await repository.endpoints_by_id(
                session, {d.endpoint_id for d in deliveries}
            )
        if not notes and not deliveries:
            return 0
        note_results, delivery_results = await asyncio.gather(
            asyncio.gather(*(self._send(n) for n in notes)),
            asyncio.gather(*(self._deliver(d, endpoints.get(d.endpoint_id)) for d in deliveries)),
        )
        finished = utcnow()
        async with self._db.transaction() as session:
            for note, error in zip(notes, note_results, strict=True):
                await repository.finish(
                    session,
                    Notification,
                    row_id=note.id,
                    attempt=note.attempts,
                    values=self._note_outcome(note, error, finished),
                )
            for delivery, (code, error) in zip(deliveries, delivery_results, strict=True):
                await repository.finish(
                    session,
                    WebhookDelivery,
                    row_id=delivery.id,
                    attempt=delivery.attempts,
                    values=self._delivery_outcome(delivery, code, error, finished),
                )
        return max(len(notes), len(deliveries))

    async def _prune(self, model: type[repository.Outgoing], before_id: str) -> int:
        deleted = 0
        while not self.stopping:
            async with self._db.transaction() as session:
                count = await repository.prune(
                    session, model, before_id=before_id, limit=PRUNE_SLICE
                )
            deleted += count
            if count < PRUNE_SLICE:
                break
        return deleted

    # --- notifications ----------------------------------------------------------------

    async def _send(self, note: Notification) -> str | None:
        """Send on the notification's channel; the error, or None when it went out."""
        try:
            if note.channel == "in_app":
                await self._pubsub.publish(user_channel(note.user_id), push_message(note))
            elif note.channel == "email":
                assert note.address is not None
                await self._email.send_email(
                    to=note.address, subject=note.title, body=note.body, idempotency_key=note.id
                )
            elif note.channel == "sms":
                assert note.address is not None
                await self._sms.send_sms(to=note.address, body=note.body, idempotency_key=note.id)
            else:
                return f"unknown channel {note.channel!r}"
        except Exception as exc:
            log.warning("notification_failed", id=note.id, channel=note.channel, error=str(exc))
            return _short(f"{type(exc).__name__}: {exc}")
        return None

    def _note_outcome(self, note: Notification, error: str | None, at: Any) -> dict[str, Any]:
        if error is None:
            SENT.labels(note.channel, "sent").inc()
            return {"status": "sent", "sent_at": at, "last_error": None}
        if note.attempts >= self._policy.retry.max_attempts:
            SENT.labels(note.channel, "failed").inc()
            return {"status": "failed", "last_error": error}
        SENT.labels(note.channel, "retry").inc()
        delay = self._policy.retry.delay_s(note.attempts)
        return {"next_attempt_at": at + timedelta(seconds=delay), "last_error": error}

    # --- webhooks ---------------------------------------------------------------------

    async def _deliver(
        self, delivery: WebhookDelivery, endpoint: WebhookEndpoint | None
    ) -> tuple[int | None, str | None]:
        """POST the event; (status code, error) with error None on a 2xx."""
        if endpoint is None or endpoint.deleted_at is not None:
            return None, "endpoint deleted"
        assert self._http is not None, "start() first"
        body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ridehail-webhooks/1",
            SIGNATURE_HEADER: signature(endpoint.secret, int(time.time()), body),
            EVENT_ID_HEADER: delivery.event_id,
            DELIVERY_ID_HEADER: delivery.id,
        }
        try:
            response = await self._http.post(endpoint.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, _short(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    def _delivery_outcome(
        self, delivery: WebhookDelivery, code: int | None, error: str | None, at: Any
    ) -> dict[str, Any]:
        values: dict[str, Any] = {"last_status_code": code, "last_error": error, "updated_at": at}
        if error is None:
            WEBHOOKS.labels("delivered").inc()
            return values | {"status": "delivered", "delivered_at": at}
        if error == "endpoint deleted":
            return values | {"status": "cancelled"}
        if delivery.attempts >= self._policy.webhook_retry.max_attempts:
            WEBHOOKS.labels("dead").inc()
            log.warning("webhook_dead", id=delivery.id, endpoint_id=delivery.endpoint_id)
            return values | {"status": "dead"}
        WEBHOOKS.labels("retry").inc()
        delay = self._policy.webhook_retry.delay_s(delivery.attempts)
        return values | {"next_attempt_at": at + timedelta(seconds=delay)}
