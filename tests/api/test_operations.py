from __future__ import annotations

import httpx
import pytest

from ridehail.app import create_app
from tests import profiles
from tests.api.client import HELSINKI, Api

CONTRACT_PATHS = {
    ("post", "/api/v1/riders"),
    ("post", "/api/v1/drivers"),
    ("post", "/api/v1/auth/token"),
    ("get", "/api/v1/riders/me"),
    ("get", "/api/v1/drivers/me"),
    ("put", "/api/v1/drivers/{driver_id}/availability"),
    ("put", "/api/v1/drivers/{driver_id}/location"),
    ("post", "/api/v1/drivers/{driver_id}/locations"),
    ("get", "/api/v1/drivers/nearby"),
    ("get", "/api/v1/drivers/{driver_id}/offers"),
    ("post", "/api/v1/rides"),
    ("get", "/api/v1/rides"),
    ("get", "/api/v1/rides/{ride_id}"),
    *{
        ("post", f"/api/v1/rides/{{ride_id}}:{verb}")
        for verb in ("accept", "decline", "arrive", "start", "complete", "cancel")
    },
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
}


async def test_openapi_describes_the_whole_contract(api: Api) -> None:
    doc = (await api.http.get("/openapi.json")).json()
    present = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert present >= CONTRACT_PATHS, CONTRACT_PATHS - present
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    assert "/api/v1/rides/{ride_id}/events" in doc["info"]["description"]
    docs = await api.http.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_health_ready_and_metrics(api: Api) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "locations": "ok"}
    rider = await api.rider()
    await api.http.get("/api/v1/rides/ride_nope", headers=rider.headers)
    text = (await api.http.get("/metrics")).text
    assert (
        'ridehail_http_requests_total{method="GET",route="/api/v1/rides/{ride_id}",status="404"}'
        in text
    )
    assert "ridehail_http_request_duration_seconds_bucket" in text


@pytest.mark.parametrize("profile", ["embedded"])
async def test_readyz_names_an_unreachable_database(profile: str, redis_url: str) -> None:
    settings = profiles.settings_for(
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
        redis_url=None,
        key_prefix="unused:",
        dispatch_enabled=False,
        relay_poll_s=60,
    )
    app = create_app(settings, access_log=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            resp = await http.get("/readyz")
            assert (await http.get("/healthz")).status_code == 200
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"].startswith("unavailable")
    assert body["checks"]["locations"] == "ok"


async def test_unexpected_errors_are_problems_without_stack_traces(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    rider = await api.rider()

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(type(api.app.state.runtime.locations), "nearest", broken)
    # As a real server does: the client gets the 500; the error goes to the log.
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        resp = await http.get(
            "/api/v1/drivers/nearby",
            params={"lat": HELSINKI[0], "lon": HELSINKI[1]},
            headers=rider.headers,
        )
    assert resp.status_code == 500
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "secret internals" not in resp.text
    assert "Traceback" not in resp.text
