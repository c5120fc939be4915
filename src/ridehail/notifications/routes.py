from __future__ import annotations

from fastapi import APIRouter, Response, status

from ridehail.kernel.auth import Role
from ridehail.notifications import service
from ridehail.notifications.domain import Preferences
from ridehail.notifications.schemas import (
    DeliveryOut,
    DeliveryPage,
    NotificationOut,
    NotificationPage,
    PreferencesBody,
    PreferencesOut,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
)
from ridehail.web.deps import PrincipalDep, ReadSession, RuntimeDep, require_role
from ridehail.web.paging import PageSize, PageToken, decode_page_token, encode_page_token

router = APIRouter(prefix="/api/v1", tags=["notifications"])


@router.get("/notifications", response_model=NotificationPage)
async def list_notifications(
    principal: PrincipalDep,
    session: ReadSession,
    page_size: PageSize = 20,
    page_token: PageToken = None,
) -> NotificationPage:
    """The caller's in-app notifications, newest first. The same messages are pushed live as
    `{"type": "notification", ...}` over the caller's WebSockets."""
    rows = await service.list_notifications(
        session,
        user_id=principal.subject_id,
        before_id=decode_page_token(page_token, "ntf_"),
        limit=page_size + 1,
    )
    more = len(rows) > page_size
    rows = rows[:page_size]
    return NotificationPage(
        notifications=[NotificationOut.of(n) for n in rows],
        next_page_token=encode_page_token(rows[-1].id) if more and rows else None,
    )


@router.post("/notifications/{notification_id}:read", response_model=NotificationOut)
async def mark_read(
    notification_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> NotificationOut:
    """Mark one of the caller's notifications read (again: no change)."""
    async with runtime.db.transaction() as session:
        notification = await service.mark_read(
            session, user_id=principal.subject_id, notification_id=notification_id
        )
    return NotificationOut.of(notification)


@router.get("/me/notification-preferences", response_model=PreferencesOut)
async def get_preferences(principal: PrincipalDep, session: ReadSession) -> PreferencesOut:
    """The caller's channels: in-app and email on, SMS off until changed."""
    prefs = await service.get_preferences(session, user_id=principal.subject_id)
    return PreferencesOut(in_app=prefs.in_app, email=prefs.email, sms=prefs.sms)


@router.put("/me/notification-preferences", response_model=PreferencesOut)
async def put_preferences(
    body: PreferencesBody, principal: PrincipalDep, runtime: RuntimeDep
) -> PreferencesOut:
    async with runtime.db.transaction() as session:
        prefs = await service.set_preferences(
            session,
            user_id=principal.subject_id,
            preferences=Preferences(in_app=body.in_app, email=body.email, sms=body.sms),
        )
    return PreferencesOut(in_app=prefs.in_app, email=prefs.email, sms=prefs.sms)


@router.post("/webhooks", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
async def create_webhook(
    body: WebhookCreate, principal: PrincipalDep, runtime: RuntimeDep
) -> WebhookCreated:
    """Admin: send these event types to this URL. Each request carries
    `Ridehail-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` and
    `Ridehail-Event-Id`; a 2xx answer is success, anything else is retried with backoff
    until the delivery is dead. The secret is in this response only. The URL must name a
    public host: loopback, private and link-local addresses are refused, when created and
    again at each delivery, unless RIDEHAIL_WEBHOOK_ALLOW_PRIVATE_NETWORKS is set."""
    require_role(principal, Role.ADMIN)
    async with runtime.db.transaction() as session:
        endpoint = await service.create_endpoint(
            session,
            url=body.url,
            events=body.events,
            created_by=principal.subject_id,
            allow_private_networks=runtime.settings.webhook_allow_private_networks,
        )
    return WebhookCreated.of(endpoint)


@router.get("/webhooks", response_model=WebhookList)
async def list_webhooks(principal: PrincipalDep, session: ReadSession) -> WebhookList:
    require_role(principal, Role.ADMIN)
    return WebhookList(webhooks=[WebhookOut.of(e) for e in await service.list_endpoints(session)])


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(webhook_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    """Admin: stop sending to this endpoint (its pending deliveries are cancelled)."""
    require_role(principal, Role.ADMIN)
    async with runtime.db.transaction() as session:
        await service.delete_endpoint(session, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    webhook_id: str,
    principal: PrincipalDep,
    session: ReadSession,
    page_size: PageSize = 20,
    page_token: PageToken = None,
) -> DeliveryPage:
    """Admin: the endpoint's deliveries, newest first."""
    require_role(principal, Role.ADMIN)
    rows = await service.list_deliveries(
        session,
        endpoint_id=webhook_id,
        before_id=decode_page_token(page_token, "whd_"),
        limit=page_size + 1,
    )
    more = len(rows) > page_size
    rows = rows[:page_size]
    return DeliveryPage(
        deliveries=[DeliveryOut.of(d) for d in rows],
        next_page_token=encode_page_token(rows[-1].id) if more and rows else None,
    )


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}:redeliver", response_model=DeliveryOut
)
async def redeliver(
    webhook_id: str, delivery_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> DeliveryOut:
    """Admin: send a delivered or dead delivery again (409 while it is still pending)."""
    require_role(principal, Role.ADMIN)
    async with runtime.db.transaction() as session:
        delivery = await service.redeliver(session, endpoint_id=webhook_id, delivery_id=delivery_id)
    return DeliveryOut.of(delivery)
