"""create_app(): the FastAPI application, its lifespan, routers and error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ridehail import bootstrap, ops
from ridehail.accounts.routes import router as accounts_router
from ridehail.dispatch.routes import router as dispatch_router
from ridehail.drivers.routes import router as drivers_router
from ridehail.locations.routes import router as locations_router
from ridehail.realtime.routes import router as realtime_router
from ridehail.rides.routes import router as rides_router
from ridehail.settings import Settings
from ridehail.web import errors
from ridehail.web.middleware import BodySizeLimit, RequestMetrics

DESCRIPTION = """
Backend of a ride-hailing service. Sign up (`POST /api/v1/riders`, `POST /api/v1/drivers`),
get a token (`POST /api/v1/auth/token`) and press **Authorize** to call the rest.
Errors are `application/problem+json` (RFC 9457).

**Real time (WebSocket; OpenAPI cannot list these as operations):**

- `GET /api/v1/rides/{ride_id}/events` — the ride's rider, driver or an admin. Send
  `{"type": "auth", "access_token": "..."}` first. You receive a snapshot
  `{"type": "ride.status", "ride": {...}}`, then one on every change, and
  `{"type": "driver.location", "latitude", "longitude", "heading", "recorded_at"}` at most
  once a second while a driver is on the way or driving. Closes with 1000 when the ride
  ends; 4401 for missing or bad auth, 4404 for a ride you may not see.
- `GET /api/v1/drivers/{driver_id}/stream` — that driver. After auth: open offers, then
  `{"type": "offer", ...}` as they are made. Send `{"type": "location", "latitude", ...}`
  frames (same fields as the PUT) instead of PUTs; a bad frame gets
  `{"type": "error", "status": 422, ...}`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    roles: Collection[str] = bootstrap.ALL_ROLES,
    access_log: bool = True,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with bootstrap.running(settings, roles=roles) as container:
            app.state.container = container
            app.state.runtime = container.runtime
            app.state.tokens = container.tokens
            app.state.passwords = container.passwords
            yield

    app = FastAPI(
        title="ridehail",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    errors.install(app)
    for router in (
        accounts_router,
        drivers_router,
        locations_router,
        rides_router,
        dispatch_router,
        realtime_router,
        ops.router,
    ):
        app.include_router(router)
    app.add_middleware(RequestMetrics, access_log=access_log)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
