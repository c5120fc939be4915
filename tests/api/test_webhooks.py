"""Webhooks against a real local HTTP server: signed deliveries, retries with backoff until
a 2xx, dead after the last failure, admin redelivery; the endpoints' bad input and authz."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from ridehail.contracts import DriverWentOffline, PaymentCaptured, RideCompleted
from ridehail.db.processed import ProcessedEvent
from ridehail.kernel.clock import utcnow
from ridehail.notifications import service, verify_signature
from ridehail.notifications.models import WebhookDelivery
from tests.api.client import Api, User
from tests.api.conftest import Backend
from tests.api.notify_support import (
    Receiver,
    app_factory,
    emit,
    publish,
    receiver,
    settings,
    wait_for,
)


@pytest.fixture
def make_api(backend: Backend) -> Callable[..., AbstractAsyncContextManager[Api]]:
    """This module's apps run without the payments role (see notify_support.ROLES)."""
    return app_factory(backend)


def captured(ride_id: str = "ride_1") -> PaymentCaptured:
    return PaymentCaptured(
        payment_id="pay_1",
        ride_id=ride_id,
        rider_id="rdr_x",
        driver_id="drv_x",
        amount="14.20",
        currency="USD",
        method="cash",
    )


async def create(api: Api, admin: User, url: str, events: list[str]) -> dict[str, Any]:
    resp = await api.http.post(
        "/api/v1/webhooks", json={"url": url, "events": events}, headers=admin.headers
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def deliveries(api: Api, admin: User, webhook_id: str) -> list[dict[str, Any]]:
    resp = await api.http.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=admin.headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["deliveries"])


async def settled(api: Api, admin: User, webhook_id: str, count: int) -> list[dict[str, Any]]:
    """Wait until ``count`` deliveries exist and none is pending."""

    async def check() -> list[dict[str, Any]] | None:
        rows = await deliveries(api, admin, webhook_id)
        done = len(rows) == count and all(r["status"] != "pending" for r in rows)
        return rows if done else None

    return list(await wait_for(check, what=f"{count} settled deliveries"))


def assert_signed(hook: Receiver, secret: str) -> None:
    for request in hook.requests:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert verify_signature(secret, headers["ridehail-signature"], request.body)
        assert not verify_signature("whsec_wrong", headers["ridehail-signature"], request.body)
        assert headers["content-type"] == "application/json"


async def test_a_failing_endpoint_is_retried_until_it_answers(make_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with receiver(fail_first=2) as hook:
        async with make_api(**settings(tmp_path)) as api:
            admin = await api.admin()
            webhook = await create(api, admin, hook.url, ["payments.captured", "rides.completed"])
            assert webhook["secret"].startswith("whsec_")
            event = captured()
            await emit(api, event)
            await publish(api, event)  # a redelivery: still one delivery
            [delivery] = await settled(api, admin, webhook["webhook_id"], 1)
            assert delivery["status"] == "delivered"
            assert delivery["attempts"] == 3 and delivery["last_status_code"] == 200
            assert delivery["event_id"] == event.event_id
            assert delivery["event_type"] == "payments.captured"

            assert len(hook.requests) == 3
            assert_signed(hook, webhook["secret"])
            headers = {k.lower(): v for k, v in hook.requests[-1].headers.items()}
            assert headers["ridehail-event-id"] == event.event_id
            assert headers["ridehail-delivery-id"] == delivery["delivery_id"]
            body = json.loads(hook.requests[-1].body)
            assert body["id"] == event.event_id and body["type"] == "payments.captured"
            assert body["data"]["amount"] == "14.20" and body["data"]["ride_id"] == "ride_1"
            # Every attempt carried the same body (a receiver deduplicates by event id).
            assert len({r.body for r in hook.requests}) == 1

            # Topics the endpoint did not ask for are not sent.
            driver = await api.driver()
            offline = DriverWentOffline(driver_id=driver.id)
            await emit(api, offline)
            await emit(
                api,
                RideCompleted(
                    ride_id="ride_2",
                    rider_id="rdr_x",
                    driver_id=driver.id,
                    amount="1.00",
                    currency="USD",
                    fare={},
                ),
            )
            rows = await settled(api, admin, webhook["webhook_id"], 2)
            assert [r["event_type"] for r in rows] == ["rides.completed", "payments.captured"]

            async def offline_handled() -> bool:
                async with api.app.state.runtime.db.read_only() as session:
                    seen = await session.scalar(
                        select(ProcessedEvent.event_id).where(
                            ProcessedEvent.consumer == "notifications",
                            ProcessedEvent.event_id == offline.event_id,
                        )
                    )
                return seen is not None

            await wait_for(offline_handled, what="the offline event handled")
            assert len(await deliveries(api, admin, webhook["webhook_id"])) == 2

            # The secret is shown once: never in the list.
            listed = await api.http.get("/api/v1/webhooks", headers=admin.headers)
            assert listed.json()["webhooks"] == [
                {k: v for k, v in webhook.items() if k != "secret"}
            ]


async def test_an_endpoint_that_always_fails_goes_dead_and_can_be_redelivered(  # type: ignore[no-untyped-def]
    make_api, tmp_path: Path
) -> None:
    with receiver(always_fail=True) as hook:
        async with make_api(**settings(tmp_path)) as api:
            admin = await api.admin()
            webhook = await create(api, admin, hook.url, ["payments.captured"])
            await emit(api, captured())
            [dead] = await settled(api, admin, webhook["webhook_id"], 1)
            assert dead["status"] == "dead" and dead["attempts"] == 3  # webhook_max_attempts
            assert dead["last_status_code"] == 500 and dead["last_error"] == "HTTP 500"
            assert len(hook.requests) == 3

            hook.always_fail = False
            path = (
                f"/api/v1/webhooks/{webhook['webhook_id']}/deliveries/"
                f"{dead['delivery_id']}:redeliver"
            )
            resp = await api.http.post(path, headers=admin.headers)
            assert resp.status_code == 200 and resp.json()["status"] == "pending"
            [delivered] = await settled(api, admin, webhook["webhook_id"], 1)
            assert delivered["status"] == "delivered" and delivered["attempts"] == 1
            assert len(hook.requests) == 4
            assert_signed(hook, webhook["secret"])


async def test_unreachable_endpoint_goes_dead_and_deleted_endpoint_gets_nothing(  # type: ignore[no-untyped-def]
    make_api, tmp_path: Path
) -> None:
    with receiver() as hook:
        closed_url = hook.url
    async with make_api(**settings(tmp_path)) as api:
        admin = await api.admin()
        webhook = await create(api, admin, closed_url, ["payments.captured"])
        await emit(api, captured())
        [dead] = await settled(api, admin, webhook["webhook_id"], 1)
        assert dead["status"] == "dead" and dead["last_status_code"] is None
        assert dead["last_error"]

        resp = await api.http.delete(
            f"/api/v1/webhooks/{webhook['webhook_id']}", headers=admin.headers
        )
        assert resp.status_code == 204
        listed = await api.http.get("/api/v1/webhooks", headers=admin.headers)
        assert listed.json()["webhooks"] == []
        gone = await api.http.get(
            f"/api/v1/webhooks/{webhook['webhook_id']}/deliveries", headers=admin.headers
        )
        assert gone.status_code == 404
        again = await api.http.delete(
            f"/api/v1/webhooks/{webhook['webhook_id']}", headers=admin.headers
        )
        assert again.status_code == 404


async def test_a_private_destination_is_refused_at_delivery(make_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An endpoint stored while private networks were allowed (or whose name has come to
    resolve to a private address since) is refused when sent to: nothing reaches it."""
    with receiver() as hook:
        async with make_api(**settings(tmp_path, webhook_allow_private_networks=False)) as api:
            admin = await api.admin()
            async with api.app.state.runtime.db.transaction() as session:
                endpoint = await service.create_endpoint(
                    session,
                    url=hook.url,
                    events=["payments.captured"],
                    created_by=admin.id,
                    allow_private_networks=True,
                )
            refused = await api.http.post(
                "/api/v1/webhooks",
                json={"url": hook.url, "events": ["payments.captured"]},
                headers=admin.headers,
            )
            assert refused.status_code == 422 and "loopback address" in refused.text
            await emit(api, captured())
            [dead] = await settled(api, admin, endpoint.id, 1)
            assert dead["status"] == "dead" and dead["attempts"] == 3
            assert dead["last_status_code"] is None
            assert "resolves to the loopback address 127.0.0.1" in dead["last_error"]
    assert hook.requests == []


async def test_webhook_endpoints_refuse_bad_input_and_non_admins(api: Api) -> None:
    admin, rider, driver = await api.admin(), await api.rider(), await api.driver()
    good = {"url": "https://example.com/hook", "events": ["rides.completed"]}
    for body in (
        {**good, "url": "ftp://example.com/hook"},
        {**good, "url": "not a url"},
        {**good, "url": "https://"},
        {**good, "url": "https://user:pw@example.com/"},
        {**good, "url": "https://example.com:99999/hook"},
        # Not a public host (webhooks_allow_private_networks is off by default).
        {**good, "url": "http://127.0.0.1:8080/hook"},
        {**good, "url": "http://localhost/hook"},
        {**good, "url": "http://169.254.169.254/latest/meta-data/"},
        {**good, "url": "http://[::1]/hook"},
        {**good, "url": "http://[::ffff:10.0.0.5]/hook"},
        {**good, "url": "https://10.0.0.5/hook"},
        {**good, "url": "http://2130706433/hook"},
        {**good, "url": "https://example.com/" + "a" * 2000},
        {**good, "url": 42},
        {**good, "events": []},
        {**good, "events": ["rides.teleported"]},
        {**good, "events": "rides.completed"},
        {**good, "events": [1]},
        {**good, "secret": "mine"},
        {"url": good["url"]},
        {"events": good["events"]},
        [good],
    ):
        resp = await api.http.post("/api/v1/webhooks", json=body, headers=admin.headers)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert (await api.http.get("/api/v1/webhooks", headers=admin.headers)).json() == {
        "webhooks": []
    }

    created = await create(api, admin, str(good["url"]), ["rides.completed", "rides.completed"])
    assert created["events"] == ["rides.completed"]
    webhook_id = created["webhook_id"]
    deliveries_path = f"/api/v1/webhooks/{webhook_id}/deliveries"
    for user in (rider, driver):
        assert (
            await api.http.post("/api/v1/webhooks", json=good, headers=user.headers)
        ).status_code == 403
        assert (await api.http.get("/api/v1/webhooks", headers=user.headers)).status_code == 403
        assert (
            await api.http.delete(f"/api/v1/webhooks/{webhook_id}", headers=user.headers)
        ).status_code == 403
        assert (await api.http.get(deliveries_path, headers=user.headers)).status_code == 403
        redeliver = await api.http.post(f"{deliveries_path}/whd_x:redeliver", headers=user.headers)
        assert redeliver.status_code == 403
    assert (await api.http.post("/api/v1/webhooks", json=good)).status_code == 401
    assert (await api.http.get("/api/v1/webhooks")).status_code == 401
    assert (await api.http.delete(f"/api/v1/webhooks/{webhook_id}")).status_code == 401
    assert (await api.http.get(deliveries_path)).status_code == 401

    assert (
        await api.http.delete("/api/v1/webhooks/whk_nope", headers=admin.headers)
    ).status_code == 404
    missing = await api.http.get("/api/v1/webhooks/whk_nope/deliveries", headers=admin.headers)
    assert missing.status_code == 404
    no_delivery = await api.http.post(
        f"{deliveries_path}/whd_nope:redeliver", headers=admin.headers
    )
    assert no_delivery.status_code == 404
    # A delivery still being attempted cannot be redelivered.
    async with api.app.state.runtime.db.transaction() as session:
        now = utcnow()
        await session.execute(
            insert(WebhookDelivery).values(
                id="whd_pending",
                endpoint_id=webhook_id,
                event_id="evt_pending",
                topic="rides.completed",
                payload={},
                status="pending",
                attempts=1,
                next_attempt_at=now + timedelta(hours=1),
                created_at=now,
                updated_at=now,
            )
        )
    busy = await api.http.post(f"{deliveries_path}/whd_pending:redeliver", headers=admin.headers)
    assert busy.status_code == 409
    assert [d["delivery_id"] for d in await deliveries(api, admin, webhook_id)] == ["whd_pending"]
    for params in ({"page_size": 0}, {"page_size": 101}, {"page_token": "bm90LWEtZGVsaXZlcnk"}):
        resp = await api.http.get(deliveries_path, params=params, headers=admin.headers)
        assert resp.status_code == 422, params
