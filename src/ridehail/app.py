"""create_app(): the FastAPI application, its lifespan, routers and error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from ridehail import bootstrap, ops, tally
from ridehail.accounts.routes import router as accounts_router
from ridehail.dispatch.routes import router as dispatch_router
from ridehail.drivers.routes import router as drivers_router
from ridehail.locations import fast_ingest
from ridehail.locations.routes import router as locations_router
from ridehail.notifications.routes import router as notifications_router
from ridehail.payments.routes import router as payments_router
from ridehail.pricing.routes import router as pricing_router
from ridehail.realtime.routes import router as realtime_router
from ridehail.rides.routes import router as rides_router
from ridehail.settings import Settings
from ridehail.web import errors
from ridehail.web.idempotency import Idempotency
from ridehail.web.middleware import BodySizeLimit, HttpMetrics, RequestMetrics
from ridehail.web.rate_limit import RateLimit

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
- `GET /api/v1/notifications/stream` — any signed-in user. After auth:
  `{"type": "notifications.snapshot", "notifications": [...]}` (the latest, newest first),
  then `{"type": "notification", "notification_id", "kind", "title", "body", "data",
  "created_at", "read_at"}` as each is sent. The two sockets above carry the caller's
  notifications too, in the same shape.
"""


class RidehailAPI(FastAPI):
    """FastAPI, with the location PUT served ahead of its middleware stack (see
    :mod:`ridehail.locations.fast_ingest`); every other request goes the usual way."""

    location_ingest: fast_ingest.LocationIngest | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.location_ingest
        if fast is not None and scope["type"] == "http" and scope["method"] == "PUT":
            driver_id = fast_ingest.driver_id_of(scope["path"])
            if driver_id is not None:
                scope["app"] = self
                await fast.serve(scope, receive, send, driver_id, super().__call__)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    roles: Collection[str] = bootstrap.ALL_ROLES,
    access_log: bool = True,
    fast_paths: bool = True,
) -> RidehailAPI:
    """The application; ``fast_paths=False`` serves even the location PUT through FastAPI
    (the tests compare the two, answer by answer)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with bootstrap.running(settings, roles=roles) as container:
            app.state.container = container
            app.state.runtime = container.runtime
            app.state.tokens = container.tokens
            app.state.passwords = container.passwords
            if isinstance(app, RidehailAPI) and app.location_ingest is not None:
                app.location_ingest.runtime = container.runtime
            # Everything built so far (modules, routes, validators) lives as long as the
            # process: park it outside the collector, so that collections triggered by
            # the allocations of each request stop re-scanning it (measured in bench/).
            gc.collect()
            gc.freeze()
            flusher = asyncio.create_task(tally.flush_periodically(), name="metrics-flush")
            try:
                yield
            finally:
                if isinstance(app, RidehailAPI) and app.location_ingest is not None:
                    app.location_ingest.runtime = None
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher

    app = RidehailAPI(
        title="ridehail",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry asks the global providers on every request whether
        # they are configured (os.environ reads; the largest FastAPI line in a cProfile of
        # the ingest path); metrics here are Prometheus. Opt in with
        # RIDEHAIL_OPENTELEMETRY=true and the usual OTEL_* environment.
        telemetry=None
        if settings.opentelemetry
        else {"tracing": False, "metrics": False, "logs": False},
    )
    errors.install(app)
    for router in (
        accounts_router,
        drivers_router,
        locations_router,
        pricing_router,
        rides_router,
        dispatch_router,
        payments_router,
        notifications_router,
        realtime_router,
        ops.router,
    ):
        app.include_router(router)
    metrics = HttpMetrics(access_log=access_log, quiet_routes=frozenset({fast_ingest.ROUTE_PATH}))
    if fast_paths:
        app.location_ingest = fast_ingest.LocationIngest(
            metrics=metrics, max_body_bytes=settings.max_body_bytes
        )
    # Innermost first: replays are counted and logged like any answer.
    app.add_middleware(Idempotency)
    app.add_middleware(RateLimit, limit=settings.rate_limit_per_minute)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
